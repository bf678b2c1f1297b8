"""Contract records as files: one ``<key>.rec`` per contract (``wire``-encoded), replaced atomically.

``ContractStore(path, record_type=...)`` is the ``claims.RecordStore`` the daemon gives the contract-run protocol
(``<datadir>/runs``, ``record_type=RunRecord``; its agreements not yet opened: ``<datadir>/runs-agreed``,
``record_type=AgreedRecord``). With no ``record_type`` it reads the release/1 records older nodes kept in
``<datadir>/contracts`` (``contract_swap.ContractRecord``), which the node migrates at start. A
record is written through ``node.fsutil.atomic_write`` (a temporary file, fsynced, renamed over the old
one): a crash leaves the old record or the new one, never a mix. ``durable=False`` skips the fsyncs: the
record survives a crash of the process, not a power cut (tests). ``path=None`` keeps the records in memory.
"""

from __future__ import annotations

from pathlib import Path

from node.fsutil import atomic_write
from node.contracts.protocol.claims import MemoryContractStore

SUFFIX = ".rec"


class ContractStore(MemoryContractStore):
    def __init__(self, path: Path | None = None, *, durable: bool = True, record_type: type | None = None) -> None:
        if record_type is None:  # the release/1 records a node kept before that protocol retired (read to migrate)
            from node.contracts.protocol.swap import ContractRecord

            record_type = ContractRecord
        super().__init__(record_type=record_type)
        self.path = Path(path) if path is not None else None
        self.durable = durable
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)

    def _write(self, key: str, data: bytes) -> None:
        if self.path is None:
            return super()._write(key, data)
        atomic_write(self.path / f"{key}{SUFFIX}", data, mode=0o644, durable=self.durable)

    def _remove(self, key: str) -> None:
        if self.path is None:
            return super()._remove(key)
        (self.path / f"{key}{SUFFIX}").unlink(missing_ok=True)

    def _raw(self) -> list[tuple[str, bytes]]:
        if self.path is None:
            return super()._raw()
        return [(p.name[: -len(SUFFIX)], p.read_bytes()) for p in sorted(self.path.glob(f"*{SUFFIX}"))]
