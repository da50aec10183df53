"""Frozen-feature evaluation: a weighted k-NN vote and a linear probe on pooled tokens.

The feature of an image is the mean of its patch tokens (class token excluded) after the model's final norm,
the quantity the paper's classifier pools. k-NN follows DINO's protocol (cosine similarity, the k nearest
training features vote with weight ``exp(sim / T)``); the linear probe is multinomial logistic regression on
standardised features, fitted by L-BFGS with a fixed L2 penalty (no search, nothing tuned on the test set).
"""
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def read_annotations(ann_file: str, prefix: str, limit: Optional[int] = None) -> Tuple[List[str], torch.Tensor]:
    """(image paths, labels) of an mmpretrain annotation file (``relative/path label`` per line)."""
    import os.path as osp
    paths, labels = [], []
    with open(ann_file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                name, label = line.strip().rsplit(' ', 1)
                labels.append(int(label))
            except ValueError:
                raise ValueError(f'{ann_file}:{number}: expected "path label", got {line.strip()!r}') from None
            paths.append(osp.join(prefix, name))
            if limit and len(paths) == limit:
                break
    return paths, torch.tensor(labels)


@torch.no_grad()
def pooled_features(module: nn.Module,
                    batches: Iterable[torch.Tensor],
                    on_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """(N, C) mean patch tokens of ``module`` (a student ``FDViT`` or a ``BackboneTeacher``) over image batches."""
    out = []
    for x in batches:
        if hasattr(module, 'forward_features'):
            out.append(module.forward_features(x)[:, 1:].float().mean(dim=1))
        else:
            out.append(module(x).patches.float().mean(dim=(-2, -1)))
        if on_batch:
            on_batch(x.shape[0])
    return torch.cat(out)


def knn_accuracy(train: torch.Tensor,
                 train_labels: torch.Tensor,
                 test: torch.Tensor,
                 test_labels: torch.Tensor,
                 k: int = 20,
                 temperature: float = 0.07,
                 num_classes: Optional[int] = None) -> float:
    """Top-1 (%) of a similarity-weighted k-NN vote (cosine, DINO's ``exp(sim / T)`` weights)."""
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    train, test = F.normalize(train, dim=1), F.normalize(test, dim=1)
    correct = 0
    for start in range(0, test.shape[0], 1024):
        sim, idx = (test[start:start + 1024] @ train.T).topk(min(k, train.shape[0]), dim=1)
        votes = torch.zeros(sim.shape[0], num_classes).scatter_add_(1, train_labels[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == test_labels[start:start + 1024]).sum().item()
    return 100.0 * correct / test.shape[0]


def linear_probe_accuracy(train: torch.Tensor,
                          train_labels: torch.Tensor,
                          test: torch.Tensor,
                          test_labels: torch.Tensor,
                          weight_decay: float = 1e-3,
                          steps: int = 200,
                          num_classes: Optional[int] = None) -> float:
    """Top-1 (%) of logistic regression on standardised features (L-BFGS, fixed L2 penalty ``weight_decay``)."""
    num_classes = num_classes or int(max(train_labels.max(), test_labels.max())) + 1
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    train, test = (train - mean) / std, (test - mean) / std
    torch.manual_seed(0)
    probe = nn.Linear(train.shape[1], num_classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(train), train_labels) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return 100.0 * (probe(test).argmax(1) == test_labels).float().mean().item()


def evaluate_frozen(train: torch.Tensor,
                    train_labels: torch.Tensor,
                    test: torch.Tensor,
                    test_labels: torch.Tensor,
                    k: int = 20) -> dict:
    """Both protocols at once: ``{'knn_top1': ..., 'linear_top1': ..., 'k': k, 'dims': C}``."""
    return dict(
        knn_top1=knn_accuracy(train, train_labels, test, test_labels, k=k),
        linear_top1=linear_probe_accuracy(train, train_labels, test, test_labels),
        k=k,
        dims=int(train.shape[1]))


__all__: Sequence[str] = ('read_annotations', 'pooled_features', 'knn_accuracy', 'linear_probe_accuracy',
                          'evaluate_frozen')
