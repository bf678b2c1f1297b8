"""A hostile host against three enclaves: hypothesis drives random sequences of EVERY production IPC
operation (raw request bytes through ``node.enclave.messages.handle``, which is the IPC), with random and
adversarial arguments: specs naming other enclaves' or host-made keys, a key committed again to a second
contract, exports and raw escrow splits of committed keys, releases and refunds in any order, other enclaves'
release records replayed, forged and genuine quotes, offer sheets naming any key, the test-only raw
operations, and crashes (the core reopened from its sealed store). After every step it checks I1-I4:

* I1: a key committed to an open contract never reaches the host: no export, no raw split, no second
  contract of it succeeds while it is committed, and no release record is ever readable by a host key;
* I2: no key leaves twice: per enclave's journal one release/export/escrow per key, ever (across crashes);
* I3: a release or escrow share goes only to an enclave's key, never to a host key (the release-record
  check above), and a host-made quote is never accepted; a contract's key-escrow terms may name host-made
  holders or beneficiary (or enclaves the splitting enclave never verified): a contract escrow split is made
  only when every holder and the beneficiary is an enclave the splitting enclave verified, no share opens
  with a host key, and a holder releases its share only to a beneficiary IT verified;
* I4: no signature over an offer sheet (a real version-3 body) offering a key the enclave does not hold, or
  one that is committed, whatever keys the host lists with it (the sheet is parsed as receivers parse it).
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
from node.contracts.spec import (
    Commit, EscrowHolder, EscrowTerm, PartySpec, ReleaseBody, approval_digest, make_spec, release_context,
)
from node.crypto import DecryptError, ecies_decrypt, pubkey_of, sign_digest, tagged_hash
from node.attest.binding import Binding, keys_root
from node.enclave import messages as m
from node.enclave import simformat
from node.enclave.common import ESCROW_RELEASE_TAG, ESCROW_SPLIT_TAG, escrow_aad
from node.enclave.contracts import PartySig, SplitShare
from node.enclave.core import release_aad
from node.protocols.offers import SheetWire
from node.enclave.server import open_core
from tests.sheetbody import sheet_body

NET = "dev"
N_ENCLAVES = 3
_enc = msgspec.msgpack.Encoder()


class Host:
    """What the hostile host owns: its own signing and ECIES keys (to play fake parties and holders), and
    every private key it ever saw."""

    def __init__(self) -> None:
        self.sign = coincurve.PrivateKey()
        self.encs = [coincurve.PrivateKey() for _ in range(3)]
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
        self.sigs: dict[bytes, list[PartySig]] = {}  # cid -> the runners' signatures over it the host saw
        self.escrowed: list[tuple[bytes, bytes, int, int]] = []  # the contracts whose terms key-escrow a chunk
        #: enclave -> the ECIES keys of the enclaves it verified (a genuine quote it accepted), and its own
        self.verified: list[set[bytes]] = [set() for _ in range(N_ENCLAVES)]
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
            if r.ok and self.call(i, attest_op(qb.encode(), msgspec.msgpack.decode(r.body, type=bytes),
                                               1_700_000_000)).ok:
                self.verified[i].add(b.enc_pub)

    def held(self, j: int) -> set[bytes]:
        return {p for p, s in self.states(j).items() if s in ("held", "received")}

    def _escrow_term(self, i: int, j: int, holders: str) -> list[EscrowTerm]:
        """Key-escrow terms for party 0's chunk (enclave i's): holders and beneficiary made of the host's keys,
        of the other enclaves' keys (the beneficiary: enclave i itself, which its holders may never have
        verified), or a mix; none for "none"."""
        host = [pubkey_of(k) for k in self.host.encs]
        encl = [self.info(x).enc_pub for x in (j, 3 - i - j)]
        keys, ben = {"host": (host[:2], host[2]), "mixed": ([encl[0], host[0]], encl[1]),
                     "beneficiary": (encl, host[2]), "enclave": (encl, self.info(i).enc_pub), "unverified": (encl, self.info(i).enc_pub),
                     "none": ([], b"")}[holders]
        return [EscrowTerm(0, [], [EscrowHolder(h, f"H{x}") for x, h in enumerate(keys)], 2, ben)] if keys else []

    @rule(data=st.data(), i=st.integers(0, N_ENCLAVES - 1), party=st.sampled_from(["enclave", "host"]),
          kind=st.sampled_from(["turns", "escrow"]), sign_both=st.booleans(),
          holders=st.sampled_from(["none", "host", "mixed", "beneficiary", "enclave", "enclave", "unverified"]))
    def open_contract(self, data, i, party, kind, sign_both, holders) -> None:
        """Enclave i commits one of ITS keys (any, in any state, perhaps already committed) to a contract
        whose other party is another enclave or the host's own keys, its chunk perhaps key-escrowed to
        holders (and for a beneficiary) the host made, or to enclaves enclave i may never have verified."""
        mine = [p for e, p in self.keys if e == i]
        if not mine:
            return
        pub = data.draw(st.sampled_from(mine))
        j = data.draw(st.sampled_from([x for x in range(N_ENCLAVES) if x != i]))
        other = self.binding(j, "B") if party == "enclave" else self.host.binding("B")
        giver = PartySpec(self.binding(i, "A"), [Commit(pub, "BTC-REG", address_for("BTC-REG", pub), 1000, 5000)])
        escrow = self._escrow_term(i, j, holders)
        if escrow and holders != "unverified":  # as the escrow desk does: enclave i verifies the enclaves named
            named = [h.enc_pub for h in escrow[0].holders] + [escrow[0].beneficiary]
            for x in range(N_ENCLAVES):
                if x != i and self.info(x).enc_pub in named:
                    self.attest(i, x, False)
        if kind == "turns":
            spec = make_spec(NET, stdlib.source("turns"), {}, [giver, PartySpec(other, [], runner=sign_both)],
                             escrow=escrow)
        else:
            arb = self.host.binding("R") if data.draw(st.booleans()) else self.binding(3 - i - j, "R")
            spec = make_spec(NET, stdlib.source("escrow"), {"height_asset": "BTC-REG", "refund_height": 300},
                             [giver, PartySpec(other, []), PartySpec(arb, [], runner=False)], escrow=escrow)
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
        if escrow:
            self.escrowed.append((cid, sb, i, 0))
        if kind == "escrow" or sign_both:  # the other runner's signature over the id
            if party == "host":
                sig = sign_digest(self.host.sign, tagged_hash("keyswitch/contract-terms", cid))
            else:
                r2 = self.call(j, m.ContractOpen(sb, [PartySig(0, res[2])]))
                sig = msgspec.msgpack.decode(r2.body)[2] if r2.ok else b"\x00" * 64
            self.call(i, m.ContractOpen(sb, [PartySig(1, sig)]))
            self.sigs[cid] = [PartySig(0, res[2]), PartySig(1, sig)]
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

    @precondition(lambda self: self.escrowed)
    @rule(data=st.data(), height=st.sampled_from([100, 300, 300]))
    def contract_escrow_split(self, data, height) -> None:
        """The host asks the owner's enclave for its contract's escrow shares and tries to open them; then hands
        each holder enclave its shares and a height, and asks it for its share to the beneficiary the terms
        name (perhaps a host key, or an enclave that holder never verified)."""
        from node.contracts.spec import decode_spec, escrow_context

        cid, sb, i, _ = data.draw(st.sampled_from(self.escrowed))
        r = self.call(i, m.ContractEscrowSplit(cid))
        shares = msgspec.msgpack.decode(r.body, type=list[SplitShare]) if r.ok else []
        if not shares:
            return
        spec = decode_spec(sb)
        (term,) = spec.escrows
        named = [h.enc_pub for h in term.holders] + [term.beneficiary]
        unverified = [k for k in named if k not in self.verified[i] | {self.info(i).enc_pub}]
        if unverified:
            self.violations.append(f"I3: enclave {i} split a contract's key to {unverified[0].hex()[:16]}, an "
                                   "escrow holder or beneficiary it never verified")
        for sh in shares:
            pub = spec.parties[sh.party].chunks[sh.index].pubkey
            ctx = escrow_context(cid, sh.party, sh.index)
            if self._host_opens(sh.ciphertext, escrow_aad(ESCROW_SPLIT_TAG, pub, ctx)):
                self.violations.append(f"I3: a contract escrow share of {pub.hex()[:16]} opens with a host key")
        for j in range(N_ENCLAVES):
            me = self.info(j).enc_pub
            mine = [sh for sh in shares if sh.holder == me]
            if not mine or not self.call(j, m.EscrowHold(sb, self.sigs.get(cid, []), mine)).ok:
                continue
            self.call(j, m.EscrowHeight(cid, "BTC-REG", height))
            sh = mine[0]
            r = self.call(j, m.EscrowShare(cid, sh.party, sh.index, term.beneficiary))
            if not r.ok:
                continue
            if term.beneficiary not in self.verified[j] | {me}:
                self.violations.append(f"I3: holder {j} released a share to {term.beneficiary.hex()[:16]}, a "
                                       "beneficiary it never verified")
            pub = spec.parties[sh.party].chunks[sh.index].pubkey
            if self._host_opens(msgspec.msgpack.decode(r.body, type=bytes), escrow_aad(
                    ESCROW_RELEASE_TAG, pub, escrow_context(cid, sh.party, sh.index))):
                self.violations.append(f"I3: holder {j} released a share of {pub.hex()[:16]} a host key opens")

    def _host_opens(self, ct: bytes, aad: bytes) -> bool:
        for k in self.host.encs:
            try:
                ecies_decrypt(k, ct, aad)
            except DecryptError:
                continue
            return True
        return False

    @precondition(lambda self: self.keys)
    @rule(data=st.data(), with_other=st.booleans(), listed=st.sampled_from(["offered", "one-own", "none"]))
    def sign_offer(self, data, with_other, listed) -> None:
        """A real version-3 sheet body offering the enclave's keys and maybe another's (any state); the host
        lists to the enclave the offered keys, only one key of the enclave's own, or none."""
        i = data.draw(st.integers(0, N_ENCLAVES - 1))
        own = [p for e, p in self.keys if e == i]
        offered = [data.draw(st.sampled_from(own or [p for _, p in self.keys]))]
        if with_other:
            offered.append(data.draw(st.sampled_from(self.keys))[1])
        pubs = {"offered": offered, "one-own": own[:1], "none": []}[listed]
        held = self.held(i)
        body = sheet_body(offered)
        r = self.call(i, m.SignOfferSheets([m.OfferItem(body, pubs)]))
        if r.ok:  # I4 on the sheet as receivers parse it, not on the host's list
            keys = [e.pubkey for e in wire.decode(body, SheetWire).offers.entries]
            bad = [p for p in keys if p not in held or self._committed_now(p)]
            if bad:
                self.violations.append(f"I4: enclave {i} signed a sheet offering unheld/committed {bad[0].hex()[:16]}")

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
        if self._host_opens(ct, release_aad(pub, ctx)):
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
