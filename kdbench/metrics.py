"""Classification metrics of one evaluation, all from one confusion matrix counted on the device.

Accuracy alone misleads on imbalanced data (MHIST: 617 HP and 360 SSA test images), so every
evaluation keeps the whole confusion matrix and derives from it, in one function
(``metrics_from_confusion``): top-1, per-class recall (the per-class accuracy), per-class precision
and F1, macro F1 and weighted F1. ``ConfusionMeter`` counts the matrix (``bincount`` of
``label * C + prediction``), the top-5 hits and the loss sum on the device; reading it costs one
host sync per evaluation. Below 5 classes "top-5" is top-C (100 %), as kdbench has always recorded
it (``result.json`` holds a number there); ``has_top5`` says whether it means anything.

Conventions (scikit-learn's, with ``labels=range(C)`` and ``zero_division=0``): rows are true
classes, columns predictions; a class never predicted has precision 0, a class with precision and
recall both 0 has F1 0; macro F1 is the plain mean over all C classes, weighted F1 the mean weighted
by each class's true count (support). Accuracies (top-1, top-5, per-class recall) are in %, as
kdbench's other accuracies; precision and F1 are fractions in 0..1, as the course project reports
them (weighted F1 0.828).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: the metrics of one evaluation that are a single number (``per_class_*`` and ``confusion`` are lists)
SCALAR_METRICS = ("loss", "top1", "top5", "macro_f1", "weighted_f1")
#: the per-class lists (one value per class, in class order)
PER_CLASS_METRICS = ("per_class_recall", "per_class_precision", "per_class_f1", "support")


def has_top5(num_classes: int) -> bool:
    """Whether top-5 differs from "always right": only with more than 5 classes."""
    return num_classes > 5


def confusion_counts(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The C x C matrix of counts (rows true class, columns predicted), on the inputs' device."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(confusion: Any) -> dict[str, Any]:
    """top-1, per-class recall / precision / F1, macro and weighted F1 of a confusion matrix.

    ``confusion`` is a C x C matrix of counts (tensor, array or nested lists), rows the true class.
    Computed in float64 on the host: the matrix is small, and the numbers go into JSON anyway.
    """
    matrix = torch.as_tensor(confusion, dtype=torch.float64, device="cpu")
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {tuple(matrix.shape)}")
    true_positives = matrix.diagonal()
    support = matrix.sum(dim=1)  # images of each true class
    predicted = matrix.sum(dim=0)  # images predicted as each class
    total = support.sum()

    def ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
        return torch.where(denominator > 0, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))

    recall = ratio(true_positives, support)
    precision = ratio(true_positives, predicted)
    f1 = ratio(2 * precision * recall, precision + recall)
    return {
        "top1": float(100.0 * true_positives.sum() / total) if total > 0 else 0.0,
        "per_class_recall": (100.0 * recall).tolist(),
        "per_class_precision": precision.tolist(),
        "per_class_f1": f1.tolist(),
        "support": [int(count) for count in support.tolist()],
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / total) if total > 0 else 0.0,
        "confusion": [[int(count) for count in row] for row in matrix.tolist()],
    }


class ConfusionMeter:
    """One evaluation's confusion matrix, top-5 hits and loss sum, accumulated on the device."""

    def __init__(self, num_classes: int, device: torch.device | str):
        self.num_classes = num_classes
        self.confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
        self.top5_hits = torch.zeros((), dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.seen = 0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        logits = logits.float()
        self.confusion += confusion_counts(logits.argmax(dim=1), labels, self.num_classes)
        top5 = logits.topk(min(5, self.num_classes), dim=1).indices
        self.top5_hits += (top5 == labels[:, None]).any(dim=1).sum()
        self.loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        self.seen += labels.numel()

    def result(self) -> dict[str, Any]:
        """Every metric as Python numbers: the evaluation's one host sync."""
        metrics = metrics_from_confusion(self.confusion.cpu())
        seen = max(self.seen, 1)
        top5 = 100.0 * int(self.top5_hits.item()) / seen
        return {"loss": float(self.loss_sum.item()) / seen, "top5": top5, **metrics}


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, batches: Any, num_classes: int | None, autocast: Any) -> dict[str, Any]:
    """Every metric of ``model`` over one pass of ``batches`` (an object with ``epoch(e)``), in eval mode;
    ``num_classes`` None takes the width of the logits."""
    was_training = model.training
    model.eval()
    meter: ConfusionMeter | None = None
    for images, labels in batches.epoch(0):
        with autocast():
            logits = model(images)
        if meter is None:
            meter = ConfusionMeter(num_classes or logits.shape[1], labels.device)
        meter.add(logits, labels)
    model.train(was_training)
    if meter is None:
        raise ValueError("cannot evaluate on an empty split")
    return meter.result()
