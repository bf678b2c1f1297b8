"""The untrusted host's view of the enclave.

``Enclave`` is the TEE backend interface; two implementations run the same
trusted core (``node.enclave``):

* ``SubprocessEnclave(datadir)``: the enclave as a separate OS process
  (``python -m node.enclave --datadir D``) behind framed request/response
  messages over pipes. This is the simulated backend a node uses.
* ``InProcessEnclave(datadir=None)``: the same core and the same message
  handling, called in-process (the simulator, fast tests). ``datadir=None``
  keeps the sealed state in memory only.

The hardware backends run the same process and protocol with
``SubprocessEnclave(datadir, backend="gramine" | "configfs")``: quotes then
come from the hardware (``node.tee.backends``). The simulated backends print a
loud ``SIMULATED TEE: INSECURE`` warning once per process.

The API is synchronous; the trio runtime wraps calls in
``trio.to_thread.run_sync``. Calls are serialized by a lock.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

import msgspec

from node.clock import Clock, SystemClock
from node.crypto import tagged_hash, verify_digest
from node.crypto import verify_domain_sig  # noqa: F401  (re-exported: it moved into the enclave's trusted code)
from node.attest.binding import Binding, keys_root
from node.enclave import messages as m
from node.enclave.core import OFFER_SHEET_TAG

if TYPE_CHECKING:  # the enclave's answer types, named in annotations only (the client decodes them from the IPC)
    from node.enclave.contracts import ContractStatus, HoldResult, OpenResult, ShareStatus, SplitShare, StepResult

log = logging.getLogger("keyswitch.tee")
T = TypeVar("T")

SIMULATED_WARNING = (
    "SIMULATED TEE: INSECURE. The enclave is an ordinary process; its sealing key is a file in the data "
    "directory and its 'vendor' root key is public. Use it for development and simulations only."
)
_warned = False
_warn_lock = threading.Lock()


def warn_simulated() -> None:
    """Print the simulated-TEE warning once per process (stderr and the log)."""
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    sys.stderr.write(f"\n*** {SIMULATED_WARNING} ***\n\n")
    sys.stderr.flush()
    if log.hasHandlers():  # logging configured: record it there too (no duplicate on bare stderr)
        log.warning(SIMULATED_WARNING)


class EnclaveError(Exception):
    pass


class EnclaveRefused(EnclaveError):
    """The enclave refused the request; ``code`` is stable, ``reason`` is for humans."""

    def __init__(self, reason: str, code: str = "refused") -> None:
        super().__init__(f"{code}: {reason}")
        self.reason = reason
        self.code = code


class EnclaveUnavailable(EnclaveError):
    """The enclave process is not running (failed to start, crashed, or closed)."""


@dataclass(frozen=True)
class EnclaveInfo:
    device_id: bytes  # 32
    sign_pub: bytes  # 33
    enc_pub: bytes  # 33
    measurement: str  # hex
    simulated: bool
    debug: bool = False
    device_cert: bytes = b""
    counter: int = 0  # sealed-state monotonic counter at the time of the call


@dataclass(frozen=True)
class KeyStatus:
    pubkey: bytes
    state: str  # held | released | received | exported | escrowed
    recipient: bytes = b""  # ECIES key it was released to ("released" only)
    origin: str = "generated"  # generated | received | escrow


@runtime_checkable
class Enclave(Protocol):
    """The TEE backend interface (simulated process, in-process, or hardware)."""

    def info(self) -> EnclaveInfo: ...
    def sign_pub(self) -> bytes: ...
    def generate_keys(self, n: int) -> list[bytes]: ...
    def list_keys(self) -> list[KeyStatus]: ...
    def quote(self, binding: Binding, *, nonce: bytes = b"", now: float | None = None) -> bytes: ...
    def sign_offer_sheet(self, sheet_bytes: bytes, deposit_pubkeys: list[bytes]) -> bytes: ...
    def sign_offer_sheets(self, batch: list[tuple[bytes, list[bytes]]]) -> list[bytes]: ...
    def sign(self, domain: str, digest32: bytes) -> bytes: ...
    def export_to_owner(self, deposit_pub: bytes) -> bytes: ...
    def contract_open(self, spec: bytes, sigs: list[tuple[int, bytes]] = ()): ...
    def attest_peer(self, binding: Binding, quote: bytes, *, now: float | None = None) -> bytes: ...
    def contract_height(self, cid: bytes, asset: str, height: int) -> int: ...
    def contract_approve(self, cid: bytes, party: int, message: str, sig: bytes) -> None: ...
    def contract_status(self, cid: bytes): ...
    def contract_forget(self, cid: bytes) -> None: ...
    def contract_drop(self, cid: bytes) -> None: ...
    def contract_release(self, cid: bytes, index: int, receiver: int) -> bytes: ...
    def contract_resend(self, cid: bytes, index: int) -> bytes: ...
    def contract_refund(self, cid: bytes, index: int) -> bytes: ...
    def contract_accept(self, cid: bytes, record: bytes) -> tuple[int, int]: ...
    def contract_step(self, cid: bytes, record: bytes, index: int, receiver: int, ack_digest: bytes,
                      export: bool = False): ...
    def escrow_split(self, deposit_pub: bytes, holders: list[bytes], k: int, beneficiary: bytes,
                     context: bytes) -> list[bytes]: ...
    def escrow_accept(self, ciphertext: bytes, owner_pub: bytes, context: bytes) -> int: ...
    def escrow_release_share(self, owner_pub: bytes, context: bytes) -> bytes: ...
    def escrow_recover(self, owner_pub: bytes, context: bytes, ciphertexts: list[bytes]) -> bytes: ...
    def contract_escrow_split(self, cid: bytes): ...
    def escrow_hold(self, spec: bytes, sigs: list[tuple[int, bytes]], shares: list = ()): ...
    def escrow_height(self, cid: bytes, asset: str, height: int) -> int: ...
    def escrow_approve(self, cid: bytes, party: int, message: str, sig: bytes) -> None: ...
    def escrow_moved(self, cid: bytes, record: bytes) -> tuple[int, int, int]: ...
    def escrow_share(self, cid: bytes, party: int, index: int, recipient: bytes) -> bytes: ...
    def escrow_holdings(self, cid: bytes = b""): ...
    def escrow_forget(self, cid: bytes) -> None: ...
    def escrow_rebuild(self, cid: bytes, party: int, index: int, pub: bytes, ciphertexts: list[bytes]) -> bytes: ...
    def close(self) -> None: ...


def offer_sheet_digest(sheet_bytes: bytes) -> bytes:
    return tagged_hash(OFFER_SHEET_TAG, sheet_bytes)


def verify_offer_sheet_sig(sign_pub: bytes, sheet_bytes: bytes, sig: bytes) -> bool:
    """True iff ``sig`` is the enclave key ``sign_pub``'s signature over the offer sheet."""
    return verify_digest(sign_pub, tagged_hash(OFFER_SHEET_TAG, sheet_bytes), sig)


