"""kdbench's path and the reference loop: same maths from the same weights; the reference's batches."""

from __future__ import annotations

import pytest
import torch

from kdbench.bench.kdbench_path import KdbenchPath
from kdbench.bench.reference import ReferencePath, topk_accuracy
from kdbench.bench.workload import Workload, random_split, resolved_terms


@pytest.mark.parametrize("method", ["vanilla", "kd", "at"])
def test_both_paths_compute_the_same_loss_from_the_same_weights(method: str) -> None:
    """The reference differs in its data path and loop, not its maths: same images, same first loss."""
    work = Workload(
        teacher="resnet8",
        student="resnet8",
        terms=resolved_terms([method]),
        num_classes=10,
        image_shape=(3, 8, 8),
        batch_size=8,
        padding=1,
    )
    split = random_split(16, 10, (3, 8, 8), seed=0)
    fast = KdbenchPath(work, split, seed=3, device=torch.device("cpu"))
    reference = ReferencePath(work, split, seed=3, device=torch.device("cpu"), num_workers=0)
    reference.batches(0)  # train mode as at an epoch's start
    images, labels = torch.randn(8, 3, 8, 8), torch.arange(8)
    assert fast.step(images, labels) == pytest.approx(reference.step(images, labels, torch.arange(8)), rel=1e-5)


def test_reference_batches_look_like_the_crd_loader() -> None:
    work = Workload(
        teacher="resnet8",
        student="resnet8",
        terms=resolved_terms(["kd"]),
        num_classes=10,
        image_shape=(3, 8, 8),
        batch_size=4,
        padding=1,
    )
    reference = ReferencePath(work, random_split(6, 10, (3, 8, 8), seed=0), seed=0, device="cpu", num_workers=0)
    batches = list(reference.batches(0))
    assert [len(b[0]) for b in batches] == [4, 2]  # the last partial batch is kept
    images, labels, indices = batches[0]  # the CRD code's CIFAR100Instance also returns the index
    assert images.dtype == torch.float32 and images.shape == (4, 3, 8, 8)
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == list(range(6))
    assert labels.dtype == torch.int64


def test_topk_accuracy_against_a_direct_count() -> None:
    logits = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    top1, top5 = topk_accuracy(logits, target)
    ranks = (logits > logits.gather(1, target[:, None])).sum(1)  # how many classes score above the true one
    assert top1.item() == pytest.approx(100.0 * (ranks < 1).float().mean().item())
    assert top5.item() == pytest.approx(100.0 * (ranks < 5).float().mean().item())
