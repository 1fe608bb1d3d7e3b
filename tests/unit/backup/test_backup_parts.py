"""Part sizes: any database fits in S3's 10,000 parts."""

from __future__ import annotations

import pytest

from chatops.adapters.s3 import (
    MAX_PART,
    MAX_PARTS,
    MIN_PART,
    MiB,
    choose_part_size,
    part_size,
)

GiB = 1024 * MiB
TiB = 1024 * GiB


@pytest.mark.parametrize(
    ("expected", "part"),
    [(0, 8 * MiB), (10 * MiB, 8 * MiB), (70 * GiB, 9 * MiB), (1 * TiB, 129 * MiB)],
)
def test_part_size_grows_with_the_database(expected: int, part: int) -> None:
    assert choose_part_size(expected) == part


@pytest.mark.parametrize("expected", [1, 50 * GiB, 73 * GiB, 900 * GiB, 4 * TiB])
def test_the_expected_size_fits_in_planned_parts_with_room_to_grow(expected: int) -> None:
    size = choose_part_size(expected)
    assert MIN_PART <= size <= MAX_PART and size % MiB == 0
    assert size * 9_000 >= expected * 1.1


def test_an_upload_that_outgrows_its_estimate_still_fits() -> None:
    planned = choose_part_size(100 * GiB)
    capacity = sum(part_size(planned, n) for n in range(1, MAX_PARTS + 1))
    assert capacity >= 2.5 * 100 * GiB
    assert part_size(planned, 9_000) == planned < part_size(planned, 9_001)


def test_a_database_too_big_for_one_object_is_refused() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        choose_part_size(60 * TiB)
