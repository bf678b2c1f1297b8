"""Hardware TEE backends: Gramine (SGX) and configfs-tsm (TDX / SEV-SNP).

What runs here without hardware, and what it does *not* show:

* the Gramine manifest is rendered and parsed as TOML (not built, signed or run:
  that needs Gramine on an SGX machine);
* the report data handed to a hardware quote provider is the binding's 64-byte hash;
* Gramine's ``/dev/attestation`` file protocol against a temporary directory whose
  ``quote`` file is a FIFO fed by an EMULATOR thread in this test: it reads the
  report data the provider wrote and answers with an UNSIGNED, quote-shaped blob.
  This exercises the file protocol and the hand-off to the evidence verifier; no
  SGX ran and the blob is not genuine evidence;
* configfs-tsm's entry/generation protocol against a temporary directory whose
  kernel side (attribute files, the generation counter, outblob) is EMULATED by a
  ``FileOps`` subclass in this test. No confidential VM ran;
* backend selection and its configuration errors.

The ``test_real_*`` tests run the real path only where the device exists and are
otherwise skipped with a message saying what is missing.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

from node import config
from node.tee import backends
from node.attest.binding import BINDING_TAG, Binding, keys_root, verify_attestation
from node.enclave.hw.configfs_tsm import ConfigfsTsm, FileOps, TsmConflict, TsmError, TsmUnavailable
from node.enclave.core import EnclaveCore, Refusal
from node.enclave.measure import code_measurement
from node.attest.evidence import detect_format, verify_evidence
from node.enclave.hw import gramine_attestation as gatt
from node.tee.gramine.manifest import ENCLAVE_MODULE, render_manifest
from node.enclave.hw.gramine_sealing import SEALED_PATH, GramineSealing
from node.attest.policy import AttestationPolicy

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "testdata" / "attestation" / "intel-dcap"
AT = dt.datetime(2025, 7, 1, tzinfo=dt.timezone.utc)
MRENCLAVE = bytes(range(32))


def binding_for(core: EnclaveCore) -> Binding:
    return Binding(net="dev", peer_id="12D3KooWtest", sign_pub=core.sign_pub, enc_pub=core.enc_pub,
                   keys_root=keys_root(core.held_pubkeys()))


def sgx_quote_shaped(report_data: bytes, mrenclave: bytes = MRENCLAVE) -> bytes:
    """An UNSIGNED blob laid out like an SGX DCAP v3 quote (header + report body), for emulators only."""
    header = struct.pack("<HHIHH", 3, 2, 0, 0, 0) + b"\x00" * 16 + b"\x00" * 20
    body = bytearray(384)
    body[64:96] = mrenclave
    body[320:384] = report_data
    return header + bytes(body) + struct.pack("<I", 0)


def tdx_quote_shaped(report_data: bytes) -> bytes:
    """An UNSIGNED blob laid out like a TDX DCAP v4 quote, for emulators only."""
    header = struct.pack("<HHIHH", 4, 2, 0x81, 0, 0) + b"\x00" * 16 + b"\x00" * 20
    body = bytearray(584)
    body[136:184] = b"\x11" * 48
    body[520:584] = report_data
    return header + bytes(body) + struct.pack("<I", 0)


# -- the Gramine manifest ------------------------------------------------------


def _render(tmp_path, **kw):
    return tomllib.loads(render_manifest(project_root=ROOT, datadir=tmp_path / "data",
                                         sealed_dir=tmp_path / "sealed", **kw))


def test_manifest_renders_to_toml_with_the_required_keys(tmp_path):
    m = _render(tmp_path)
    assert m["loader"]["entrypoint"]["uri"] == "file:{{ gramine.libos }}"  # left for gramine-manifest
    assert m["libos"]["entrypoint"] == os.path.realpath(sys.executable)
    argv = m["loader"]["argv"]
    assert argv[1:3] == ["-m", ENCLAVE_MODULE] and argv[argv.index("--backend") + 1] == "gramine"
    assert importlib.util.find_spec(ENCLAVE_MODULE + ".__main__") is not None  # the real entry point
    sgx = m["sgx"]
    assert sgx["remote_attestation"] == "dcap"
    assert sgx["enclave_size"] == "1G" and sgx["max_threads"] == 16 and sgx["debug"] is False
    enc = [x for x in m["fs"]["mounts"] if x.get("type") == "encrypted"]
    assert len(enc) == 1 and enc[0]["key_name"] == "_sgx_mrenclave" and enc[0]["path"] == SEALED_PATH
    assert enc[0]["uri"] == f"file:{(tmp_path / 'sealed').resolve()}"
    assert argv[argv.index("--sealed-dir") + 1] == SEALED_PATH  # the enclave seals onto that mount
    # trusted (measured) files: the interpreter, its stdlib, the dependencies' site-packages, the node package
    trusted = sgx["trusted_files"]
    import coincurve

    site = os.path.realpath(Path(coincurve.__file__).parent.parent)
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    for want in (f"file:{os.path.realpath(sys.executable)}", f"file:{ROOT}/node/", f"file:{stdlib}/",
                 f"file:{site}/", "file:{{ gramine.libos }}"):
        assert want in trusted, want
    assert f"file:{(tmp_path / 'sealed').resolve()}" not in trusted  # sealed state is encrypted, not trusted
    assert sgx["allowed_files"] == [f"file:{(tmp_path / 'data').resolve()}/"]  # the host datadir: lock only
    assert m["loader"]["env"]["PYTHONPATH"].split(":")[0] == "/keyswitch/app"


def test_manifest_options_and_refusals(tmp_path):
    m = _render(tmp_path, key_name="_sgx_mrsigner", enclave_size="512M", max_threads=8, debug=True,
                libos="/opt/gramine/libsysdb.so", runtimedir="/opt/gramine/runtime")
    assert [x["key_name"] for x in m["fs"]["mounts"] if x.get("type") == "encrypted"] == ["_sgx_mrsigner"]
    assert m["sgx"]["enclave_size"] == "512M" and m["sgx"]["max_threads"] == 8 and m["sgx"]["debug"] is True
    assert "file:/opt/gramine/libsysdb.so" in m["sgx"]["trusted_files"]
    text = render_manifest(project_root=ROOT, datadir=tmp_path, sealed_dir=tmp_path, libos="/x", runtimedir="/y")
    assert "{{" not in text.split("\n", 4)[-1]  # nothing left for gramine-manifest when both are given
    for bad in (dict(key_name="mykey"), dict(enclave_size="1000M"), dict(enclave_size="big"), dict(max_threads=1)):
        with pytest.raises(ValueError):
            _render(tmp_path, **bad)
    with pytest.raises(ValueError, match="not a Keyswitch checkout"):
        render_manifest(project_root=tmp_path, datadir=tmp_path, sealed_dir=tmp_path)


@pytest.mark.skipif(shutil.which("gramine-manifest") is not None, reason="Gramine is installed: make would sign")
def test_make_gramine_manifest_renders_then_says_what_is_missing(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["make", "-s", "gramine-manifest", f"GRAMINE_OUT={out}", f"PYTHON={sys.executable}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode != 0
    assert "gramine-manifest, gramine-sgx-sign not found" in r.stderr
    rendered = out / "keyswitch-enclave.manifest.template.rendered"
    assert tomllib.loads(rendered.read_text())["sgx"]["remote_attestation"] == "dcap"


def test_build_runs_gramine_tools_when_present(tmp_path, monkeypatch):
    from node.tee.gramine import __main__ as build

    calls = []
    monkeypatch.setattr(build.subprocess, "run", lambda cmd, check: calls.append(cmd))
    assert build.main(["--out", str(tmp_path), "--datadir", str(tmp_path / "d")], which=lambda t: "/usr/bin/" + t) == 0
    assert [c[0] for c in calls] == ["gramine-manifest", "gramine-sgx-sign"]
    assert calls[1][calls[1].index("--manifest") + 1] == str(tmp_path / "keyswitch-enclave.manifest")
    assert build.main(["--out", str(tmp_path)], which=lambda t: None) == build.EXIT_MISSING


# -- report data: the binding's hash, and only that -------------------------------


class RecordingProvider:
    kind = "test-recorder"

    def __init__(self, answer=b"QUOTE", fail: Exception | None = None):
        self.seen: list[bytes] = []
        self.answer, self.fail = answer, fail

    def quote(self, report_data: bytes) -> bytes:
        self.seen.append(report_data)
        if self.fail:
            raise self.fail
        return self.answer


def test_hardware_quote_gets_the_binding_hash_as_64_bytes_of_report_data():
    prov = RecordingProvider()
    core = EnclaveCore(None, measurement=code_measurement(), quote_provider=prov)
    core.generate_keys(2)
    b = binding_for(core)
    assert core.quote(b.encode(), timestamp=1) == b"QUOTE"
    (rd,) = prov.seen
    assert len(rd) == 64 and rd == hashlib.sha512(BINDING_TAG + b.encode()).digest() == b.report_data()
    assert core.info()["simulated"] is False
    # the same checks as the simulated quote: a foreign binding never reaches the hardware
    with pytest.raises(Refusal) as ei:
        core.quote(Binding("dev", "p", core.enc_pub, core.enc_pub, b.keys_root).encode(), timestamp=1)
    assert ei.value.code == "foreign-keys" and len(prov.seen) == 1
    with pytest.raises(Refusal) as ei:
        core.quote(b.encode(), timestamp=1, nonce=b"n")
    assert ei.value.code == "nonce-unsupported"
    broken = EnclaveCore(None, measurement=code_measurement(), quote_provider=RecordingProvider(fail=OSError("gone")))
    with pytest.raises(Refusal) as ei:
        broken.quote(binding_for(broken).encode(), timestamp=1)
    assert ei.value.code == "quote-failed" and "gone" in ei.value.reason


# -- Gramine's /dev/attestation: file protocol against an emulated directory ----------


@pytest.fixture
def emulated_attestation(tmp_path):
    """A directory shaped like Gramine's /dev/attestation. EMULATION: ``quote`` is a FIFO whose
    writer (a thread here) reads ``user_report_data`` and answers with an unsigned quote-shaped blob."""
    base = tmp_path / "attestation"
    base.mkdir()
    (base / "attestation_type").write_text("dcap\n")
    (base / "user_report_data").write_bytes(b"")
    (base / "my_target_info").write_bytes(MRENCLAVE + b"\x00" * 480)
    os.mkfifo(base / "quote")
    served: list[bytes] = []

    def serve_once():
        with open(base / "quote", "wb") as q:  # blocks until the provider opens the quote to read it
            rd = (base / "user_report_data").read_bytes()
            served.append(rd)
            q.write(sgx_quote_shaped(rd))

    def start():
        t = threading.Thread(target=serve_once, daemon=True)
        t.start()
        return t

    return base, start, served


def test_gramine_provider_speaks_the_pseudo_file_protocol(emulated_attestation):
    base, start, served = emulated_attestation
    rd = hashlib.sha512(b"report data").digest()
    t = start()
    blob = gatt.GramineQuoteProvider(base).quote(rd)
    t.join(5)
    assert served == [rd]  # the emulator saw exactly our 64 bytes before answering
    assert detect_format(blob) == "intel-dcap"
    v = verify_evidence(blob, policy=AttestationPolicy(), at=AT)
    # the blob reaches the DCAP verifier, which reads our report data and MRENCLAVE out of it;
    # it is not genuine (unsigned, and no collateral given)
    assert not v.ok and not v.genuine and v.code == "collateral-missing"
    assert v.report_data == rd.hex() and v.measurement == MRENCLAVE.hex()
    assert gatt.GramineQuoteProvider(base).mrenclave() == MRENCLAVE


def test_gramine_backend_through_the_enclave_core(emulated_attestation, tmp_path):
    from node.enclave.server import open_core

    base, start, served = emulated_attestation
    sealed = tmp_path / "sealed"  # stands in for the encrypted mount (Gramine's encryption is not tested here)
    sealed.mkdir()
    core = open_core(tmp_path / "data", backend="gramine", sealed_dir=sealed, attestation_dir=base)
    pubs = core.generate_keys(3)
    assert core.measurement == MRENCLAVE and core.info()["simulated"] is False
    b = binding_for(core)
    t = start()
    blob = core.quote(b.encode(), timestamp=1)
    t.join(5)
    assert served == [b.report_data()]
    v = verify_attestation(blob, b, policy=AttestationPolicy(), at=AT)
    assert v.code == "collateral-missing" and v.report_data == b.report_data().hex()
    assert (sealed / "vault.sealed").exists() and not (tmp_path / "data" / "enclave" / "vault.sealed").exists()
    again = open_core(tmp_path / "data", backend="gramine", sealed_dir=sealed, attestation_dir=base)
    assert again.held_pubkeys() == pubs  # unsealed from the (stand-in) encrypted mount


def test_gramine_provider_errors(tmp_path, emulated_attestation):
    base, _, _ = emulated_attestation
    with pytest.raises(ValueError, match="64 bytes"):
        gatt.GramineQuoteProvider(base).quote(b"short")
    (base / "attestation_type").write_text("none")
    with pytest.raises(gatt.GramineAttestationError, match='sgx.remote_attestation = "dcap"'):
        gatt.GramineQuoteProvider(base).quote(bytes(64))
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(gatt.GramineAttestationError, match="not running inside a Gramine-SGX enclave"):
        gatt.GramineQuoteProvider(empty).quote(bytes(64))
    from node.enclave.sealed import SealedStateError

    with pytest.raises(SealedStateError, match="encrypted mount"):
        GramineSealing(tmp_path / "no-mount").open_store()


# -- configfs-tsm: entry / generation protocol against an emulated kernel ------------


class EmulatedTsmKernel(FileOps):
    """EMULATION of the kernel side of /sys/kernel/config/tsm/report in a temporary directory:
    mkdir populates the attributes, writes to inblob/privlevel bump ``generation``, reading
    ``outblob`` produces the report from the inblob, rmdir removes the entry."""

    def __init__(self, provider="tdx_guest", make=tdx_quote_shaped):
        self.provider, self.make = provider, make
        self.inblobs: list[bytes] = []
        self.privlevels: list[bytes] = []
        self.on_outblob = None  # hook(entry, attempt_no): interference, errors
        self.on_write = None
        self.outblob_reads = 0

    def mkdir(self, path):
        os.mkdir(path)
        (path / "provider").write_text(self.provider + "\n")
        (path / "generation").write_text("0\n")
        (path / "privlevel_floor").write_text("0\n")

    def rmdir(self, path):
        shutil.rmtree(path)

    def _bump(self, entry):
        g = int((entry / "generation").read_text())
        (entry / "generation").write_text(f"{g + 1}\n")

    def write(self, path, data):
        entry = path.parent
        if path.name not in ("inblob", "privlevel"):
            raise OSError(errno.EACCES, "read-only attribute")
        if path.name == "inblob" and len(data) > 64:
            raise OSError(errno.EINVAL, "inblob over 64 bytes")
        (self.inblobs if path.name == "inblob" else self.privlevels).append(bytes(data))
        path.write_bytes(data)
        self._bump(entry)
        if self.on_write:
            self.on_write(entry, path.name)

    def read(self, path):
        if path.name == "outblob":
            self.outblob_reads += 1
            if self.on_outblob:
                self.on_outblob(path.parent, self.outblob_reads)
            return self.make((path.parent / "inblob").read_bytes())
        return super().read(path)


@pytest.fixture
def tsm(tmp_path):
    base = tmp_path / "tsm" / "report"
    base.mkdir(parents=True)
    return base, EmulatedTsmKernel()


def test_configfs_report_protocol_and_cleanup(tsm):
    base, kernel = tsm
    core = EnclaveCore(None, measurement=code_measurement())
    b = binding_for(core)
    rep = ConfigfsTsm(base, ops=kernel).report(b.report_data())
    assert kernel.inblobs == [b.report_data()] and len(kernel.inblobs[0]) == 64
    assert rep.provider == "tdx_guest" and rep.generation == 1 and rep.attempts == 1
    assert list(base.iterdir()) == []  # the entry directory was removed
    assert detect_format(rep.outblob) == "intel-dcap"
    v = verify_evidence(rep.outblob, policy=AttestationPolicy(), at=AT)
    assert v.code == "collateral-missing" and v.report_data == b.report_data().hex()  # it reached the verifier


def test_configfs_privlevel_is_written_and_counted(tsm):
    base, kernel = tsm
    rep = ConfigfsTsm(base, ops=kernel, privlevel=2).report(bytes(64))
    assert kernel.privlevels == [b"2"] and rep.generation == 2  # two writes: privlevel, inblob
    with pytest.raises(ValueError):
        ConfigfsTsm(base, privlevel=4)


def test_configfs_generation_change_during_read_is_retried(tsm):
    base, kernel = tsm
    kernel.on_outblob = lambda entry, n: kernel._bump(entry) if n == 1 else None  # another writer, once
    rep = ConfigfsTsm(base, ops=kernel).report(bytes(range(64)))
    assert rep.attempts == 2 and kernel.outblob_reads == 2 and list(base.iterdir()) == []


def test_configfs_extra_write_before_our_read_is_retried(tsm):
    base, kernel = tsm
    seen = []

    def interfere(entry, name):
        seen.append(name)
        if len(seen) == 1:
            kernel._bump(entry)  # someone else's write lands between ours and our generation check

    kernel.on_write = interfere
    rep = ConfigfsTsm(base, ops=kernel).report(bytes(64))
    assert rep.attempts == 2 and kernel.outblob_reads == 1  # the first attempt never read its outblob


def test_configfs_persistent_conflict_gives_up_with_the_reason(tsm):
    base, kernel = tsm
    kernel.on_outblob = lambda entry, n: kernel._bump(entry)
    with pytest.raises(TsmConflict, match="generation moved") as ei:
        ConfigfsTsm(base, ops=kernel, retries=3).report(bytes(64))
    assert "3 attempts" in ei.value.reason and kernel.outblob_reads == 3 and list(base.iterdir()) == []


def test_configfs_kernel_errors(tsm, tmp_path):
    base, kernel = tsm

    def busy_once(entry, n):
        if n == 1:
            raise OSError(errno.EBUSY, "Device or resource busy")

    kernel.on_outblob = busy_once
    assert ConfigfsTsm(base, ops=kernel).report(bytes(64)).attempts == 2

    def eio(entry, n):
        raise OSError(errno.EIO, "Input/output error")

    kernel.on_outblob = eio
    with pytest.raises(TsmError, match="Input/output error"):
        ConfigfsTsm(base, ops=kernel).report(bytes(64))
    assert list(base.iterdir()) == []
    kernel.on_outblob, kernel.make = None, lambda rd: b""
    with pytest.raises(TsmError, match="empty"):
        ConfigfsTsm(base, ops=kernel).report(bytes(64))
    with pytest.raises(ValueError, match="exactly 64"):
        ConfigfsTsm(base, ops=kernel).report(bytes(63))
    with pytest.raises(TsmUnavailable, match="not a confidential VM"):
        ConfigfsTsm(tmp_path / "absent").report(bytes(64))


@pytest.mark.skipif(not (SAMPLES / "tdx_quote_v4.bin").exists(), reason=f"DCAP samples not found at {SAMPLES}")
def test_configfs_outblob_is_verified_as_real_evidence(tsm):
    """The emulated kernel answers with a real TDX quote (recorded elsewhere, from the shared samples):
    the verifier finds it genuine, and ``verify_attestation`` refuses it because its report data is
    not this node's binding."""
    base, _ = tsm
    from node.attest.evidence.dcap import quote_end

    real = (SAMPLES / "tdx_quote_v4.bin").read_bytes()
    real = real[:quote_end(real)]  # the shared file ends in zero padding (refused); a kernel answers exactly
    kernel = EmulatedTsmKernel(make=lambda rd: real)
    outblob = ConfigfsTsm(base, ops=kernel).quote(bytes(64))
    coll = (SAMPLES / "tdx_quote_v4_collateral.json").read_bytes()
    v = verify_evidence(outblob, policy=AttestationPolicy(), at=AT, collateral=coll)
    assert v.genuine and v.vendor == "intel-tdx-dcap" and v.code == "measurement-not-allowed"
    core = EnclaveCore(None, measurement=code_measurement())
    pol = AttestationPolicy().with_measurements(v.measurement)  # allow the sample's build: only the binding differs
    va = verify_attestation(outblob, binding_for(core), policy=pol, at=AT, collateral=coll)
    assert va.genuine and not va.ok and va.code == "binding-mismatch"


