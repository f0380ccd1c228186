"""kdbench.metrics against scikit-learn's metrics and a float64 top-5 written here."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn import metrics as sk

from kdbench.metrics import ConfusionMeter, confusion_counts, evaluate_classifier, has_top5, metrics_from_confusion


def _random_case(num_classes: int, size: int, seed: int, skew: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (size,), generator=generator)
    logits = torch.randn(size, num_classes, generator=generator)
    logits[torch.arange(size), labels] += 1.5  # better than chance, not perfect
    logits[:, 0] += skew  # an imbalanced predictor
    return logits, labels


@pytest.mark.parametrize(("num_classes", "skew"), [(2, 0.0), (2, 2.0), (3, 0.5), (10, 0.0)])
def test_metrics_match_scikit_learn(num_classes: int, skew: float) -> None:
    logits, labels = _random_case(num_classes, 203, seed=num_classes, skew=skew)
    predictions = logits.argmax(1)
    y_true, y_pred, classes = labels.numpy(), predictions.numpy(), list(range(num_classes))
    got = metrics_from_confusion(confusion_counts(predictions, labels, num_classes))

    assert got["confusion"] == sk.confusion_matrix(y_true, y_pred, labels=classes).tolist()
    assert got["top1"] == pytest.approx(100 * sk.accuracy_score(y_true, y_pred), abs=1e-12)
    recall = sk.recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    precision = sk.precision_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    f1 = sk.f1_score(y_true, y_pred, labels=classes, average=None, zero_division=0)
    np.testing.assert_allclose(got["per_class_recall"], 100 * recall, atol=1e-12)
    np.testing.assert_allclose(got["per_class_precision"], precision, atol=1e-12)
    np.testing.assert_allclose(got["per_class_f1"], f1, atol=1e-12)
    for average in ("macro", "weighted"):
        expected = sk.f1_score(y_true, y_pred, labels=classes, average=average, zero_division=0)
        assert got[f"{average}_f1"] == pytest.approx(expected, abs=1e-12)


def test_a_class_never_predicted_or_absent_counts_as_scikit_learn_does() -> None:
    # class 2 is never predicted; class 3 neither occurs nor is predicted
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 0, 1, 0])
    classes = [0, 1, 2, 3]
    got = metrics_from_confusion(confusion_counts(torch.tensor(y_pred), torch.tensor(y_true), 4))
    assert got["per_class_precision"][2] == 0.0 and got["per_class_f1"][3] == 0.0
    assert got["support"] == [2, 2, 3, 0]
    for average in ("macro", "weighted"):
        expected = sk.f1_score(y_true, y_pred, labels=classes, average=average, zero_division=0)
        assert got[f"{average}_f1"] == pytest.approx(expected, abs=1e-12)


def test_meter_over_batches_equals_one_pass_and_counts_top5_and_loss() -> None:
    logits, labels = _random_case(7, 100, seed=3)
    meter = ConfusionMeter(7, "cpu")
    for start in range(0, 100, 32):  # a last partial batch, as the loaders give
        meter.add(logits[start : start + 32], labels[start : start + 32])
    got = meter.result()
    whole = metrics_from_confusion(confusion_counts(logits.argmax(1), labels, 7))
    assert got["confusion"] == whole["confusion"]
    ranks = (logits.double() > logits.double().gather(1, labels[:, None])).sum(1)  # classes scored higher
    assert got["top5"] == pytest.approx(100.0 * float((ranks < 5).double().mean()), abs=1e-12)
    expected_loss = float(-F.log_softmax(logits.double(), 1).gather(1, labels[:, None]).mean())
    assert got["loss"] == pytest.approx(expected_loss, rel=1e-6)


def test_top5_below_five_classes_is_top_c_as_always_recorded() -> None:
    logits, labels = _random_case(2, 20, seed=0)
    meter = ConfusionMeter(2, "cpu")
    meter.add(logits, labels)
    assert meter.result()["top5"] == 100.0 and not has_top5(2) and has_top5(10)


class _Batches:
    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def epoch(self, epoch: int):
        for start in range(0, len(self.labels), 8):
            yield self.images[start : start + 8], self.labels[start : start + 8]


def test_evaluate_classifier_restores_training_mode() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(12, 3))
    images, labels = torch.randn(30, 3, 2, 2), torch.randint(0, 3, (30,))
    model.train()
    got = evaluate_classifier(model, _Batches(images, labels), 3, contextlib.nullcontext)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = metrics_from_confusion(confusion_counts(model(images).argmax(1), labels, 3))
    assert got["confusion"] == expected["confusion"]  # dropout was off during the evaluation
