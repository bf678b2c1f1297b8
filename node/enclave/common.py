"""What the enclave's core and its contract engine share: the refusal every operation raises, and the
escrow share tags and their additional data. Its own module so that neither imports the other."""

from __future__ import annotations

ESCROW_SPLIT_TAG = b"keyswitch/escrow-share/1"  # share from the key's enclave to a holder
ESCROW_RELEASE_TAG = b"keyswitch/escrow-release/1"  # share from a holder to the beneficiary
MAX_ESCROW_HOLDERS = 16


class Refusal(Exception):
    """An operation the enclave will not do: ``code`` (stable, for programs) and ``reason`` (one line)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def escrow_aad(tag: bytes, deposit_pub: bytes, context: bytes) -> bytes:
    return tag + len(deposit_pub).to_bytes(2, "big") + deposit_pub + context
