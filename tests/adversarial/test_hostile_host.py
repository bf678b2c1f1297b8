"""A hostile host against three enclaves: hypothesis drives random sequences of EVERY production IPC
operation (raw request bytes through ``node.tee.enclave.messages.handle``, which is the IPC), with random and
adversarial arguments: specs naming other enclaves' or host-made keys, a key committed again to a second
contract, exports and raw escrow splits of committed keys, releases and refunds in any order, other enclaves'
release records replayed, forged and genuine quotes, offer sheets naming any key, the test-only raw
operations, and crashes (the core reopened from its sealed store). After every step it checks I1-I4:

* I1: a key committed to an open contract never reaches the host: no export, no raw split, no second
  contract of it succeeds while it is committed, and no release record is ever readable by a host key;
* I2: no key leaves twice: per enclave's journal one release/export/escrow per key, ever (across crashes);
* I3: a release or escrow share goes only to an enclave's key, never to a host key (the release-record
  check above), and a host-made quote is never accepted;
* I4: no signature over an offer sheet naming a key the enclave does not hold, or one that is committed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import coincurve
import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from node import wire
from node.assets import address_for
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, ReleaseBody, approval_digest, make_spec, release_context
from node.crypto import DecryptError, ecies_decrypt, pubkey_of, sign_digest, tagged_hash
from node.tee.binding import Binding, keys_root
from node.tee.enclave import messages as m
from node.tee.enclave import simformat
from node.tee.enclave.contracts import PartySig
from node.tee.enclave.core import release_aad
from node.tee.enclave.server import open_core

NET = "dev"
N_ENCLAVES = 3
_enc = msgspec.msgpack.Encoder()


class Host:
    """What the hostile host owns: its own signing and ECIES keys (to play fake parties and holders), and
    every private key it ever saw."""

    def __init__(self) -> None:
        self.sign = coincurve.PrivateKey()
        self.encs = [coincurve.PrivateKey() for _ in range(2)]
        self.known: set[bytes] = set()  # deposit private keys the host learned

    def binding(self, peer: str) -> Binding:
        return Binding(NET, peer, pubkey_of(self.sign), pubkey_of(self.encs[0]))


class HostileHost(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="hostile-host-"))
        self.host = Host()
        self.cores = [open_core(self.tmp / f"e{i}") for i in range(N_ENCLAVES)]
        self.req = 0
        self.keys: list[tuple[int, bytes]] = []  # (enclave, deposit pub) the host has seen generated
        # the test's own account of commitments: pub -> set of cids it is committed to and has not moved in
        self.committed: dict[bytes, set[bytes]] = {}
        self.contracts: list[tuple[bytes, bytes, int, int]] = []  # (cid, spec bytes, enclave, chunk owner party)
        self.records: list[tuple[bytes, bytes]] = []  # (cid, release record) the host saw
        self.violations: list[str] = []

    def teardown(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- the IPC -------------------------------------------------------------------------
    def call(self, i: int, op) -> m.Response:
        self.req += 1
        raw = m.handle(self.cores[i], _enc.encode(m.Request(m.PROTOCOL_VERSION, self.req, op)))
        self.cores[i].flush()
        resp = msgspec.msgpack.decode(raw, type=m.Response)
        if resp.ok:
            self._learn(resp.body)
        return resp

    def _learn(self, body: bytes) -> None:
        """Any 32-byte value in a reply that is the secret of a deposit key the host has seen is learned."""
        try:
            val = msgspec.msgpack.decode(body)
        except msgspec.MsgspecError:
            return
        stack = [val]
        pubs = {p for _, p in self.keys}
        while stack:
            v = stack.pop()
            if isinstance(v, (list, tuple)):
                stack.extend(v)
            elif isinstance(v, bytes) and len(v) == 32:
                try:
                    if pubkey_of(coincurve.PrivateKey(v)) in pubs:
                        self.host.known.add(pubkey_of(coincurve.PrivateKey(v)))
                except Exception:
                    pass

    def info(self, i: int) -> m.InfoResult:
        return msgspec.msgpack.decode(self.call(i, m.Hello()).body, type=m.InfoResult)

    def binding(self, i: int, peer: str | None = None) -> Binding:
        inf = self.info(i)
        return Binding(NET, peer or f"E{i}", inf.sign_pub, inf.enc_pub)

    def states(self, i: int) -> dict[bytes, str]:
        return {k.pub: k.state for k in msgspec.msgpack.decode(self.call(i, m.ListKeys()).body,
                                                               type=list[m.KeyStatusMsg])}

    def _committed_now(self, pub: bytes) -> bool:
        return bool(self.committed.get(pub))

    # -- rules: the host's whole power ------------------------------------------------------
    @initialize(attest_all=st.booleans())
    def setup(self, attest_all) -> None:
        for i in range(N_ENCLAVES):
            self.gen(i, 2)
        if attest_all:  # (an honest start: every enclave verified the others; the host turns hostile later)
            for i in range(N_ENCLAVES):
                for j in range(N_ENCLAVES):
                    if i != j:
                        self.attest(i, j, False)

    @rule(i=st.integers(0, N_ENCLAVES - 1), n=st.integers(1, 2))
    def gen(self, i, n) -> None:
        r = self.call(i, m.GenerateKeys(n))
        assert r.ok, r
        self.keys += [(i, p) for p in msgspec.msgpack.decode(r.body, type=list[bytes])]

    @rule(i=st.integers(0, N_ENCLAVES - 1), j=st.integers(0, N_ENCLAVES - 1), forged=st.booleans())
    def attest(self, i, j, forged) -> None:
        """The host hands enclave i a quote: enclave j's genuine one, or one of its own making (a device
        certified by the public dev root, for a binding naming host keys)."""
        attest_op = getattr(m, "AttestPeer", None)
        if attest_op is None:  # (an enclave build without the op: nothing to hand in)
            return
        if forged:
            b = self.host.binding("H")
            dev = coincurve.PrivateKey()
            q = simformat.make_quote(dev, simformat.certify_device(pubkey_of(dev)), measurement=b"\x01" * 32,
                                     report_data=b.report_data(), timestamp=1)
            r = self.call(i, attest_op(b.encode(), q, 1))
            if r.ok:
                self.violations.append(f"I3: enclave {i} accepted a host-made quote for host keys")
        else:
            b = self.binding(j)
            qb = Binding(NET, b.peer_id, b.sign_pub, b.enc_pub, keys_root([p for _, p in self.keys
                                                                          if p in self.held(j)]))
            r = self.call(j, m.MakeQuote(qb.encode(), 1_700_000_000))
            if r.ok:
                self.call(i, attest_op(qb.encode(), msgspec.msgpack.decode(r.body, type=bytes), 1_700_000_000))

    def held(self, j: int) -> set[bytes]:
        return {p for p, s in self.states(j).items() if s in ("held", "received")}

    @rule(data=st.data(), i=st.integers(0, N_ENCLAVES - 1), party=st.sampled_from(["enclave", "host"]),
          kind=st.sampled_from(["turns", "escrow"]), sign_both=st.booleans())
    def open_contract(self, data, i, party, kind, sign_both) -> None:
        """Enclave i commits one of ITS keys (any, in any state, perhaps already committed) to a contract
        whose other party is another enclave or the host's own keys."""
        mine = [p for e, p in self.keys if e == i]
        if not mine:
            return
        pub = data.draw(st.sampled_from(mine))
        j = data.draw(st.sampled_from([x for x in range(N_ENCLAVES) if x != i]))
        other = self.binding(j, "B") if party == "enclave" else self.host.binding("B")
        giver = PartySpec(self.binding(i, "A"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)])
        if kind == "turns":
            spec = make_spec(NET, stdlib.source("turns"), {}, [giver, PartySpec(other, [], runner=sign_both)])
        else:
            arb = self.host.binding("R") if data.draw(st.booleans()) else self.binding(3 - i - j, "R")
            spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 300},
                             [giver, PartySpec(other, []), PartySpec(arb, [], runner=False)])
        sb = spec.encode()
        r = self.call(i, m.ContractOpen(sb, []))
        if not r.ok:
            return
        res = msgspec.msgpack.decode(r.body)
        cid = res[0]
        if self._committed_now(pub) and cid not in self.committed[pub]:
            self.violations.append(f"I1: enclave {i} committed key {pub.hex()[:16]} to a second open contract")
        self.committed.setdefault(pub, set()).add(cid)
        self.contracts.append((cid, sb, i, 0))
        if kind == "escrow" or sign_both:  # the other runner's signature over the id
            if party == "host":
                sig = sign_digest(self.host.sign, tagged_hash("keyswitch/contract-terms", cid))
            else:
                r2 = self.call(j, m.ContractOpen(sb, [PartySig(0, res[2])]))
                sig = msgspec.msgpack.decode(r2.body)[2] if r2.ok else b"\x00" * 64
            self.call(i, m.ContractOpen(sb, [PartySig(1, sig)]))
        self.call(i, m.ContractHeight(cid, "BTC-REG", 100))
        if data.draw(st.booleans()):  # at once: the giver's release, shown to the other enclave
            r = self.call(i, m.ContractRelease(cid, 0, 1))
            if r.ok:
                record = msgspec.msgpack.decode(r.body, type=bytes)
                self.records.append((cid, record))
                self._moved(sb, cid, 0)
                self._host_reads(cid, record)
                if party == "enclave":
                    self.call(j, m.ContractAccept(cid, record))

    def _contract(self, data):
        return data.draw(st.sampled_from(self.contracts))

    @precondition(lambda self: self.contracts)
    @rule(data=st.data(), receiver=st.sampled_from([1, 1, 1, 0, 2]), index=st.sampled_from([0, 0, 0, 1]))
    def release(self, data, receiver, index) -> None:
        cid, sb, i, _ = self._contract(data)
        r = self.call(i, m.ContractRelease(cid, index, receiver))
        if r.ok:
            record = msgspec.msgpack.decode(r.body, type=bytes)
            self.records.append((cid, record))
            self._moved(sb, cid, index)
            self._host_reads(cid, record)

    @precondition(lambda self: self.contracts)
    @rule(data=st.data(), index=st.integers(0, 1))
    def refund(self, data, index) -> None:
        cid, sb, i, _ = self._contract(data)
        if self.call(i, m.ContractRefund(cid, index)).ok:
            self._moved(sb, cid, index)

    @precondition(lambda self: self.contracts)
    @rule(data=st.data(), height=st.sampled_from([100, 299, 300, 10_000]))
    def height(self, data, height) -> None:
        cid, sb, i, _ = self._contract(data)
        self.call(i, m.ContractHeight(cid, "BTC-REG", height))

    @precondition(lambda self: self.contracts)
    @rule(data=st.data(), msg=st.sampled_from(["release", "refund"]), by_host=st.booleans(),
          party=st.integers(0, 2))
    def approve(self, data, msg, by_host, party) -> None:
        """An approval signed by the host's key (valid when the host plays that party) or by an enclave."""
        cid, sb, i, _ = self._contract(data)
        if by_host:
            sig = sign_digest(self.host.sign, tagged_hash("keyswitch/approval", approval_digest(cid, msg)))
        else:
            r = self.call(data.draw(st.integers(0, N_ENCLAVES - 1)), m.SignDomain("approval",
                                                                                   approval_digest(cid, msg)))
            sig = msgspec.msgpack.decode(r.body, type=bytes) if r.ok else b"\x00" * 64
        self.call(i, m.ContractApprove(cid, party, msg, sig))

    @precondition(lambda self: self.records)
    @rule(data=st.data(), j=st.integers(0, N_ENCLAVES - 1))
    def replay(self, data, j) -> None:
        """Any release record seen, shown to any enclave (accept, step, escrow-moved)."""
        cid, record = data.draw(st.sampled_from(self.records))
        self.call(j, m.ContractAccept(cid, record))
        idx = data.draw(st.integers(-1, 1))
        r = self.call(j, m.ContractStep(cid, record, idx, data.draw(st.integers(0, 2)), b"\x00" * 32,
                                        data.draw(st.booleans())))
        if r.ok:
            out = msgspec.msgpack.decode(r.body)
            if out[2]:  # our chunk idx released by the step
                self.records.append((cid, out[2]))
                self._host_reads(cid, out[2])
                entry = next((c for c in self.contracts if c[0] == cid and c[2] == j), None)
                if entry is not None:
                    self._moved(entry[1], cid, idx)

    @precondition(lambda self: self.keys)
    @rule(data=st.data())
    def export(self, data) -> None:
        i, pub = data.draw(st.sampled_from(self.keys))
        committed = self._committed_now(pub)
        r = self.call(i, m.ExportKey(pub))
        if r.ok and committed:
            self.violations.append(f"I1: enclave {i} exported key {pub.hex()[:16]} committed to an open contract")

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), to_host=st.booleans())
    def escrow_split(self, data, to_host) -> None:
        i, pub = data.draw(st.sampled_from(self.keys))
        if to_host:
            holders = [pubkey_of(k) for k in self.host.encs]
            ben = pubkey_of(self.host.encs[0])
        else:
            holders = [self.info(j).enc_pub for j in range(N_ENCLAVES) if j != i]
            ben = holders[0]
        committed = self._committed_now(pub)
        r = self.call(i, m.EscrowSplit(pub, holders, 2, ben, b"ctx"))
        if r.ok and committed:
            self.violations.append(f"I1: enclave {i} raw-split committed key {pub.hex()[:16]}")
        if r.ok and to_host:
            self.violations.append(f"I3: enclave {i} split key {pub.hex()[:16]} to host-made holders")
            self.host.known.add(pub)

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), with_other=st.booleans())
    def sign_offer(self, data, with_other) -> None:
        i = data.draw(st.integers(0, N_ENCLAVES - 1))
        pubs = [data.draw(st.sampled_from([p for e, p in self.keys if e == i] or [p for _, p in self.keys]))]
        if with_other:
            pubs.append(data.draw(st.sampled_from(self.keys))[1])
        held = self.held(i)
        r = self.call(i, m.SignOfferSheets([m.OfferItem(b"sheet" + b"".join(pubs), pubs)]))
        if r.ok:
            bad = [p for p in pubs if p not in held or self._committed_now(p)]
            if bad:
                self.violations.append(f"I4: enclave {i} signed a sheet naming unheld/committed {bad[0].hex()[:16]}")

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), tag=st.sampled_from(["release", "resend", "accept"]))
    def test_only_op(self, data, tag) -> None:
        i, pub = data.draw(st.sampled_from(self.keys))
        hk = pubkey_of(self.host.encs[1])
        args = {"release": [pub, hk, b"c"], "resend": [pub, hk, b"c"], "accept": [b"\x02" * 80, b"c", pub]}[tag]
        raw = m.handle(self.cores[i], _enc.encode([m.PROTOCOL_VERSION, 1, [tag, *args]]))
        resp = msgspec.msgpack.decode(raw, type=m.Response)
        if resp.ok:
            self.violations.append(f"test-only op {tag!r} served by the production handler table")
            if tag == "release":
                self._host_reads_raw(pub, msgspec.msgpack.decode(resp.body, type=bytes), b"c")

    @rule(i=st.integers(0, N_ENCLAVES - 1))
    def crash(self, i) -> None:
        """The host kills the enclave and starts it again on the sealed store."""
        self.cores[i] = open_core(self.tmp / f"e{i}")

    # -- bookkeeping ------------------------------------------------------------------------
    def _moved(self, sb: bytes, cid: bytes, index: int) -> None:
        from node.contracts.spec import decode_spec

        spec = decode_spec(sb)
        chunks = spec.parties[0].chunks
        if 0 <= index < len(chunks):
            self.committed.get(chunks[index].pubkey, set()).discard(cid)

    def _host_reads(self, cid: bytes, record: bytes) -> None:
        body = wire.decode(wire.decode(record, wire.Signed).body, ReleaseBody)
        self._host_reads_raw(body.deposit_pub, body.ciphertext, release_context(cid, body.round))

    def _host_reads_raw(self, pub: bytes, ct: bytes, ctx: bytes) -> None:
        for k in self.host.encs:
            try:
                ecies_decrypt(k, ct, release_aad(pub, ctx))
            except DecryptError:
                continue
            self.host.known.add(pub)
            self.violations.append(f"I1/I3: a release of {pub.hex()[:16]} is readable by a host key")

    # -- invariants --------------------------------------------------------------------------
    @invariant()
    def no_violation(self) -> None:
        assert not self.violations, self.violations[0]

    @invariant()
    def committed_keys_stay_secret(self) -> None:
        leaked = [p for p in self.host.known if self._committed_now(p)]
        assert not leaked, f"I1: the host knows committed key {leaked[0].hex()[:16]}"

    @invariant()
    def no_key_leaves_twice(self) -> None:
        for i, core in enumerate(self.cores):
            out = [j.pub for j in core.journal() if j.op in ("release", "export", "escrow")]
            assert len(out) == len(set(out)), f"I2: enclave {i} let a key leave twice"


HostileHost.TestCase.settings = settings(max_examples=30, stateful_step_count=40, deadline=None,
                                         suppress_health_check=list(HealthCheck))
test_hostile_host = HostileHost.TestCase
