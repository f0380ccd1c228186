"""The device-resident path trains as well as the CRD code's DataLoader path (issue 7, item 5).

A resnet8 trained for a few epochs on learnable synthetic data (10 classes, 16x16, crop padding 2
and flips) with each loader kind, same seed (same initial weights and batch order; the crops and
flips are different draws of the same distribution). Measured on this setting, seeds 0-5: the test
accuracy ranges 0.68-0.80 for both kinds and the paired gap stays within 0.07; chance is 0.10. A
loader bug (labels detached from images, train and test normalised differently, a broken crop)
costs far more than the 0.15 allowed. Both paths are deterministic on CPU given the seed; on CUDA the
tensor path draws its order and augmentation from a CUDA generator, so its numbers differ from CPU's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from kdbench.data import DataSource, load_dataset
from kdbench.data.loaders import make_loader
from kdbench.models import create_model

EPOCHS, BATCH_SIZE, LR = 8, 64, 0.05


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny convolutions run faster on one thread, and do not fight the other tests for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_and_test(data: DataSource, kind: str, seed: int) -> float:
    """Plain SGD with the paper's batch size and a step schedule; returns the final test top-1."""
    torch.manual_seed(seed)
    model = create_model("resnet8", num_classes=data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[4, 6], gamma=0.1)
    common = dict(
        kind=kind,
        batch_size=BATCH_SIZE,
        mean=data.mean,
        std=data.std,
        augmentation=data.augmentation,
        seed=seed,
        device="cpu",
    )
    train_batches = make_loader(data.train, train=True, **common)
    test_batches = make_loader(data.test, train=False, **common)
    for epoch in range(EPOCHS):
        model.train()
        for images, labels in train_batches.epoch(epoch):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in test_batches.epoch(0):
            correct += int((model(images).argmax(dim=1) == labels).sum())
    return correct / len(data.test)


def test_tensor_and_torchvision_paths_reach_the_same_accuracy(one_thread: None) -> None:
    data = load_dataset("synthetic", num_classes=10, image_size=16, train_size=1024, test_size=512, noise=0.25)
    assert data.augmentation.crop_padding == 2 and data.augmentation.horizontal_flip
    fast = train_and_test(data, "tensor", seed=0)
    reference = train_and_test(data, "torchvision", seed=0)
    assert fast > 0.5 and reference > 0.5, (fast, reference)
    assert abs(fast - reference) < 0.15, (fast, reference)
