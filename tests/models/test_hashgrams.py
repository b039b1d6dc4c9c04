"""The C featuriser gives the numpy reference's ids, bit for bit, and it was built."""

from __future__ import annotations

import random

import numpy as np
import pytest

from models import featurize
from models.featurize import Featurizer, FeaturizerConfig


def _texts() -> list[str]:
    rng = random.Random(7)
    alphabet = "abcdefghij klmnop  qrstuvwxyz0123456789 .,!?-\n\tÄéü中文テスト🙂\x00"
    texts = ["", " ", "!!!", "a", "ab", "abc", "one two", "x" * 3000, "word " * 400,
             "Ünïcödé テスト 中文 " * 30, "a\x00b", "  spaced   out  ", "MiXeD CaSe 123"]
    for _ in range(400):
        n = rng.choice([5, 40, 200, 900])
        texts.append("".join(rng.choice(alphabet) for _ in range(n)))
    return texts


def test_the_c_featuriser_was_built() -> None:
    # optional in setup.py so that an install without a compiler still works; here (CI, the
    # README's bootstrap) there is one, and a silent fallback would hide a slower hot path
    assert featurize._native is not None, "models._hashgrams was not compiled"


@pytest.mark.parametrize("config", [
    FeaturizerConfig(),
    FeaturizerConfig(buckets=1 << 10, max_ids=16, char_min=2, char_max=4, word_bigrams=False),
    FeaturizerConfig(max_ids=400),
])
def test_c_and_numpy_give_the_same_ids(config: FeaturizerConfig) -> None:
    featurizer = Featurizer(config)
    texts = _texts()
    ids, mask = featurizer.transform(texts)
    ref_ids, ref_mask = featurizer.transform_numpy(texts)
    assert ids.shape == ref_ids.shape == (len(texts), config.max_ids)
    assert np.array_equal(ids, ref_ids)
    assert np.array_equal(mask, ref_mask)
    assert (ids > 0).sum(axis=1).max() == config.max_ids  # some texts were thinned
    # batching does not change an item's ids
    one_by_one = np.vstack([featurizer.transform([t])[0] for t in texts[:50]])
    assert np.array_equal(one_by_one, ref_ids[:50])


def test_a_bad_configuration_is_refused() -> None:
    assert featurize._native is not None
    with pytest.raises(ValueError, match="configuration"):
        featurize._native.features(b" a ", 1, 0, 1 << 18, 3, 5, True)
