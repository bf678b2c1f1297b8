"""What the local API asks of a running node.

The daemon (``node.daemon``) implements ``Services`` over its real parts
(runtime, offer book, enclave, ledger, risk engine); the API layer only
translates HTTP to these calls and back. Reads are synchronous and cheap;
actions are async (they may talk to the enclave process or a ledger).
A user error is raised as ``ApiError(status, reason)``.
"""

from __future__ import annotations

from typing import Any, Protocol


class ApiError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class Services(Protocol):
    def status(self) -> dict[str, Any]: ...

    def peers(self) -> list[dict[str, Any]]: ...

    def offers(self, asset: str | None, limit: int) -> list[dict[str, Any]]: ...

    def deposits(self) -> list[dict[str, Any]]: ...

    def contracts(self) -> list[dict[str, Any]]: ...

    def reputation(self) -> list[dict[str, Any]]: ...

    async def deposit(self, asset: str, chunks: int) -> dict[str, Any]: ...

    async def request(self, asset: str, usd: float, contract: str, give: str = "", wait: bool = True
                      ) -> dict[str, Any]: ...

    async def request_report(self, rid: str, version: int, timeout: float) -> dict[str, Any]: ...

    async def sweep(self, deposit: str, to: str) -> dict[str, Any]: ...

    async def contract(self, peer: str, give: str, take: str, chunks: int, kind: str = "swap",
                       terms: dict[str, Any] | None = None) -> dict[str, Any]: ...

    async def approve(self, contract: str, message: str) -> dict[str, Any]: ...

    def escrow(self) -> dict[str, Any]: ...

    async def escrow_recover(self, contract: str) -> dict[str, Any]: ...

    async def revoke(self, kind: str, target: str, reason: str) -> dict[str, Any]: ...
