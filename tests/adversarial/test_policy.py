"""The host's contract policy knows the stdlib contracts by the exact hash of their source and parameter schema,
never by words in their text (issue #17, finding 3).

Two real nodes (SwapDesk over make_offer_stack + add_switchboard: real in-process enclaves, offer books,
deposits on a shared dev ledger) exchange offer sheets over the in-memory gossip harness. The attacker
(the buyer) proposes an "option" over ``/keyswitch/contract/1`` whose source is the stdlib option with a
harmless-looking change, or another contract carrying the stdlib's words in a comment; the victim (the
writer) must refuse it, with the reason. On the old code it agreed, and once the attacker opened the
contract the writer's enclave released the underlying with no strike (or premium) paid.
"""

from __future__ import annotations

import contextlib

import hashlib
import time

import pytest

from node import config
from node.contracts import stdlib
from node.contracts.spec import Commit, PartySpec, make_spec, spec_id
from node.ledger.devnet import DevLedger
from node.protocols.testing import GossipNet
from node.contracts.desk.swaps import HEIGHT_FRESH
from tests.adversarial.deskkit import NET, connect, make_node

OPTION = stdlib.source("option")
#: "and" -> "or": the writer's chunk j goes to the buyer once the contract is valid, strike paid or not
TWEAKED = OPTION.replace("release writer[j] to buyer when valid and moved_to(buyer, s, writer)",
                         "release writer[j] to buyer when valid or moved_to(buyer, s, writer)")
#: another contract altogether, with the stdlib's words in a comment
GIFT = """# contract option (see the stdlib): parties buyer, writer; premium, strike and expiry as usual
contract gift
parties buyer, writer
param height_asset: str
param premium_chunks: int
param premium_by: int
param expiry: int

for j in 0 .. chunks(writer) {
    release writer[j] to buyer when height(height_asset) >= 0
}
"""


@pytest.fixture
def world(tmp_path):
    now = time.time()
    ledger = DevLedger(None, automine=True)
    buyer = make_node(tmp_path, "buyer", ledger, "BTC-REG", 3, now)
    writer = make_node(tmp_path, "writer", ledger, "BTC-REG", 2, now)
    net = GossipNet()
    connect(net, now, buyer, writer)
    yield net, buyer, writer, now
    for s in (buyer, writer):
        s.close()


def option_spec(buyer, writer, source: str, now: float, expiry: int = 10_000):
    """What the attacker (buyer) builds: its 3 chunks (1 premium, 2 strike) and the writer's 2 offers."""
    commits = [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in buyer.protocol.own.offers]
    theirs = [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in writer.protocol.own.offers]
    params = {"height_asset": "BTC-REG", "premium_chunks": 1, "premium_by": 10_000, "expiry": expiry}
    return make_spec(NET, source, params, [PartySpec(buyer.protocol.own.binding, commits),
                                           PartySpec(writer.protocol.own.binding, theirs)])


def propose(net, buyer, writer, spec, now: float) -> tuple[bool, str]:
    """The attacker's ContractOffer over /keyswitch/contract/1, as the wire carries it."""
    rid, cmds = buyer.rfp.offer_contract(writer.peer_id, "option", spec.encode(), now)
    net.call(buyer.peer_id, buyer.rfp, cmds, now)
    return buyer.rfp.contract_answers[rid]


def run_contract(net, buyer, writer, spec, now: float) -> list[str]:
    """The attacker opens the contract; heights flow; what the writer's enclave released."""
    net.call(buyer.peer_id, buyer.desk.run, buyer.desk.run.start(spec, now), now)
    for s in (buyer, writer):
        net.call(s.peer_id, s.desk.run, s.desk.run.observe_height("BTC-REG", 100, now), now)
    return [k.pubkey.hex() for k in writer.enclave.list_keys() if k.state == "released"]


