"""Evaluation: weighted k-NN votes, and the eval-image cache, which must change nothing but the
work done (same batches, same features) while decoding each image once per run."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tort_core.data import Transformed
from tort_core.evaluate import CachedSplit, knn_predict
from tort_core.trainer import eval_splits
from tort_core.views import eval_transform


def test_knn_votes_are_weighted_by_similarity_not_counted():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.05]])  # one close neighbour of class 0, two far ones of class 1
    assert knn_predict(bank, labels, query, k=3, temperature=0.07, num_classes=2).tolist() == [0]
    # At a high temperature the weights even out and the majority wins.
    assert knn_predict(bank, labels, query, k=3, temperature=100.0, num_classes=2).tolist() == [1]
    assert knn_predict(bank, labels, query, k=1, temperature=0.07, num_classes=2).tolist() == [0]


class Counting(Dataset):
    def __init__(self, base):
        self.base, self.reads = base, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        return self.base[i]


def test_a_cached_split_yields_the_loaders_batches_exactly_and_decodes_once(digits):
    images = Counting(digits.test)
    loader = DataLoader(Transformed(images, eval_transform(32, 0.875)), batch_size=50)
    expected = list(loader)
    assert images.reads == len(digits.test)
    cached = CachedSplit(DataLoader(Transformed(images, eval_transform(32, 0.875, normalize=False)), batch_size=64),
                         torch.device("cpu"), batch_size=50)
    for _ in range(2):
        batches = list(cached)
        assert len(batches) == len(expected)
        for (x, y), (ex, ey) in zip(batches, expected):
            assert x.dtype == torch.float32 and torch.equal(x, ex) and torch.equal(y, ey)  # bit for bit
    assert images.reads == 2 * len(digits.test)  # the loader's pass, then one for the cache: not one per evaluation
    assert cached.images.dtype == torch.uint8


@pytest.mark.parametrize("cache, max_mb, kind", [("auto", 4096, CachedSplit), ("auto", 0, DataLoader),
                                                 ("on", 0, CachedSplit), ("off", 4096, DataLoader)])
def test_eval_cache_setting(tiny_cfg, digits, cache, max_mb, kind):
    cfg = tiny_cfg(**{"eval.cache": cache, "eval.cache_max_mb": max_mb})
    bank, test = eval_splits(digits, cfg, torch.device("cpu"))
    assert isinstance(bank, kind) and isinstance(test, kind)
