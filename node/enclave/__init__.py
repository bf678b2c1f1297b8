"""The enclave's trusted core.

**Invariants** (kept inside the enclave whatever the host sends; the host is hostile):

* **I1** A key committed to an open contract leaves only as that contract's rules decide: to the named
  counterparty's enclave (``Contracts.release`` / ``step``), or back to its owner once the contract refunds
  it (``Contracts.refund``) or has ended without releasing it. ``ExportKey``, a raw ``EscrowSplit`` and a
  second ``ContractOpen`` naming it are refused (code ``committed``; ``Contracts.committed_to``). A contract
  that some runner never signed, under which nothing moved and none of our keys is escrowed, binds no one yet
  (no release is allowed before every runner signed): the host may drop it (``Contracts.drop``), and its keys
  are uncommitted; one every runner signed is never dropped (code ``signed``).
* **I2** No key leaves twice, across crashes: every release, export and split is journaled in sealed state
  before its result leaves the core; a resend hands back the journaled bytes only.
* **I3** A contract party that receives a key (and every runner of that contract), the holders and
  beneficiary of a raw escrow split, the holders and beneficiary of a contract's escrow terms (the owner's
  ``Contracts.escrow_split``) and the beneficiary a holder releases its share to (``Holdings.share``) are
  enclaves whose quotes THIS enclave verified itself (``attest_peer``, under ``EnclaveCore.peer_policy``:
  its own measurement, its own kind of device and vendor root, no debug peer unless itself debug); keys of
  anything else are refused (code ``unattested``; ``EnclaveCore.require_attested`` for escrow).
* **I4** An offer sheet is signed only when every key it offers is held here (held / received), not
  committed to an open contract, and so is in the set ``keys_root`` commits to in this enclave's quotes
  (``EnclaveCore.quote`` accepts only ``keys_root(held_pubkeys())``). The enclave reads the offered keys
  from the body it signs (``sheet.offered_keys``; bytes that are not a version-3 sheet: ``sheet-unreadable``),
  not from the host's list, which must be those keys (``keys-mismatch``).

The raw ``release`` / ``resend`` / ``accept`` operations are not in the production handler table
(``messages.handle`` refuses them with code ``test-only-op``); tests build their own table on top of it.

This package is the code a TEE would measure and run: deposit key generation,
sealed storage (keys, the release journal, a monotonic counter), quote
production, offer-sheet and domain signing, ECIES key release and acceptance,
and the export of a key to its owner. It imports only pure libraries
(coincurve, cryptography, msgspec, lark) and the project modules of its
trusted code set (``measure.TRUSTED_CODE``: this package with its hardware
providers ``hw/``, ``node.crypto``, ``node.wire``, ``node.fsutil``,
``node.contracts``, the bindings and attestation verifiers of ``node.attest``),
all of them measured; never host code (``node.tee``, the runtime, the
config), trio, libp2p or the network. ``tests/test_layering.py`` holds it
to that.

The *simulated* backend runs it as a separate OS process
(``python -m node.enclave --datadir D``) speaking a narrow, versioned
request/response protocol over stdin/stdout (``node.enclave.messages``).
It is INSECURE: its sealing key comes from a file in the data directory and
its "vendor" root key derives from a public constant, so anyone can forge its
quotes. It demonstrates the boundary and the journal, not hardware secrecy.
"""