@pytest.mark.parametrize("source", [TWEAKED, GIFT], ids=["stdlib-option-tweaked", "stdlib-words-in-a-comment"])
def test_an_option_that_only_looks_like_the_stdlib_one_is_refused_with_the_reason(world, source):
    net, buyer, writer, now = world
    assert source != OPTION and "contract option" in source  # the old policy's text search finds the words
    spec = option_spec(buyer, writer, source, now)
    accepted, reason = propose(net, buyer, writer, spec, now)
    released = run_contract(net, buyer, writer, spec, now)
    assert released == [], f"the writer's enclave released {len(released)} chunk(s) of the underlying"
    assert not accepted
    assert "contract policy: a option offer must carry the stdlib option contract" in reason
    assert stdlib.source_hash(source) in reason and stdlib.SOURCE_HASHES["option"] in reason
    assert writer.desk.run.state(spec_id(spec)) is None


def test_the_stdlib_option_itself_is_agreed(world):
    net, buyer, writer, now = world
    spec = option_spec(buyer, writer, OPTION, now)
    assert propose(net, buyer, writer, spec, now) == (True, "")


def test_an_option_that_would_lock_the_writers_chunks_for_years_is_refused_naming_the_setting(world, tmp_path):
    """The attacker buys an option on the writer's chunks exercisable for 100,000 blocks (about two years of
    Bitcoin) for one premium chunk: the writer's chunks would stay committed, out of its sheet and its device's
    capacity, all that time. On the old code the writer agreed (it checked value and caps, not duration)."""
    net, buyer, writer, now = world
    height = writer.ledger.height("BTC-REG")
    accepted, reason = propose(net, buyer, writer, option_spec(buyer, writer, OPTION, now, expiry=height + 100_000),
                               now)
    assert not accepted
    assert "lock horizon: expiry" in reason and "contracts.max_lock_blocks" in reason and "100000 blocks" in reason
    # within the default 10,000 blocks: agreed; an operator who allows more agrees to more
    assert propose(net, buyer, writer, option_spec(buyer, writer, OPTION, now, expiry=height + 9_000), now) == (True, "")
    ledger = DevLedger(None, automine=True)
    b2 = make_node(tmp_path, "b2", ledger, "BTC-REG", 3, now)
    w2 = make_node(tmp_path, "w2", ledger, "BTC-REG", 2, now, max_lock_blocks=200_000)
    try:
        net2 = GossipNet()
        connect(net2, now, b2, w2)
        h2 = ledger.height("BTC-REG")
        assert propose(net2, b2, w2, option_spec(b2, w2, OPTION, now, expiry=h2 + 100_000), now) == (True, "")
    finally:
        b2.close()
        w2.close()


def test_contracts_max_lock_blocks_is_a_positive_number_of_blocks(tmp_path):
    assert config.BY_KEY["contracts.max_lock_blocks"].default == 10_000
    with pytest.raises(config.ConfigError) as ei:
        config.load(tmp_path, env={"KEYSWITCH_CONTRACTS_MAX_LOCK_BLOCKS": "0"})
    assert ei.value.key == "contracts.max_lock_blocks"
    assert config.load(tmp_path, env={"KEYSWITCH_CONTRACTS_MAX_LOCK_BLOCKS": "50000"})["contracts.max_lock_blocks"] \
        == 50_000


def test_another_contract_runs_only_when_the_operator_allowed_its_hash(tmp_path):
    now = time.time()
    ledger = DevLedger(None, automine=True)
    buyer = make_node(tmp_path, "buyer", ledger, "BTC-REG", 3, now)
    writer = make_node(tmp_path, "writer", ledger, "BTC-REG", 2, now,
                       allowed_hashes=[stdlib.source_hash(TWEAKED).upper()])
    try:
        net = GossipNet()
        connect(net, now, buyer, writer)
        assert propose(net, buyer, writer, option_spec(buyer, writer, TWEAKED, now), now) == (True, "")
        accepted, reason = propose(net, buyer, writer, option_spec(buyer, writer, GIFT, now), now)
        assert not accepted and stdlib.source_hash(GIFT) in reason
    finally:
        buyer.close()
        writer.close()


