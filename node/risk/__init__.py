"""The risk engine: pure logic, time passed in, no I/O except optional SQLite persistence.

* ``reputation``: one bounded, decaying score per attested device; weighted
  outcome reports; the gossipsub application score.
* ``classes``: device classes (bond, starting limit, growth), TCB-status
  weights, revocation.
* ``caps``: exposure caps per device, owner and class, with the binding cap
  named in every refusal.
* ``allocate``: chunks covering X USD with the least overshoot within
  diversity caps, preferring reputation; vectorised, deterministic per seed.
* ``engine``: the above put together for one node (``RiskEngine``).
"""