SNP = ROOT.parent / "shared" / "testdata" / "attestation" / "amd-sev-snp"


def snp_cert_table(entries: list[tuple[str, bytes]]) -> bytes:
    """An SEV-SNP certificate table (GUID little-endian | offset | length, zero entry last)."""
    import uuid

    from node.enclave.hw.configfs_tsm import SNP_CERT_GUIDS

    head_len = 24 * (len(entries) + 1)
    head, body = b"", b""
    for name, der in entries:
        head += uuid.UUID(SNP_CERT_GUIDS[name]).bytes_le + struct.pack("<II", head_len + len(body), len(der))
        body += der
    return head + bytes(24) + body


@pytest.mark.skipif(not (SNP / "attestation.bin").exists(), reason=f"SEV-SNP samples not found at {SNP}")
def test_configfs_sev_guest_outblob_and_auxblob_reach_the_snp_verifier(tsm):
    """The emulated sev_guest answers with the real SNP sample report as outblob and a certificate
    table (the sample VCEK, ASK, ARK) as auxblob: the report verifies as genuine with that collateral."""
    import warnings

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    base, _ = tsm
    ask, ark = x509.load_pem_x509_certificates((SNP / "milan.testcer").read_bytes())
    table = snp_cert_table([("vcek", (SNP / "vcek.testcer").read_bytes()),
                            ("ask", ask.public_bytes(Encoding.DER)), ("ark", ark.public_bytes(Encoding.DER))])

    class SevGuest(EmulatedTsmKernel):
        def read(self, path):
            return table if path.name == "auxblob" else super().read(path)

    real = (SNP / "attestation.bin").read_bytes()
    rep = ConfigfsTsm(base, ops=SevGuest(provider="sev_guest", make=lambda rd: real)).report(bytes(64))
    assert rep.format == "amd-sev-snp" == detect_format(rep.outblob) and rep.auxblob == table
    coll = rep.collateral()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [c.subject.rfc4514_string().split("CN=")[1].split(",")[0]
                for c in x509.load_pem_x509_certificates(coll)] == ["SEV-VCEK", "SEV-Milan", "ARK-Milan"]
    v = verify_evidence(rep.outblob, policy=AttestationPolicy(), at=dt.datetime(2023, 1, 1, tzinfo=dt.timezone.utc),
                        collateral=coll)
    assert v.genuine and v.vendor == "amd-sev-snp", v
    from node.enclave.hw.configfs_tsm import snp_certs_from_auxblob, snp_collateral

    assert snp_collateral(snp_cert_table([("ask", ask.public_bytes(Encoding.DER))])) is None  # no VCEK
    with pytest.raises(TsmError, match="terminating"):
        snp_certs_from_auxblob(b"\x01" * 16 + struct.pack("<II", 0, 24))  # one entry, no zero entry after it
    with pytest.raises(TsmError, match="outside"):
        snp_certs_from_auxblob(table[:16] + struct.pack("<II", 10**6, 5) + bytes(24))


