"""The swap's schedule (``node.contracts.protocol.schedule``): one chunk at a time, never more than one exposed, each key
once, two parties; compiled to the stdlib ``turns`` contract that /keyswitch/contract-run/1 runs."""

from __future__ import annotations

import pytest

from node.contracts.protocol.schedule import Chunk, Round, Schedule, exposure, swap_schedule, validate_schedule


def test_swap_schedule_alternates_and_bounds_exposure():
    ch = [Chunk("BTC-REG", f"addr{i}", bytes([2]) + bytes([i]) * 32, 1) for i in range(1, 8)]
    s = swap_schedule(ch[:3], ch[3:6])
    assert [(r.giver, r.chunk.address) for r in s.rounds] == [
        (0, "addr1"), (1, "addr4"), (0, "addr2"), (1, "addr5"), (0, "addr3"), (1, "addr6")]
    assert exposure(s) == [1, 0]
    with pytest.raises(ValueError, match="exposed to 2"):
        swap_schedule(ch[:3], ch[3:4])
    assert "appears twice" in validate_schedule(Schedule([Round(0, 1, ch[0]), Round(1, 0, ch[0])]))
    assert "two parties" in validate_schedule(Schedule([Round(0, 0, ch[0])]))
