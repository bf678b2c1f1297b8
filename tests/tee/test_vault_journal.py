"""Property test of the release journal: random operation sequences, with restarts,
against a model. A key is released at most once, its journaled ciphertext is the
only one that ever left, and every state change survives a restart."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import coincurve
import msgspec
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from node.crypto import ecies_decrypt, pubkey_of
from node.tee.client import EnclaveRefused, InProcessEnclave
from node.enclave.core import release_aad
from tests.tee.testbuild import RawOps, RawOpsSubprocess  # the test build: raw release/resend/accept

OUTSIDER = coincurve.PrivateKey(b"\x05" * 32)


class Journal(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="ks-journal-"))
        self.a = RawOps(self.dir)
        self.b = RawOps(None)  # a peer enclave, memory only
        self.model: dict[bytes, str] = {}
        self.released: dict[bytes, tuple[bytes, bytes, bytes]] = {}  # pub -> (recipient, ctx, ciphertext)
        self.seen_ciphertexts: dict[bytes, set[bytes]] = {}

    def teardown(self) -> None:
        self.a.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _pick(self, data, states=None) -> bytes | None:
        keys = [k for k, s in self.model.items() if states is None or s in states]  # generation order: deterministic
        return data.draw(st.sampled_from(keys)) if keys else None

    @rule(n=st.integers(1, 3))
    def generate(self, n):
        for pk in self.a.generate_keys(n):
            self.model[pk] = "held"

    @precondition(lambda self: self.model)
    @rule(data=st.data(), to_peer=st.booleans(), ctx=st.binary(max_size=8))
    def release(self, data, to_peer, ctx):
        pk = self._pick(data)
        recipient = self.b.info().enc_pub if to_peer else pubkey_of(OUTSIDER)
        try:
            ct = self.a.release_key(pk, recipient, ctx)
        except EnclaveRefused as exc:
            assert self.model[pk] in ("released", "exported"), exc
            assert exc.code in ("already-released", "key-not-held")
            return
        assert self.model[pk] == "held"
        self.model[pk] = "released"
        self.released[pk] = (recipient, ctx, ct)
        self.seen_ciphertexts.setdefault(pk, set()).add(ct)

    @precondition(lambda self: self.released)
    @rule(data=st.data(), same=st.booleans())
    def resend(self, data, same):
        pk = data.draw(st.sampled_from(list(self.released)))
        recipient, ctx, ct = self.released[pk]
        if same:
            assert self.a.resend_release(pk, recipient, ctx) == ct
        else:
            try:
                self.a.resend_release(pk, recipient, ctx + b"!")
                raise AssertionError("resend to another context must be refused")
            except EnclaveRefused as exc:
                assert exc.code == "already-released"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def export(self, data):
        pk = self._pick(data)
        try:
            priv = self.a.export_to_owner(pk)
        except EnclaveRefused as exc:
            assert self.model[pk] == "released" and exc.code == "already-released"
            return
        assert self.model[pk] in ("held", "exported")
        assert pubkey_of(coincurve.PrivateKey(priv)) == pk
        self.model[pk] = "exported"

    @precondition(lambda self: self.released)
    @rule(data=st.data())
    def peer_accepts(self, data):
        pk = data.draw(st.sampled_from(list(self.released)))
        recipient, ctx, ct = self.released[pk]
        if recipient != self.b.info().enc_pub:
            return
        try:
            assert self.b.accept_key(ct, ctx, pk) == pk
        except EnclaveRefused as exc:
            assert exc.code == "duplicate-key"

    @rule()
    def restart(self):
        before = msgspec.msgpack.encode(self.a._core._state)
        self.a.close()
        self.a = RawOps(self.dir)
        assert msgspec.msgpack.encode(self.a._core._state) == before  # the sealed chain reads back the whole state

    @invariant()
    def states_match_the_model(self):
        got = {k.pubkey: k.state for k in self.a.list_keys()}
        assert got == self.model

    @invariant()
    def released_at_most_once(self):
        journal = self.a._core.journal()
        releases = Counter(e.pub for e in journal if e.op == "release")
        assert all(n == 1 for n in releases.values())
        assert set(releases) == set(self.released)
        for pk, cts in self.seen_ciphertexts.items():
            assert len(cts) == 1
        for pk, (recipient, ctx, ct) in self.released.items():
            if recipient == pubkey_of(OUTSIDER):
                assert pubkey_of(coincurve.PrivateKey(ecies_decrypt(OUTSIDER, ct, release_aad(pk, ctx)))) == pk


Journal.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestJournal = Journal.TestCase