_enc = msgspec.msgpack.Encoder()
_resp_dec = msgspec.msgpack.Decoder(m.Response)


class _Base:
    """Shared client logic: build requests, decode replies, map errors."""

    simulated = True

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._next_id = 0
        # per request kind: [calls, seconds waiting for the lock, seconds in the round trip] (``call_stats``)
        self._stats: dict[str, list] = {}
        # contract_status answers, each with the count of other calls sent before it was asked (``contract_status``)
        self._calls_sent = 0
        self._sign_pub: bytes | None = None
        self._statuses: dict[bytes, tuple[int, object]] = {}
        if self.simulated:
            warn_simulated()

    def _roundtrip(self, payload: bytes) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _call(self, op, result_type: type[T]) -> T:
        t0 = time.perf_counter()
        with self._lock:
            t1 = time.perf_counter()
            self._next_id += 1
            req_id = self._next_id
            if not isinstance(op, m.ContractStatusOp):
                self._calls_sent += 1  # it may change what the enclave answers: no status read before it is reused
            try:
                raw = self._roundtrip(_enc.encode(m.Request(m.PROTOCOL_VERSION, req_id, op)))
            finally:
                row = self._stats.setdefault(type(op).__name__, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += t1 - t0
                row[2] += time.perf_counter() - t1
        try:
            resp = _resp_dec.decode(raw)
        except msgspec.MsgspecError:
            raise EnclaveUnavailable("the enclave sent an undecodable reply") from None
        if resp.id not in (req_id, 0):
            raise EnclaveUnavailable(f"reply id {resp.id} does not match request {req_id}")
        if not resp.ok:
            raise EnclaveRefused(resp.reason, resp.code)
        try:
            return msgspec.msgpack.decode(resp.body, type=result_type)
        except msgspec.MsgspecError:
            raise EnclaveUnavailable("the enclave's result does not decode") from None

    def call_stats(self) -> dict[str, dict]:
        """Per request kind since the start: ``calls``, ``wait_s`` (waiting for another call to end: calls are
        serialised) and ``call_s`` (the round trip: the enclave's work, its journal's fsyncs, the pipes)."""
        with self._lock:
            return {k: {"calls": n, "wait_s": round(w, 4), "call_s": round(c, 4)}
                    for k, (n, w, c) in sorted(self._stats.items())}

    # -- the Enclave API ------------------------------------------------------

    def info(self) -> EnclaveInfo:
        r = self._call(m.Hello(), m.InfoResult)
        return EnclaveInfo(r.device_id, r.sign_pub, r.enc_pub, r.measurement, r.simulated, r.debug,
                           r.device_cert, r.counter)

    def generate_keys(self, n: int) -> list[bytes]:
        return self._call(m.GenerateKeys(n), list[bytes])

    def sign_pub(self) -> bytes:
        """The enclave's signing key (``info().sign_pub``), asked once: it is sealed with the enclave's state, the
        same key for the life of this client (a restarted enclave process unseals the same one)."""
        if self._sign_pub is None:
            self._sign_pub = self.info().sign_pub
        return self._sign_pub

    def list_keys(self) -> list[KeyStatus]:
        return [KeyStatus(k.pub, k.state, k.recipient, k.origin) for k in self._call(m.ListKeys(), list[m.KeyStatusMsg])]

    def held_pubkeys(self) -> list[bytes]:
        """Deposit keys this enclave still controls alone (held or received)."""
        return [k.pubkey for k in self.list_keys() if k.state in ("held", "received")]

    def offerable_pubkeys(self) -> list[bytes]:
        """The held keys the enclave would sign an offer for: not committed to an open contract (I4)."""
        return self._call(m.OfferableKeys(), list[bytes])

    def binding_for(self, net: str, peer_id: str) -> Binding:
        """The binding this enclave will quote: its keys, the peer id, the root of its held deposit keys."""
        i = self.info()
        return Binding(net=net, peer_id=peer_id, sign_pub=i.sign_pub, enc_pub=i.enc_pub,
                       keys_root=keys_root(self.held_pubkeys()))

    def quote(self, binding: Binding, *, nonce: bytes = b"", now: float | None = None) -> bytes:
        ts = int(self._clock.now() if now is None else now)
        return self._call(m.MakeQuote(binding.encode(), ts, nonce), bytes)

    def sign_offer_sheet(self, sheet_bytes: bytes, deposit_pubkeys: list[bytes]) -> bytes:
        return self.sign_offer_sheets([(sheet_bytes, deposit_pubkeys)])[0]

    def sign_offer_sheets(self, batch: list[tuple[bytes, list[bytes]]]) -> list[bytes]:
        """Sign many sheets in one round trip; one bad item refuses the whole batch. Each item is a version-3
        sheet body (``node.protocols.offers.encode_body``) and exactly the keys it offers (I4: the enclave
        reads them from the body and checks each)."""
        items = [m.OfferItem(bytes(s), list(p)) for s, p in batch]
        return self._call(m.SignOfferSheets(items), list[bytes])

    def sign(self, domain: str, digest32: bytes) -> bytes:
        return self._call(m.SignDomain(domain, digest32), bytes)

    def export_to_owner(self, deposit_pub: bytes) -> bytes:
        return self._call(m.ExportKey(deposit_pub), bytes)

    # -- contracts: the enclave decides which key goes where (node.enclave.contracts) -----------
    def contract_open(self, spec: bytes, sigs: list[tuple[int, bytes]] = ()) -> "OpenResult":
        """Open (or add the parties' signatures over the id of) a contract; returns its id, our party
        index, our enclave's signature over the id, and the runners whose signature is still missing."""
        from node.enclave.contracts import OpenResult, PartySig

        return self._call(m.ContractOpen(spec, [PartySig(k, s) for k, s in sigs]), OpenResult)

    def attest_peer(self, binding: Binding, quote: bytes, *, now: float | None = None) -> bytes:
        """Have the enclave verify a peer enclave's quote for ``binding`` itself (under its own policy) and
        remember it (I3): the enclave releases keys and escrow shares only to enclaves it verified.
        ``now`` (default: the client's clock) is the host's time for the evidence's validity window.
        Returns the peer's encryption key."""
        t = self._clock.now() if now is None else now
        return self._call(m.AttestPeer(binding.encode(), quote, max(0, int(t))), bytes)

    def contract_height(self, cid: bytes, asset: str, height: int) -> int:
        """Hand in a ledger height (the enclave trusts its host for heights; they only move forward)."""
        return self._call(m.ContractHeight(cid, asset, height), int)

    def contract_approve(self, cid: bytes, party: int, message: str, sig: bytes) -> None:
        """Hand in a party's signature over (cid, message); the enclave verifies it against the party's key."""
        self._call(m.ContractApprove(cid, party, message, sig), bool)

    def contract_status(self, cid: bytes) -> "ContractStatus":
        """What the contract allows now and what moved under it. The enclave's answer is a function of its state
        alone (no clock), and its state changes only by a call of ours: an answer is reused until any other call
        is sent (a release, an accept, a height, a call that failed: counted before it goes out), so a runner that
        asks again with nothing done in between costs no round trip (a swap asked about twice per release)."""
        from node.enclave.contracts import ContractStatus

        sent = self._calls_sent  # read before our call: one sent meanwhile makes this answer unusable later
        hit = self._statuses.get(cid)
        if hit is not None and hit[0] == sent:
            return hit[1]  # type: ignore[return-value]
        st = self._call(m.ContractStatusOp(cid), ContractStatus)
        if len(self._statuses) >= 256:
            self._statuses.clear()  # (bounded: the contracts running at once are far fewer)
        self._statuses[cid] = (sent, st)
        return st

    def contract_drop(self, cid: bytes) -> None:
        """Forget an open contract not every runner signed, under which nothing moved: our chunks are ours again."""
        self._call(m.ContractDrop(cid), bool)

    def contract_forget(self, cid: bytes) -> None:
        """Drop a contract that is over for us from the enclave's sealed state (refused unless it is: see
        ``node.enclave.contracts.Contracts.forget``); what moved under it stays in the key table."""
        self._call(m.ContractForget(cid), bool)

    def contract_release(self, cid: bytes, index: int, receiver: int) -> bytes:
        """Our chunk ``index`` to party ``receiver``, if the contract allows it now: the signed release record."""
        return self._call(m.ContractRelease(cid, index, receiver), bytes)

    def contract_resend(self, cid: bytes, index: int) -> bytes:
        return self._call(m.ContractResend(cid, index), bytes)

    def contract_refund(self, cid: bytes, index: int) -> bytes:
        """The private key of our chunk ``index``, handed back to its owner when the contract refunds it."""
        return self._call(m.ContractRefund(cid, index), bytes)

    def contract_accept(self, cid: bytes, record: bytes) -> tuple[int, int]:
        """Take the key a signed release record carries; returns (giver, index)."""
        g, i = self._call(m.ContractAccept(cid, record), list[int])
        return g, i

    def contract_step(self, cid: bytes, record: bytes, index: int, receiver: int, ack_digest: bytes,
                      export: bool = False) -> "StepResult":
        """One enclave round trip (one sealed write) for a round of a tit-for-tat contract:
        ``contract_accept(cid, record)`` (refused as it would be: nothing released), with ``export`` the key
        taken handed to its owner too (as ``export_to_owner``, which then returns it without a write), our
        "release-msg" signature over ``ack_digest``, then, unless ``index`` is -1,
        ``contract_release(cid, index, receiver)`` if the contract allows it now (else ``record`` is b"" and
        ``code``/``reason`` say why). Ask for a release only once the funds of the key in ``record`` were
        seen still there."""
        from node.enclave.contracts import StepResult

        return self._call(m.ContractStep(cid, record, index, receiver, ack_digest, export), StepResult)

    # -- escrow: Shamir shares of a deposit key held by k-of-n other attested enclaves
    def escrow_split(self, deposit_pub: bytes, holders: list[bytes], k: int, beneficiary: bytes,
                     context: bytes) -> list[bytes]:
        """Shares of the key, one ciphertext per holder (their attested encryption keys), any ``k``
        of which rebuild it; only ``beneficiary``'s enclave can receive them back."""
        return self._call(m.EscrowSplit(deposit_pub, list(holders), k, beneficiary, context), list[bytes])

    def escrow_accept(self, ciphertext: bytes, owner_pub: bytes, context: bytes) -> int:
        return self._call(m.EscrowAccept(ciphertext, owner_pub, context), int)

    def escrow_release_share(self, owner_pub: bytes, context: bytes) -> bytes:
        return self._call(m.EscrowReleaseShare(owner_pub, context), bytes)

    def escrow_recover(self, owner_pub: bytes, context: bytes, ciphertexts: list[bytes]) -> bytes:
        return self._call(m.EscrowRecover(owner_pub, context, list(ciphertexts)), bytes)

    # -- key escrow under a contract (node.enclave.contracts: the split, and ``Holdings``) ----------
    def contract_escrow_split(self, cid: bytes) -> list["SplitShare"]:
        """Owner: the (deterministic) shares of our escrowed, unmoved chunks of an open contract, one per
        holder, encrypted to it and signed by our enclave. The keys stay committed to the contract."""
        from node.enclave.contracts import SplitShare

        return self._call(m.ContractEscrowSplit(cid), list[SplitShare])

    def escrow_hold(self, spec: bytes, sigs: list[tuple[int, bytes]], shares: list = ()) -> "HoldResult":
        """Holder: take a contract we are an escrow holder of (terms verified, runners' signatures over its id)
        and the shares sent to us; again to add signatures. Idempotent."""
        from node.enclave.contracts import HoldResult, PartySig

        return self._call(m.EscrowHold(spec, [PartySig(k, s) for k, s in sigs], list(shares)), HoldResult)

    def escrow_height(self, cid: bytes, asset: str, height: int) -> int:
        """Holder: a ledger height for a held contract (trusted from the host, forward only)."""
        return self._call(m.EscrowHeight(cid, asset, height), int)

    def escrow_approve(self, cid: bytes, party: int, message: str, sig: bytes) -> None:
        """Holder: a party's approval (verified against its key), e.g. the escrow arbiter's "release"."""
        self._call(m.EscrowApprove(cid, party, message, sig), bool)

    def escrow_moved(self, cid: bytes, record: bytes) -> tuple[int, int, int]:
        """Holder: a giver's signed release record: that chunk moved, its share is never released."""
        g, i, r = self._call(m.EscrowMoved(cid, record), list[int])
        return g, i, r

    def escrow_share(self, cid: bytes, party: int, index: int, recipient: bytes) -> bytes:
        """Holder: our share of chunk (party, index) for ``recipient``, only if it is the chunk's beneficiary
        and the contract refunds the chunk now."""
        return self._call(m.EscrowShare(cid, party, index, recipient), bytes)

    def escrow_holdings(self, cid: bytes = b"") -> list["ShareStatus"]:
        from node.enclave.contracts import ShareStatus

        return self._call(m.EscrowHoldings(cid), list[ShareStatus])

    def escrow_forget(self, cid: bytes) -> None:
        """Holder: let go of a contract we hold shares of (``Holdings.forget``); a later hold of it is refused."""
        self._call(m.EscrowForget(cid), bool)

    def escrow_rebuild(self, cid: bytes, party: int, index: int, pub: bytes, ciphertexts: list[bytes]) -> bytes:
        """Beneficiary: rebuild the chunk's key from its holders' released shares (then ``export_to_owner``)."""
        return self._call(m.EscrowRebuild(cid, party, index, pub, list(ciphertexts)), bytes)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessEnclave(_Base):
    """The trusted core in this process (same messages, no pipe). ``datadir=None``: memory only.

    ``seed`` (memory only) makes key generation deterministic for reproducible simulations.
    """

    def __init__(
        self, datadir: Path | None = None, *, clock: Clock | None = None, debug: bool = False,
        seed: bytes | None = None,
    ) -> None:
        from node.enclave.core import EnclaveCore
        from node.enclave.measure import code_measurement
        from node.enclave.server import lock_vault, open_core
        from node.enclave.sealed import SealedStateError

        super().__init__(clock)
        self._lockfile = None
        self._core = None
        try:
            if datadir is None:
                self._core = EnclaveCore(None, measurement=code_measurement(), debug=debug, seed=seed)
            else:
                if seed is not None:
                    raise ValueError("seed is for memory-only enclaves (datadir=None)")
                self._lockfile = lock_vault(Path(datadir))
                self._core = open_core(Path(datadir), debug=debug)
        except SealedStateError as exc:
            self.close()
            raise EnclaveUnavailable(f"cannot open sealed state: {exc.reason}") from None

    def _roundtrip(self, payload: bytes) -> bytes:
        if self._core is None:
            raise EnclaveUnavailable("enclave closed")
        try:
            return m.handle(self._core, payload)
        finally:
            self._core.flush()

    def close(self) -> None:
        self._core = None
        if self._lockfile is not None:
            self._lockfile.close()  # releases the vault lock
            self._lockfile = None


class SubprocessEnclave(_Base):
    """The enclave as a separate OS process speaking framed messages over its stdin/stdout."""

    def __init__(
        self,
        datadir: Path,
        *,
        sealing_key_source: str = "secret-file",
        clock: Clock | None = None,
        debug: bool = False,
        python: str | None = None,
        start_timeout: float = 30.0,
        backend: str = "simulated",
        enclave_args: list[str] | tuple[str, ...] = (),
        command: list[str] | None = None,
    ) -> None:
        """``backend``: simulated | gramine | configfs (``node.tee.backends``); hardware backends print no
        simulated warning. ``enclave_args`` are appended to the enclave's command line (e.g. ``--tsm-dir``).
        ``command`` replaces the whole command line, e.g. ``["gramine-sgx", "build/gramine/keyswitch-enclave"]``
        (under Gramine the enclave's arguments are fixed in the signed manifest)."""
        from node.tee.backends import check_backend

        self.backend = check_backend(backend)
        self.simulated = backend == "simulated"
        if self.simulated and sealing_key_source != "secret-file":
            raise ValueError("the simulated backend derives its sealing key from a secret file ('secret-file')")
        self._enclave_args = list(enclave_args)
        self._command = list(command) if command else None
        super().__init__(clock)
        self.datadir = Path(datadir)
        self._python = python or sys.executable
        self._debug = debug
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start (or restart) the enclave process and check it answers."""
        self.close()
        self.datadir.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if self._command is not None:
            cmd = list(self._command)
        else:
            cmd = [self._python, "-m", "node.enclave", "--datadir", str(self.datadir)]
            if self.backend != "simulated":
                cmd += ["--backend", self.backend]
            if self._debug:
                cmd.append("--debug")
            cmd += self._enclave_args
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      env=env, bufsize=0)
        self.info()  # raises EnclaveUnavailable with the enclave's own words if it did not start

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-2000:].decode(errors="replace").strip()
        except Exception:
            return ""

    def _dead(self, what: str) -> EnclaveUnavailable:
        rc = self._proc.poll() if self._proc else None
        detail = self._stderr_text()
        return EnclaveUnavailable(f"enclave process {what}" + (f" (exit {rc})" if rc is not None else "")
                                  + (f": {detail}" if detail else ""))

    def _roundtrip(self, payload: bytes) -> bytes:
        p = self._proc
        if p is None or p.stdin is None or p.stdout is None:
            raise EnclaveUnavailable("enclave process not running")
        try:
            p.stdin.write(m.encode_frame(payload))
            p.stdin.flush()
            hdr = self._read_exact(p.stdout, 4)
            n = int.from_bytes(hdr, "big")
            if n > m.MAX_FRAME:
                raise self._dead("sent an oversized reply")
            return self._read_exact(p.stdout, n)
        except OSError:  # broken pipe: the process is gone
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise self._dead("is gone") from None

    def _read_exact(self, f, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = f.read(n - len(buf))
            if not chunk:
                try:
                    self._proc.wait(timeout=5)
                except Exception:
                    pass
                raise self._dead("closed its pipe")
            buf += chunk
        return bytes(buf)

    def close(self) -> None:
        p, self._proc = self._proc, None
        if p is not None:
            try:
                if p.stdin:
                    p.stdin.close()
                p.wait(timeout=10)
            except Exception:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def kill(self) -> None:
        """SIGKILL the enclave process (tests of crash safety)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
