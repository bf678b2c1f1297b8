"""contract-run/1's states, wire bodies and records (``node.contracts.protocol.run`` runs them), sans-IO.

States (``TRANSITIONS``)::

    (none) --start / expected open--> RUNNING --settled--> DONE
                                      RUNNING --deadline (no progress)--> WITHHELD --settled--> DONE
                                      RUNNING / WITHHELD --cheat / local-refusal--> FAILED
                                      RUNNING --peer-refused (a runner that never signed answers
                                                our open "not-held")--> FAILED
                                      RUNNING / WITHHELD --unsigned (a runner never signed it within
                                                ``drop_after``: our enclave drops it)--> FAILED

``ACCEPTS_REQUEST``: the requests a contract in each state takes. The message bodies (``BODIES``, by kind),
the host's records (``RunRecord`` for a running contract, ``AgreedRecord`` for one agreed and not yet
opened with us), a running contract in memory (``Run``), and the checks made before our enclave takes a
contract (``_quote_check``: a party's quote; ``_funds_missing``: the other parties' committed funds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import msgspec

from node.attest.binding import Binding
from node.contracts.spec import ContractSpec, ReleaseBody
from node.enclave.contracts import Moved, PartySig
from node.contracts.protocol.claims import FUNDS_OK, ClaimRecord, funds_state
from node.contracts.protocol.envelope import AckBody, ErrorBody
from node.contracts.protocol.schedule import Chunk

PROTOCOL_ID = "/keyswitch/contract-run/1"
RUNNING, WITHHELD, DONE, FAILED = "running", "withheld", "done", "failed"
TERMINAL = (DONE, FAILED)
TRANSITIONS = {
    (None, "start"): RUNNING,
    (RUNNING, "settled"): DONE,
    (WITHHELD, "settled"): DONE,
    (RUNNING, "deadline"): WITHHELD,
    (RUNNING, "cheat"): FAILED,
    (WITHHELD, "cheat"): FAILED,
    (RUNNING, "local-refusal"): FAILED,
    (RUNNING, "peer-refused"): FAILED,  # a runner refused the contract before signing it (release/1's "refused")
    (WITHHELD, "local-refusal"): FAILED,
    (RUNNING, "unsigned"): FAILED,  # a runner never signed it within ``drop_after``: dropped, our chunks ours again
    (WITHHELD, "unsigned"): FAILED,
}
ACCEPTS_REQUEST = {RUNNING: frozenset({"open", "release", "approve"}),
                   WITHHELD: frozenset({"open", "release", "approve"}),
                   DONE: frozenset({"open", "release", "approve"}), FAILED: frozenset()}
CHEAT_CODES = ("wrong-key", "bad-key", "undecryptable")
#: a runner's answers to our ``open`` that end the contract while it has not signed it: its enclave will not take
#: it ("not-held": a key of its own is released, unknown, or committed to another contract). Any other refusal
#: (funds short: maybe not confirmed yet; not expected yet; busy) is retried until the deadline.
OPEN_REFUSALS = ("not-held",)
#: tries of a ``who`` whose request fails in transport (a dial refused, no address yet, a reset, a timeout),
#: ``retry_interval`` apart; then ``contract.who`` reports the failure
WHO_ATTEMPTS = 3
MAX_WAITING_OPENS = 16  # opens of one new contract answered when its funds check (a ledger task) is done


class OpenBody(msgspec.Struct, array_like=True, frozen=True):
    spec: bytes
    quote: bytes
    sigs: list[PartySig]
    binding: Binding | None = None  # what ``quote`` commits to; None: the spec's binding of the sender


class OpenedBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    quote: bytes
    sigs: list[PartySig]
    binding: Binding | None = None


class ApproveBody(msgspec.Struct, array_like=True, frozen=True):
    contract_id: bytes
    party: int
    message: str
    sig: bytes


class WhoBody(msgspec.Struct, array_like=True, frozen=True):
    binding: Binding
    quote: bytes


class DeclineBody(msgspec.Struct, array_like=True, frozen=True):
    """A runner that agreed to a contract cannot run it (its own start failed: its enclave refused it, or a
    chunk's funds are not there on its ledger): the other runners stop expecting it at once."""

    contract_id: bytes
    reason: str


BODIES = {"open": OpenBody, "opened": OpenedBody, "release": ReleaseBody, "ack": AckBody,
          "approve": ApproveBody, "error": ErrorBody, "who": WhoBody, "whois": WhoBody, "decline": DeclineBody}


class RunRecord(msgspec.Struct, array_like=True):
    """What the host keeps about a running contract (the enclave's sealed state keeps what moved)."""

    spec: bytes
    state: str
    reason: str = ""
    sigs: list[PartySig] = []  # signatures over the contract id we know (forwarded in open/opened)
    acked: list[int] = []  # steps of ours the receiver acknowledged
    claims: list[ClaimRecord] = []  # per step: received keys (claimed / kept / double-spent) and refunds
    version: int = 1
    moved: list[Moved] = []  # what moved under it, from our enclave, written once the enclave forgot it
    #: when it ended (``_stop``): our enclave forgets it ``forget_after`` later; a restart reads back the
    #: ``keep_ended`` ended last
    ended_at: float = 0.0


class AgreedRecord(msgspec.Struct, array_like=True):
    """A contract we agreed to run when a runner opens it with us (``expect``), kept until it runs here: a party
    restarted between its agreement and the first open still takes the open (in memory only, it refused it as
    "not-expected" until the contract ended by refund)."""

    spec: bytes
    at: float  # when we agreed
    version: int = 1


@dataclass
class Run:
    rec: RunRecord
    spec: ContractSpec
    cid: bytes
    me: int
    progress_at: float = 0.0
    verified: set[int] = field(default_factory=set)  # parties whose quote we verified
    complete: set[int] = field(default_factory=set)  # runners that showed us every runner's signature
    pending: dict[int, bytes] = field(default_factory=dict)  # our unacked release records by step
    busy: set[int] = field(default_factory=set)  # steps whose claim (a ledger task) is in flight
    #: steps of keys received whose funds (and declared value at our price) this process saw still there: the
    #: contract goes on while their sweep runs in the background (release/1's fast path); in memory only
    checked: set[int] = field(default_factory=set)
    checking: set[int] = field(default_factory=set)  # their funds check (a ledger task) is in flight
    #: approvals delivered to our enclave since this process started (party, message): for ``_owed`` only
    approvals: list[tuple[int, str]] = field(default_factory=list)
    escrow_sigs: int = -1  # how many runners' signatures the escrow holders were last sent
    #: a two-party contract's swap-shaped outcome (``contract_swap.swap_outcome``), once withheld or ended
    outcome: object | None = None
    retry_armed: bool = False  # a retry timer is set and has not fired yet (``_timers``)
    undroppable: bool = False  # our enclave refused to drop it (``ContractRun._drop``): not asked again
    unforgettable: bool = False  # our enclave refused to forget it once ended (``_forget_ended``): not asked again

    @property
    def key(self) -> str:
        return self.cid.hex()

    def claim_of(self, step: int) -> ClaimRecord | None:
        return next((c for c in self.rec.claims if c.round == step), None)

    def runners(self) -> list[int]:
        return [k for k, p in enumerate(self.spec.parties) if p.runner]

    def chunk(self, party: int, index: int) -> Chunk:
        c = self.spec.parties[party].chunks[index]
        return Chunk(c.asset, c.address, c.pubkey, c.amount)


def _quote_check(attestations, spec: ContractSpec, k: int, quote: bytes, binding: Binding | None,
                 now: float) -> str | None:
    """Party ``k``'s quote, for the binding it commits to: that binding must name the spec's enclave keys,
    peer id and network for ``k`` (its keys root may have moved with its deposits since the spec was made)."""
    want = spec.parties[k].binding
    binding = binding or want
    if (binding.sign_pub, binding.enc_pub, binding.peer_id, binding.net) != (
            want.sign_pub, want.enc_pub, want.peer_id, want.net):
        return f"party {k}'s quote is for another enclave, peer or network than the spec names"
    why = attestations.check(quote, binding, now)
    return f"untrusted quote of party {k}: {why}" if why else None


def _funds_missing(check_funds: Callable[[str, str], object], spec: ContractSpec, me: int | None,
                   price_of=None, tolerance: float = 0.10) -> str | None:
    """Why the other parties' committed chunks are not all as committed (None: they are): each must hold,
    confirmed, at least its committed amount, and a declared USD value must be within ``tolerance`` of that
    amount at our own price (``funds_state``); blocking."""
    for k, p in enumerate(spec.parties):
        if k != me:
            for i, c in enumerate(p.chunks):
                state, why = funds_state(check_funds, c, c.usd_cents, price_of, tolerance)
                if state != FUNDS_OK:  # unknown counts as not there
                    return f"funds: party {k} chunk {i}: {why}"
    return None