def test_the_stdlib_option_with_another_parameter_schema_is_not_the_stdlib_option():
    name, why = stdlib.identify(OPTION, {"height_asset": "BTC-REG", "premium_chunks": True, "premium_by": 1,
                                         "expiry": 2})
    assert name is None and "parameter premium_chunks is bool, the stdlib option takes int" in why
    name, why = stdlib.identify(OPTION, {"height_asset": "BTC-REG", "premium_chunks": 1, "premium_by": 1})
    assert name is None and "are not the stdlib option's" in why
    assert stdlib.identify(OPTION, {"height_asset": "X", "premium_chunks": 1, "premium_by": 1, "expiry": 2}) == (
        "option", "")


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "a" * 63, "a" * 65])
def test_contracts_allowed_hashes_takes_only_sha256_hex(tmp_path, bad):
    with pytest.raises(config.ConfigError) as ei:
        config.load(tmp_path, env={"KEYSWITCH_CONTRACTS_ALLOWED_HASHES": f"{'a' * 64},{bad}"})
    assert ei.value.key == "contracts.allowed_hashes" and "64 hex characters" in str(ei.value)
    ok = config.load(tmp_path, env={"KEYSWITCH_CONTRACTS_ALLOWED_HASHES": "a" * 64})
    assert ok["contracts.allowed_hashes"] == ["a" * 64]
    assert config.load(tmp_path, env={})["contracts.allowed_hashes"] == []


def test_a_language_contracts_committed_chunks_leave_the_givers_sheet_at_commit(world):
    """As a swap's chunks leave its sheet at agreement: once the writer's enclave took the option
    (``contract.opened``), its committed chunks are off its sheet and out of its peers' books at once. Before,
    they stayed offered until released (an option not exercised: never), and a third node agreeing to buy one
    was refused by the writer's enclave (the key is committed)."""
    net, buyer, writer, now = world
    spec = option_spec(buyer, writer, OPTION, now)
    assert propose(net, buyer, writer, spec, now)[0]
    assert run_contract(net, buyer, writer, spec, now) == []  # nothing of the writer's released: not exercised
    committed = list(spec.parties[1].chunks)
    assert all(buyer.desk._book_offer(c.address, writer.peer_id) is not None for c in committed)

    class Driver:  # the daemon's driver: a submitted call's commands go to the in-memory network
        def submit(self, proto, fn):
            net.call(writer.peer_id, proto, fn(now), now)

    writer.desk.node = type("Host", (), {"driver": Driver()})()
    for n in list(net.peers[writer.peer_id].notes):  # what the daemon's driver hands the desk
        writer.desk.on_notify(n)
    assert not {c.pubkey for c in committed} & {o.pubkey for o in writer.protocol.own.offers}
    assert all(buyer.desk._book_offer(c.address, writer.peer_id) is None for c in committed)


def test_concurrent_options_on_one_writer_count_each_premium_against_its_device_cap(world):
    """A writer (its host hostile, or its device broken) that is sold many options at once takes every premium
    before anything comes back. The buyer's hold on the writer's device counts the premium as well as the
    writer's biggest chunk, so the options it agrees against one device stay within that device's cap (a new
    simulated device: $100). Before, each option held one chunk ($50) and two options ($100 of premiums paid,
    plus a strike chunk at risk on exercise) passed the check as $100."""
    net, buyer, writer, now = world
    theirs = [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in writer.protocol.own.offers]
    mine = [Commit(o.pubkey, o.asset, o.address, o.amount, o.usd_cents) for o in buyer.protocol.own.offers]
    params = {"height_asset": "BTC-REG", "premium_chunks": 1, "premium_by": 10_000, "expiry": 10_000}
    specs = [make_spec(NET, OPTION, params, [PartySpec(buyer.protocol.own.binding, mine[i:i + 2]),
                                             PartySpec(writer.protocol.own.binding, [theirs[i]])]) for i in (0, 1)]
    device = hashlib.sha256(writer.protocol.own.binding.sign_pub).digest()
    assert buyer.desk.reserve_spec(specs[0], now) is None
    assert buyer.engine.caps.exposure.by_device.get(device) == 10_000  # premium $50 + the writer's chunk $50
    why = buyer.desk.reserve_spec(specs[1], now)
    assert why is not None and why.startswith("risk:"), why
    buyer.desk.unreserve_spec(specs[0])
    assert buyer.engine.caps.exposure.by_device.get(device, 0) == 0


