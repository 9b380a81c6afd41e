"""Tests for spoolgate.mbox.journal: move planning and the slot format."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from spoolgate.mbox.index import FileIdentity
from spoolgate.mbox.journal import (
    ExpungePlan,
    ExpungeState,
    Move,
    Phase,
    decode_slot,
    encode_slot,
    plan_moves,
)

IDENTITY = FileIdentity(dev=1, inode=2, size=300, mtime_ns=4, ctime_ns=5)


def apply_moves(data: bytes, moves: tuple[Move, ...], final_size: int) -> bytes:
    """Run the moves front to back in memory, then truncate."""
    buffer = bytearray(data)
    for move in moves:
        chunk = buffer[move.source : move.source + move.length]
        buffer[move.destination : move.destination + move.length] = chunk
    return bytes(buffer[:final_size])


def test_plan_moves_merges_adjacent_kept_messages() -> None:
    moves, final = plan_moves([0, 10, 30, 60], [10, 20, 30, 5], {1}, 65)
    assert moves == (Move(30, 10, 35),)
    assert final == 45


def test_plan_moves_one_move_per_kept_run() -> None:
    moves, final = plan_moves([0, 10, 20, 30, 40], [10] * 5, {0, 2}, 50)
    assert moves == (Move(10, 0, 10), Move(30, 10, 20))
    assert final == 30


def test_plan_moves_last_deleted_needs_no_move() -> None:
    moves, final = plan_moves([0, 10], [10, 10], {1}, 20)
    assert moves == ()
    assert final == 10


def test_plan_moves_nothing_deleted_keeps_size() -> None:
    assert plan_moves([0, 10], [10, 10], set(), 20) == ((), 20)


def test_plan_moves_bytes_after_last_message_move_too() -> None:
    moves, final = plan_moves([0, 10], [10, 10], {0}, 25)
    assert moves == (Move(10, 0, 15),)
    assert final == 15


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
    data=st.data(),
)
def test_plan_moves_result_is_kept_messages_in_order(
    lengths: list[int], data: st.DataObject
) -> None:
    deleted = data.draw(st.sets(st.integers(min_value=0, max_value=len(lengths) - 1)))
    offsets = [sum(lengths[:i]) for i in range(len(lengths))]
    content = b"".join(bytes([65 + i % 26]) * n for i, n in enumerate(lengths))
    moves, final = plan_moves(offsets, lengths, deleted, len(content))
    kept = b"".join(
        content[offsets[i] : offsets[i] + lengths[i]]
        for i in range(len(lengths))
        if i not in deleted
    )
    assert apply_moves(content, moves, final) == kept
    assert final == len(kept)
    for move in moves:
        assert move.gap > 0
        assert move.length > 0


def test_plan_round_trips() -> None:
    plan = ExpungePlan(IDENTITY, (0, 4, 7), (Move(30, 10, 35),), 200, 4096)
    assert ExpungePlan.from_bytes(plan.to_bytes()) == plan
    assert plan.total == 35


def test_slot_round_trips_with_backup() -> None:
    state = ExpungeState(7, Phase.COPY, 123, tail_length=9, backup=b"abc\n")
    assert decode_slot(encode_slot(state)) == state


def test_slot_torn_write_is_rejected() -> None:
    encoded = encode_slot(ExpungeState(3, Phase.TRUNCATE, 50, backup=b"x" * 40))
    for cut in (0, 10, len(encoded) - 1):
        assert decode_slot(encoded[:cut]) is None


def test_slot_flipped_bit_is_rejected() -> None:
    encoded = bytearray(encode_slot(ExpungeState(3, Phase.COPY, 50)))
    encoded[9] ^= 1
    assert decode_slot(bytes(encoded)) is None


def test_slot_all_zero_is_empty() -> None:
    assert decode_slot(bytes(100)) is None


@given(st.binary(max_size=200))
def test_slot_decode_any_bytes_never_raises(data: bytes) -> None:
    state = decode_slot(data)
    assert state is None or isinstance(state.phase, Phase)


@given(
    sequence=st.integers(min_value=1, max_value=2**64 - 1),
    phase=st.sampled_from(Phase),
    copied=st.integers(min_value=0, max_value=2**64 - 1),
    tail=st.integers(min_value=0, max_value=2**64 - 1),
    backup=st.binary(max_size=64),
)
def test_slot_round_trips_any_state(
    sequence: int, phase: Phase, copied: int, tail: int, backup: bytes
) -> None:
    state = ExpungeState(sequence, phase, copied, tail, backup)
    assert decode_slot(encode_slot(state) + b"trailing") == state