# -- backend selection --------------------------------------------------------------


def test_backend_config_and_factory(tmp_path):
    assert config.load(tmp_path, env={})["tee.backend"] == "simulated"
    for name in backends.BACKENDS:
        assert backends.backend_of(config.load(tmp_path, env={}, overrides={"tee.backend": name})) == name
    with pytest.raises(config.ConfigError, match="must be one of simulated, gramine, configfs") as ei:
        config.load(tmp_path, env={"KEYSWITCH_TEE_BACKEND": "sgx"})
    assert ei.value.key == "tee.backend" and ei.value.source == "KEYSWITCH_TEE_BACKEND"
    assert backends.make_quote_provider("simulated") is None
    g = backends.make_quote_provider("gramine", attestation_dir=tmp_path)
    assert isinstance(g, gatt.GramineQuoteProvider) and g.base == tmp_path
    c = backends.make_quote_provider("configfs", tsm_dir=tmp_path, privlevel=1)
    assert isinstance(c, ConfigfsTsm) and c.base == tmp_path and c.privlevel == 1
    assert isinstance(g, backends.QuoteProvider) and isinstance(c, backends.QuoteProvider)
    with pytest.raises(config.ConfigError, match="tee.backend"):
        backends.make_quote_provider("configfs-tsm-typo")
    assert backends.missing_hardware("simulated") is None
    assert "does not exist" in backends.missing_hardware("configfs", tsm_dir=tmp_path / "x")


