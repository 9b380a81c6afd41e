"""Tests of the columnar mbox index and its cache file format (pure)."""

from __future__ import annotations

import functools
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolgate.errors import IndexFormatError
from spoolgate.mbox.generate import GenerateOptions, generate_bytes
from spoolgate.mbox.index import (
    CACHE_VERSION,
    UIDL_DIGEST_BYTES,
    FileIdentity,
    MboxIndex,
    MessageFlag,
    MessageRecord,
    TailMark,
    Variant,
    split_uidl_column,
)
from spoolgate.mbox.scan import scan_bytes

IDENTITY = FileIdentity(dev=1, inode=2, size=300, mtime_ns=3, ctime_ns=4)


def make_index(count: int = 3, digests: bytes | None = None) -> MboxIndex:
    index = MboxIndex(variant=Variant.MBOXRD, digest_bytes=512)
    offsets = [100 * n for n in range(count)]
    packed = digests or b"".join(
        (n + 1).to_bytes(UIDL_DIGEST_BYTES, "little") for n in range(count)
    )
    index.extend(
        offsets, [100] * count, [90 + n for n in range(count)], [0] * count, packed
    )
    index.identity = IDENTITY
    index.scanned_length = 100 * count
    index.tail = TailMark(offset=100 * (count - 1), length=100, digest=bytes(32))
    return index


def index_of(data: bytes) -> MboxIndex:
    batch = scan_bytes(data)
    index = MboxIndex()
    index.extend(batch.offsets, batch.lengths, batch.sizes, batch.flags, batch.digests)
    return index


def test_index_record_by_number() -> None:
    record = make_index()[1]
    assert record == MessageRecord(
        offset=100,
        length=100,
        size=91,
        uidl="02" + "00" * 11,
        flags=MessageFlag.NONE,
    )


def test_index_negative_number_counts_from_end() -> None:
    assert make_index()[-1].offset == 200


def test_index_number_out_of_range_raises() -> None:
    with pytest.raises(IndexError, match="out of range"):
        make_index()[3]


def test_index_iterates_in_file_order() -> None:
    assert [record.offset for record in make_index()] == [0, 100, 200]


def test_index_columns_cost_37_bytes_per_message() -> None:
    index = make_index(count=1000)
    assert index.resident_bytes() == 1000 * (8 + 8 + 8 + 1 + UIDL_DIGEST_BYTES)


def test_index_duplicate_digest_gets_derived_uidl() -> None:
    index = make_index(count=2, digests=bytes(UIDL_DIGEST_BYTES) * 2)
    assert index.uidl(0) == "00" * 12
    assert index.uidl(1) != index.uidl(0)


def test_index_duplicate_uidls_same_on_rebuild() -> None:
    first = make_index(count=3, digests=bytes(UIDL_DIGEST_BYTES) * 3)
    second = make_index(count=3, digests=bytes(UIDL_DIGEST_BYTES) * 3)
    assert [r.uidl for r in first] == [r.uidl for r in second]
    assert len({r.uidl for r in first}) == 3


@pytest.mark.parametrize("appended", [1, 20])
def test_index_append_clash_with_existing_uidl(appended: int) -> None:
    index = make_index(count=2)
    index.extend(
        [200] * appended,
        [1] * appended,
        [1] * appended,
        [0] * appended,
        (1).to_bytes(UIDL_DIGEST_BYTES, "little") * appended,
    )
    uidls = [record.uidl for record in index]
    assert len(set(uidls)) == len(uidls)


def test_index_extend_mismatched_columns_raises() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        MboxIndex().extend([0], [1, 2], [1], [0], bytes(UIDL_DIGEST_BYTES))


def test_index_truncate_drops_tail_records() -> None:
    index = make_index()
    index.truncate(1)
    assert [record.offset for record in index] == [0]


def test_index_remove_shifts_later_offsets() -> None:
    index = make_index(count=4)
    index.remove({1})
    assert [record.offset for record in index] == [0, 100, 200]
    assert [record.size for record in index] == [90, 92, 93]
    assert index.scanned_length == 300


def test_index_remove_clears_identity_and_tail() -> None:
    index = make_index()
    index.remove([0])
    assert index.identity is None
    assert index.tail is None


def test_index_remove_out_of_range_raises() -> None:
    with pytest.raises(IndexError):
        make_index().remove([5])