@contextlib.contextmanager
def height_calls(ledger):
    """The assets ``ledger.height`` is asked for while the block runs."""
    calls: list[str] = []
    real = ledger.height

    def counted(asset):
        calls.append(asset)
        return real(asset)

    ledger.height = counted
    try:
        yield calls
    finally:
        ledger.height = real


def test_the_lock_horizon_reads_the_height_the_heights_loop_noted_not_the_ledger(world):
    """The horizon check runs in the agreement, on the event loop: a ledger call there (an RPC to litecoind,
    anvil or a remote node) held up gossip, the API and every contract for its duration, once per offer a peer
    sent. The daemon's heights loop reads our offers' heights off the loop (``SwapDesk.refresh_heights``, on a
    worker thread); the check takes a height noted within ``HEIGHT_FRESH`` s, and reads the ledger only when
    it has none that fresh."""
    net, buyer, writer, now = world
    height = writer.ledger.height("BTC-REG")
    writer.desk.refresh_heights(now)  # (what the daemon runs on a worker thread every few seconds)
    assert writer.desk.heights["BTC-REG"] == (height, now)
    with height_calls(writer.ledger) as calls:
        spec = option_spec(buyer, writer, OPTION, now, expiry=height + 9_000)
        assert propose(net, buyer, writer, spec, now) == (True, "")
        assert calls == []  # the noted height, no ledger call
        # a height older than HEIGHT_FRESH is read again (and noted), and the horizon still holds
        later = now + HEIGHT_FRESH + 1
        accepted, reason = propose(net, buyer, writer, option_spec(buyer, writer, OPTION, later,
                                                                   expiry=height + 100_000), later)
        assert not accepted and "lock horizon: expiry" in reason
        assert calls == ["BTC-REG"] and writer.desk.heights["BTC-REG"] == (height, later)


def test_a_noted_height_behind_the_ledger_does_not_refuse_a_lock_the_ledger_allows(world):
    """A noted height is a floor (heights only grow): on a chain with a block a second (anvil, the dev ledgers) a
    note a few seconds old is that many blocks behind, and an option at exactly ``contracts.max_lock_blocks`` from
    the buyer's height was refused as 10010 blocks away (the daemon test of escrow and option failed so under
    load). The writer reads its ledger before refusing on a noted height; it never accepts on one it would
    refuse on a fresh read (the note is only ever lower)."""
    net, buyer, writer, now = world
    height = writer.ledger.height("BTC-REG")
    writer.desk.heights["BTC-REG"] = (height - 20, now - 10)  # noted 10 s ago, 20 blocks behind
    with height_calls(writer.ledger) as calls:
        spec = option_spec(buyer, writer, OPTION, now, expiry=height + writer.desk.max_lock_blocks)
        assert propose(net, buyer, writer, spec, now) == (True, "")
        assert calls == ["BTC-REG"] and writer.desk.heights["BTC-REG"] == (height, now)
        far = option_spec(buyer, writer, OPTION, now, expiry=height + writer.desk.max_lock_blocks + 100)
        accepted, reason = propose(net, buyer, writer, far, now)
        assert not accepted and "lock horizon: expiry" in reason  # refused on the ledger's own height
