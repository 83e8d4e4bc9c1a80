"""Evaluation: supervised top-1 on the held-out split (and a validation split) and k-NN top-1.

k-NN follows DINO by default (eval.knn_protocol=bank): L2-normalised features, the *train* split
(unaugmented) as the bank, the held-out split as queries, votes weighted by exp(cosine / T).
knn_protocol=cv is the original Tort code's: scikit-learn's 5-fold cross-validation inside the
held-out split alone. A validation split (data.val_fraction) is queried against the same bank:
the training images it was not carved from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
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

    def __init__(self, loader: DataLoader, device: torch.device, batch_size: int,
                 normalize: DeviceNormalize | None = None):
        self.loader, self.device, self.batch_size = loader, device, batch_size
        self.normalize = normalize or DeviceNormalize()
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
        for start in range(0, self.images.shape[0], self.batch_size):
            yield self.normalize((self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]))


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int,
                temperature: float, num_classes: int, chunk: int = 1024, weights: str = "softmax") -> torch.Tensor:
    """k-NN class predictions for `queries` against `bank` (both [N, D]) by cosine similarity; each
    neighbour's vote weighs exp(cosine / temperature) (weights="softmax", DINO) or 1 ("uniform")."""
    bank = F.normalize(bank, dim=1)
    queries = F.normalize(queries, dim=1)
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start:start + chunk] @ bank.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights_ = (top_sim / temperature).exp() if weights == "softmax" else torch.ones_like(top_sim)
        votes = torch.zeros(sim.shape[0], num_classes, device=bank.device)
        votes.scatter_add_(1, bank_labels[top_idx], weights_)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return (pred == labels).float().mean().item() * 100.0


def knn_cross_validated(feats: torch.Tensor, labels: torch.Tensor, k: int, temperature: float,
                        weights: str = "uniform", folds: int = 5) -> float:
    """Top-1 (%) of a k-NN classifier cross-validated inside one split, the original Tort code's
    protocol: scikit-learn's cross_val_score (stratified `folds`-fold, unshuffled) of
    KNeighborsClassifier(k, metric='cosine'), mean accuracy over the folds. weights="softmax"
    weighs each neighbour by exp(cosine / temperature) instead of 1."""
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    vote = "uniform" if weights == "uniform" else (lambda dist: np.exp((1.0 - dist) / temperature))
    x, y = feats.float().cpu().numpy(), labels.cpu().numpy()
    classifier = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights=vote)
    return float(np.mean(cross_val_score(classifier, x, y, cv=folds))) * 100.0


@dataclass(frozen=True)
class KnnSettings:
    k: int = 20
    temperature: float = 0.07
    protocol: str = "bank"  # bank | cv (eval.knn_protocol)
    weights: str = "softmax"  # softmax | uniform (eval.knn_weights)


@torch.no_grad()
def evaluate(system, bank_loader: Iterable, test_loader: Iterable, num_classes: int, knn: KnnSettings,
             device: torch.device, autocast=contextlib.nullcontext, val_loader: Iterable | None = None
             ) -> dict[str, float]:
    """test_top1 and knn_top1 on the held-out split; val_top1 and val_knn_top1 on `val_loader`'s
    images when given. The bank is extracted only for knn.protocol=bank."""
    was_training = system.training
    system.eval()
    try:
        bank = extract(system, bank_loader, device, autocast)[1:] if knn.protocol == "bank" else None
        queries = {"": extract(system, test_loader, device, autocast)}
        if val_loader is not None:
            queries["val_"] = extract(system, val_loader, device, autocast)
    finally:
        system.train(was_training)
    out: dict[str, float] = {}
    for prefix, (logits, feats, labels) in queries.items():
        if bank is not None:
            pred = knn_predict(*bank, feats, knn.k, knn.temperature, num_classes, weights=knn.weights)
            knn_top1 = top1(pred, labels)
        else:
            knn_top1 = knn_cross_validated(feats, labels, knn.k, knn.temperature, knn.weights)
        out[f"{prefix}top1" if prefix else "test_top1"] = top1(logits.argmax(1), labels)
        out[f"{prefix}knn_top1"] = knn_top1
    return out
