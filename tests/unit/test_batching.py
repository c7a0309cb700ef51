"""The batch budget and padding, as pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from tei_ort.serving.batching import bucket_length, fits, pad_batch, plan_batch


@pytest.mark.parametrize(
    ("length", "cap", "expected"),
    [
        (1, None, 16),
        (16, None, 16),
        (17, None, 32),
        (100, 128, 112),
        (120, 128, 128),
        (127, 128, 128),
        (250, 256, 256),
        (250, 250, 250),
        (300, 256, 300),
        (0, None, 0),
    ],
)
def test_bucket_length(length: int, cap: int | None, expected: int) -> None:
    assert bucket_length(length, cap=cap) == expected


def test_bucket_multiple_one_is_exact() -> None:
    assert bucket_length(37, multiple=1) == 37


def test_fits_is_tei_rule_on_padded_length() -> None:
    # TEI: max_len * (n + 1) <= max_batch_tokens, here with max_len rounded to its bucket
    assert fits(4, 16, max_batch_tokens=64)
    assert not fits(5, 16, max_batch_tokens=64)
    assert not fits(4, 17, max_batch_tokens=64)  # 17 pads to 32: 4 x 32 > 64
    assert fits(2, 17, max_batch_tokens=64)
    assert not fits(3, 8, max_batch_tokens=1000, max_batch_requests=2)


def test_plan_takes_while_the_budget_holds() -> None:
    count, padded = plan_batch([10, 12, 16, 5, 30], max_batch_tokens=64)
    assert (count, padded) == (4, 16)  # the 5th would make 5 x 32


def test_plan_stops_at_the_first_entry_that_does_not_fit_fifo() -> None:
    # the long entry does not fit, the short ones after it wait (FIFO, as TEI)
    count, padded = plan_batch([16, 16, 60, 1, 1], max_batch_tokens=96)
    assert (count, padded) == (2, 16)


def test_plan_respects_max_batch_requests() -> None:
    assert plan_batch([1] * 10, max_batch_tokens=10_000, max_batch_requests=3) == (3, 16)


def test_plan_always_takes_one_even_over_budget() -> None:
    # an entry longer than max_batch_tokens still makes a batch of one: no endless loop
    assert plan_batch([500, 1], max_batch_tokens=100) == (1, 512)
    assert plan_batch([100, 1], max_batch_tokens=100, cap=100) == (1, 100)


def test_plan_empty_and_lazy() -> None:
    assert plan_batch([], max_batch_tokens=100) == (0, 0)

    def lengths():  # type: ignore[no-untyped-def]
        yield 16
        yield 16
        yield 64
        raise AssertionError("read past the first entry that does not fit")

    assert plan_batch(lengths(), max_batch_tokens=64) == (2, 16)


def test_plan_budget_over_many_random_queues() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = rng.integers(1, 300, size=int(rng.integers(1, 40))).tolist()
        budget = int(rng.integers(16, 4000))
        requests = int(rng.integers(1, 10))
        count, padded = plan_batch(
            lengths, max_batch_tokens=budget, max_batch_requests=requests, cap=256
        )
        assert 1 <= count <= min(len(lengths), requests)
        assert padded >= max(lengths[:count])
        assert count == 1 or padded * count <= budget
        if count < len(lengths) and count < requests:  # the next one really did not fit
            longest = max(lengths[: count + 1])
            assert bucket_length(longest, cap=256) * (count + 1) > budget


def test_pad_batch_right_pads_with_mask_and_types() -> None:
    rows = [np.array([101, 7, 102]), np.array([101, 102])]
    types = [np.array([0, 0, 0]), np.array([0, 1])]
    ids, mask, type_ids = pad_batch(rows, 4, pad_id=9, type_rows=types)
    np.testing.assert_array_equal(ids, [[101, 7, 102, 9], [101, 102, 9, 9]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [1, 1, 0, 0]])
    assert type_ids is not None
    np.testing.assert_array_equal(type_ids, [[0, 0, 0, 0], [0, 1, 0, 0]])
    assert ids.dtype == mask.dtype == type_ids.dtype == np.int64


def test_pad_batch_without_types_and_too_long_row() -> None:
    ids, mask, type_ids = pad_batch([np.array([1, 2])], 2)
    assert type_ids is None and ids.shape == mask.shape == (1, 2)
    with pytest.raises(ValueError, match="more than the padded length"):
        pad_batch([np.array([1, 2, 3])], 2)
