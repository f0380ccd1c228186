"""The reference loop: how the CRD code (RepDistiller ``train_student.py`` / ``helper/loops.py``) trains.

A torchvision ``DataLoader`` (``num_workers`` 8, capped by the CPUs) over a Dataset that decodes each
HWC uint8 image to PIL and applies RandomCrop(padding) + RandomHorizontalFlip + ToTensor +
Normalize; fp32, contiguous tensors; both networks' features (its ``model(x, is_feat=True)``), the
teacher under ``no_grad``; loss = gamma * CE + alpha * KD + beta * method through kdbench's own loss
terms (the KL term is computed with alpha = 0 when the method has no KD, as the CRD loop always
computes it); top-1/top-5 and ``loss.item()`` every step for its meters; ``zero_grad()`` filling
zeros and the per-parameter SGD update, as under the PyTorch it was written for. Vanilla follows its
``train_vanilla``: a plain ``model(x)``. The point is its data path and loop style, not other maths.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from kdbench.bench.workload import MEAN, STD, Workload, build_models
from kdbench.data.base import Split
from kdbench.methods import create_distiller
from kdbench.methods.kd import kd_loss
from kdbench.step import derive_seed
from kdbench.suite import SCHEDULE_PRESETS

#: the CRD code's KD temperature: its loop computes the KL term for every method
CRD_KD_TEMPERATURE = 4.0


class CrdStyleImages(Dataset):
    """A split held as the torchvision CIFAR classes hold it (HWC uint8 NumPy), each item decoded to PIL."""

    def __init__(self, split: Split, transform: Callable, with_index: bool):
        images = split.images.permute(0, 2, 3, 1).numpy()
        self.images = np.ascontiguousarray(images[..., 0] if images.shape[-1] == 1 else images)
        self.targets = split.labels.tolist()
        self.transform = transform
        self.with_index = with_index  # the CRD code's CIFAR100Instance also returns the index

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple:
        image = self.transform(Image.fromarray(self.images[index]))
        return (image, self.targets[index], index) if self.with_index else (image, self.targets[index])


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> list[torch.Tensor]:
    """Top-k accuracy in % as the CRD code's meters compute it (k capped at the class count)."""
    ks = [min(k, logits.shape[1]) for k in ks]
    _, predicted = logits.topk(max(ks), 1, True, True)
    correct = predicted.t().eq(target.view(1, -1).expand_as(predicted.t()))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / target.size(0)) for k in ks]


class ReferencePath:
    """The CRD code's loop: per-image PIL transforms in DataLoader workers, fp32, a sync every step."""

    def __init__(self, work: Workload, split: Split, seed: int, device: torch.device | str, num_workers: int):
        self.device = device = torch.device(device)
        student, teacher = build_models(work, seed, device)
        # kdbench's loss terms (the maths is shared); the loop around them is the CRD code's
        distiller = create_distiller(student, teacher, work.terms, work.ce_weight).to(device)
        self.student, self.teacher = distiller.student, distiller.teacher
        self.terms = list(distiller.terms.values())
        self.gamma = distiller.ce_weight
        self.kl_with_zero_alpha = self.teacher is not None and "kd" not in distiller.terms
        self.trainable = [self.student, *self.terms]
        s = SCHEDULE_PRESETS["crd"]
        self.optimizer = torch.optim.SGD(
            distiller.trainable_parameters(),
            lr=s["lr"],
            momentum=s["momentum"],
            weight_decay=s["weight_decay"],
            foreach=False,  # the per-parameter update of the PyTorch the CRD code was written for
        )
        channels = work.image_shape[0]
        from torchvision import transforms  # seconds to import: only the reference path needs it

        transform = transforms.Compose(
            [
                transforms.RandomCrop(work.image_shape[1], padding=work.padding),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((MEAN,) * channels, (STD,) * channels),
            ]
        )
        self.loader = DataLoader(
            CrdStyleImages(split, transform, with_index=self.teacher is not None),
            batch_size=work.batch_size,
            shuffle=True,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(derive_seed(seed, "reference-data")),
        )

    def batches(self, epoch: int) -> Iterator[tuple]:
        for module in self.trainable:  # train mode at the start of an epoch, the teacher in eval mode
            module.train()
        if self.teacher is not None:
            self.teacher.eval()
        return iter(self.loader)  # a fresh epoch: its workers start now

    def step(self, *batch: torch.Tensor) -> float:
        """One step of the CRD loop on a DataLoader batch (images, labels[, indices]); returns the loss."""
        images, target = batch[0].float().to(self.device), batch[1].to(self.device)
        if self.teacher is None:  # train_vanilla
            logits = self.student(images)
            loss = self.gamma * F.cross_entropy(logits, target)
        else:  # train_distill
            student_features = self.student.forward_features(images)
            with torch.no_grad():
                teacher_features = self.teacher.forward_features(images)
            logits = student_features.logits
            loss = self.gamma * F.cross_entropy(logits, target)
            if self.kl_with_zero_alpha:
                loss = loss + 0.0 * kd_loss(logits, teacher_features.logits, CRD_KD_TEMPERATURE)
            for term in self.terms:
                loss = loss + sum(term(student_features, teacher_features, target).values())
        topk_accuracy(logits, target)
        value = loss.item()
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self.optimizer.step()
        return value
