"""The fake engine computes real, padding-independent outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tei_ort.engines.base import EngineInputs, OutputName
from tests.support.fake_engine import FakeEngine, FakeEngineError


def batch(rows: list[list[int]], pad_to: int) -> EngineInputs:
    ids = np.zeros((len(rows), pad_to), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return EngineInputs(ids, mask, np.zeros_like(ids))


@pytest.mark.parametrize("output", list(OutputName))
def test_padding_does_not_change_outputs(output: OutputName) -> None:
    engine = FakeEngine(output, vocab_size=100, num_labels=3)
    alone = engine.run(batch([[1, 5, 7]], 3))
    padded = engine.run(batch([[1, 5, 7], [9, 9, 9, 9, 9, 9]], 16))
    if output is OutputName.LAST_HIDDEN_STATE:
        np.testing.assert_allclose(padded[0, :3], alone[0], rtol=1e-6)
        assert padded.shape == (2, 16, 32)
    else:
        np.testing.assert_allclose(padded[0], alone[0], rtol=1e-6)
    if output is OutputName.SPARSE_EMBEDDING:
        assert set(np.nonzero(alone[0])[0]) <= {1, 5, 7}
    if output is OutputName.LOGITS:
        assert alone.shape == (1, 3)


def test_deterministic_and_input_dependent() -> None:
    a = FakeEngine(seed=3).run(batch([[1, 2]], 2))
    b = FakeEngine(seed=3).run(batch([[1, 2]], 2))
    c = FakeEngine(seed=3).run(batch([[1, 3]], 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_failure_switches() -> None:
    with pytest.raises(FakeEngineError, match="broken"):
        FakeEngine(fail_always=True).run(batch([[1]], 1))
    engine = FakeEngine(fail_on_token=42)
    engine.run(batch([[1, 2]], 4))
    with pytest.raises(FakeEngineError, match="token 42"):
        engine.run(batch([[1], [42]], 4))
    with pytest.raises(FakeEngineError, match="out of range"):
        FakeEngine(vocab_size=10).run(batch([[11]], 1))
    with pytest.raises(FakeEngineError, match="batch of 2"):
        FakeEngine(max_batch_size=1).run(batch([[1], [2]], 1))
    assert engine.calls == [(1, 4), (2, 4)]
