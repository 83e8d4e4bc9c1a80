"""Evaluation: supervised top-1 on the held-out split and weighted k-NN top-1.

k-NN follows DINO: L2-normalised features, the *train* split (unaugmented) as the bank, the
held-out split as queries, votes weighted by exp(cosine / T). Nothing is cross-validated on the
test split.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .device_views import DeviceNormalize


@torch.no_grad()
def extract(system, loader: DataLoader, device: torch.device, autocast) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, feats, labels = [], [], []
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        with autocast():
            lg, ft = system.embed(x)
        logits.append(lg.float())
        feats.append(ft.float())
        labels.append(y.to(device, non_blocking=True))
    return torch.cat(logits), torch.cat(feats), torch.cat(labels)


class CachedSplit:
    """A split after the eval transform, kept as uint8 images (on the GPU when training there).

    The eval transform is deterministic, so every evaluation would decode and resize the same
    images again: ≈ 3.5 CPU-ms an image at 224 px, which on a GPU costs more than the forward
    passes it feeds. Here the loader runs once, at the first evaluation; later ones only slice and
    normalise, with the arithmetic of ToTensor + Normalize (`DeviceNormalize`), so the features
    are the same as through the loader.
    """

    def __init__(self, loader: DataLoader, device: torch.device, batch_size: int):
        self.loader, self.device, self.batch_size = loader, device, batch_size
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def _build(self) -> None:
        n = len(self.loader.dataset)  # type: ignore[arg-type]
        start = 0
        for x, y in self.loader:
            if self.images is None:  # filled in place: no second copy, no batch held back
                self.images = torch.empty((n, *x.shape[1:]), dtype=x.dtype, device=self.device)
                self.labels = torch.empty(n, dtype=torch.int64, device=self.device)
            self.images[start:start + len(x)].copy_(x, non_blocking=True)
            self.labels[start:start + len(x)].copy_(torch.as_tensor(y), non_blocking=True)
            start += len(x)
        self.loader = None  # its workers are no longer needed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.images is None:
            self._build()
        normalize = DeviceNormalize()
        for start in range(0, self.images.shape[0], self.batch_size):
            yield normalize((self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]))


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int,
                temperature: float, num_classes: int, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN class predictions for `queries` against `bank` (both [N, D])."""
    bank = F.normalize(bank, dim=1)
    queries = F.normalize(queries, dim=1)
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start:start + chunk] @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], num_classes, device=bank.device)
        votes.scatter_add_(1, bank_labels[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return (pred == labels).float().mean().item() * 100.0


@torch.no_grad()
def evaluate(system, bank_loader: DataLoader, test_loader: DataLoader, num_classes: int, k: int,
             temperature: float, device: torch.device, autocast=contextlib.nullcontext) -> dict[str, float]:
    was_training = system.training
    system.eval()
    try:
        _, bank_feats, bank_labels = extract(system, bank_loader, device, autocast)
        test_logits, test_feats, test_labels = extract(system, test_loader, device, autocast)
    finally:
        system.train(was_training)
    knn = knn_predict(bank_feats, bank_labels, test_feats, k, temperature, num_classes)
    return {"test_top1": top1(test_logits.argmax(1), test_labels), "knn_top1": top1(knn, test_labels)}