@functools.cache
def generated_mbox(seed: int) -> bytes:
    options = GenerateOptions(messages=12, seed=seed, attach_rate=0.0, format="mboxo")
    return generate_bytes(options)[0]


@given(
    seed=st.sampled_from([1, 2]),
    gone=st.sets(st.integers(min_value=0, max_value=11)),
)
@settings(max_examples=40, deadline=None)
def test_index_remove_matches_rescan(seed: int, gone: set[int]) -> None:
    mbox = generated_mbox(seed)
    index = index_of(mbox)
    kept = b"".join(
        mbox[record.offset : record.offset + record.length]
        for number, record in enumerate(index)
        if number not in gone
    )
    index.remove(gone)
    if kept:
        assert index.same_records(index_of(kept))
    else:
        assert len(index) == 0


def test_cache_bytes_round_trip() -> None:
    index = make_index()
    loaded = MboxIndex.from_bytes(index.to_bytes())
    assert loaded.same_records(index)
    assert loaded.identity == IDENTITY
    assert loaded.tail == index.tail
    assert loaded.variant is Variant.MBOXRD
    assert loaded.digest_bytes == 512
    assert loaded.scanned_length == 300


def test_cache_bytes_empty_index_round_trip() -> None:
    index = MboxIndex()
    index.identity = IDENTITY
    loaded = MboxIndex.from_bytes(index.to_bytes())
    assert len(loaded) == 0
    assert loaded.tail is None


def test_cache_bytes_without_identity_raises() -> None:
    with pytest.raises(ValueError, match="no file identity"):
        MboxIndex().to_bytes()


def test_cache_bytes_flipped_bit_raises() -> None:
    data = bytearray(make_index().to_bytes())
    data[len(data) // 2] ^= 1
    with pytest.raises(IndexFormatError, match="checksum mismatch"):
        MboxIndex.from_bytes(bytes(data), source="x.idx")


@pytest.mark.parametrize("cut", [0, 10, 60])
def test_cache_bytes_shorter_than_header_raises(cut: int) -> None:
    data = make_index().to_bytes()
    with pytest.raises(IndexFormatError, match="truncated"):
        MboxIndex.from_bytes(data[:cut])


def test_cache_bytes_missing_last_byte_raises() -> None:
    data = make_index().to_bytes()
    with pytest.raises(IndexFormatError, match="checksum mismatch"):
        MboxIndex.from_bytes(data[:-1])


def test_cache_bytes_records_missing_raises() -> None:
    body = make_index().to_bytes()[:-4]
    short = body[: len(body) - 37]
    data = short + struct.pack("<I", zlib.crc32(short))
    with pytest.raises(IndexFormatError, match="expected"):
        MboxIndex.from_bytes(data)


def test_cache_bytes_other_version_raises() -> None:
    data = bytearray(make_index().to_bytes())
    struct.pack_into("<I", data, 8, CACHE_VERSION + 1)
    with pytest.raises(IndexFormatError, match="format version"):
        MboxIndex.from_bytes(bytes(data))


def test_cache_bytes_other_magic_raises() -> None:
    data = b"NOTANIDX" + make_index().to_bytes()[8:]
    with pytest.raises(IndexFormatError, match="not a spoolgate index"):
        MboxIndex.from_bytes(data)


@given(st.binary(max_size=200))
def test_cache_bytes_any_input_loads_or_raises(data: bytes) -> None:
    try:
        MboxIndex.from_bytes(data)
    except IndexFormatError:
        pass


def test_index_visible_numbers_without_hidden_is_range() -> None:
    assert make_index(3).visible_numbers() == range(3)


def test_index_visible_numbers_skip_hidden() -> None:
    index = MboxIndex()
    flags = [int(MessageFlag.HIDDEN), 0, 0]
    index.extend([0, 10, 20], [10] * 3, [8] * 3, flags, bytes(range(36)))
    assert index.visible_numbers() == [1, 2]


def test_index_columns_copy_sizes_and_uidls() -> None:
    index = make_index(3)
    sizes, column = index.size_column(), index.uidl_column()
    index.remove([0])
    assert list(sizes) == [90, 91, 92]
    assert split_uidl_column(column) == [index_uidl_hex(n) for n in (1, 2, 3)]


def index_uidl_hex(value: int) -> str:
    return value.to_bytes(UIDL_DIGEST_BYTES, "little").hex()
