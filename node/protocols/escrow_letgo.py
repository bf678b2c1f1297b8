"""When an escrow holder lets go of a contract it holds shares of, and how many one owner may have it hold.

Sans-IO and pure: ``LetGo`` reads the holder enclave's share statuses (``ShareStatus``) and the time passed in,
and says which contracts to forget (``Holdings.forget``: a forgotten holding is refused if sent again, and no
share of it is ever released). Without it a holder kept every contract it ever held, and its bound of
contracts held for others (``KeyEscrow.max_contracts``) counted them all: after that many in its life it held
for no one again.

* **done**: every share we hold of the contract was released to its beneficiary or its chunk moved to a party
  (nothing more can be asked of us but a resend of a released share, which a recovery restarted after the
  rebuild no longer needs): let go ``done_after`` seconds after we first saw it so (default a day).
* **open**: the contract refunds every chunk we hold a share of (its refund path stands open) and no share was
  asked: let go ``open_after`` seconds after we first saw it so (default 30 days: the owner's recovery node had
  that long to ask, or the owner refunded the chunk itself and never told us).
* **per owner**: a hold whose owner (the enclave whose chunks it escrows to us) already has ``max_per_owner``
  contracts held here is refused, so one device cannot fill the holder's bound alone (0: no bound). Owners of
  holdings read back at a start are not known until the contract is sent again; those count for no one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from node.contracts.spec import ContractSpec

DONE_AFTER = 86_400.0
OPEN_AFTER = 30 * 86_400.0


@dataclass
class LetGo:
    done_after: float = DONE_AFTER
    open_after: float = OPEN_AFTER
    max_per_owner: int = 0
    done_since: dict[bytes, float] = field(default_factory=dict)  # contract -> first seen done
    open_since: dict[bytes, float] = field(default_factory=dict)  # contract -> first seen open
    owners: dict[bytes, frozenset[bytes]] = field(default_factory=dict)  # contract -> its owners' sign keys

    def due(self, statuses: list, now: float) -> list[tuple[bytes, str]]:
        """The contracts to let go of now, each with why ("done" | "open"), from every share we hold."""
        by_cid: dict[bytes, list] = {}
        for s in statuses:
            by_cid.setdefault(s.cid, []).append(s)
        out = []
        for cid, shares in sorted(by_cid.items()):
            done = all(s.state == "released" or s.moved for s in shares)
            open_ = all(s.state == "released" or s.moved or s.allowed for s in shares)
            since = self.done_since.setdefault(cid, now) if done else self.done_since.pop(cid, None)
            if done and now - since >= self.done_after:
                out.append((cid, "done"))
                continue
            since = self.open_since.setdefault(cid, now) if open_ else self.open_since.pop(cid, None)
            if open_ and now - since >= self.open_after:
                out.append((cid, "open"))
        for cid in set(self.done_since) - set(by_cid):
            self.done_since.pop(cid)
        for cid in set(self.open_since) - set(by_cid):
            self.open_since.pop(cid)
        return out

    def forgot(self, cid: bytes) -> None:
        self.done_since.pop(cid, None)
        self.open_since.pop(cid, None)
        self.owners.pop(cid, None)

    def over_owner_bound(self, cid: bytes, owners: frozenset[bytes]) -> str | None:
        """Why a hold of ``cid`` (escrowing chunks of ``owners``) would pass the per-owner bound, else None."""
        if not self.max_per_owner or cid in self.owners:
            return None
        for o in sorted(owners):
            n = sum(1 for c, os in self.owners.items() if o in os)
            if n >= self.max_per_owner:
                return (f"this node already holds escrow shares of {n} contracts of owner {o.hex()[:16]}... "
                        f"(at most {self.max_per_owner} an owner)")
        return None


def owners_of(spec: ContractSpec, holder: bytes) -> frozenset[bytes]:
    """The sign keys of the parties whose chunks ``spec`` escrows to the holder enclave ``holder``."""
    return frozenset(spec.parties[t.party].binding.sign_pub for t in spec.escrows
                     if any(h.enc_pub == holder for h in t.holders))