def test_enclave_process_refuses_a_missing_backend(tmp_path):
    from node.enclave import server

    rc = server.main(["--datadir", str(tmp_path), "--backend", "gramine", "--sealed-dir", str(tmp_path / "none")])
    assert rc == server.EXIT_SEALED


def test_subprocess_enclave_with_a_hardware_backend(tmp_path):
    """The enclave process started with --backend configfs against an empty directory (no kernel
    behind it): it starts, says it is not simulated, and refuses to quote with the provider's reason."""
    from node.tee.client import EnclaveRefused, SubprocessEnclave

    tsm_dir = tmp_path / "tsm"
    tsm_dir.mkdir()
    with SubprocessEnclave(tmp_path / "data", backend="configfs", enclave_args=["--tsm-dir", str(tsm_dir)]) as enc:
        assert enc.info().simulated is False
        with pytest.raises(EnclaveRefused) as ei:
            enc.quote(enc.binding_for("dev", "12D3KooWtest"), now=1)
        assert ei.value.code == "quote-failed" and "configfs-tsm" in ei.value.reason
    with pytest.raises(config.ConfigError):
        SubprocessEnclave(tmp_path / "data", backend="sgx")


# -- the real hardware path (skipped here unless the device exists) -------------------


GRAMINE_MISSING = gatt.missing_reason()
TSM_MISSING = backends.missing_hardware("configfs")


@pytest.mark.skipif(GRAMINE_MISSING is not None, reason=f"Gramine SGX quote device missing: {GRAMINE_MISSING}")
def test_real_gramine_quote():
    from node.attest.evidence.dcap import parse_quote

    rd = hashlib.sha512(b"keyswitch real gramine test").digest()
    blob = gatt.GramineQuoteProvider().quote(rd)
    assert parse_quote(blob).report_data == rd


@pytest.mark.skipif(TSM_MISSING is not None, reason=f"configfs-tsm missing: {TSM_MISSING}")
def test_real_configfs_tsm_report():
    rd = hashlib.sha512(b"keyswitch real configfs-tsm test").digest()
    rep = ConfigfsTsm().report(rd)
    fmt = detect_format(rep.outblob)
    assert fmt in ("intel-dcap", "amd-sev-snp"), (rep.provider, fmt)
    assert fmt == rep.format
    v = verify_evidence(rep.outblob, policy=AttestationPolicy(), at=dt.datetime.now(dt.timezone.utc),
                        collateral=rep.collateral())
    assert v.report_data == rd.hex(), v
