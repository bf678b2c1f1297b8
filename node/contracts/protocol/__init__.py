"""node.contracts.protocol: the one contract protocol, ``/keyswitch/contract-run/1``, sans-IO.

* ``agreement``: "run this contract with me", answered yes or no (``/keyswitch/contract/1``).
* ``run``: ``ContractRun``, the runner that opens a contract in each party's enclave, carries the releases
  between them and records the claims, written in parts: ``run_open`` (the open phase), ``run_rounds`` (the
  driver, requests, answers, timers), ``run_settle`` (claims and outcome), ``run_resume`` (restore from the
  records), ``run_approvals`` (approvals sent until acknowledged); ``state`` its records and refusals.
* ``swap``: the swap as a contract (its schedule compiled to the stdlib ``turns`` contract) and the old
  release/1 record's migration; ``schedule`` the chunks and rounds of a swap.
* ``envelope``: the signed message a runner sends; ``claims``: what was swept, per chunk; ``cheating``: the
  proof that a key was released twice.

Like ``node.protocols``, this package opens no file, socket or database and reads no clock
(``tests/test_layering.py``): the host-side desks (``node.contracts.desk``) and the runtime do that.
"""
