"""Recipes: Adam/AdamW against float64 updates written here, lr schedules against their formulas,
the stratified validation split, selection and early stopping."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.data.base import Split
from kdbench.recipe import (
    Selection,
    Selector,
    make_optimizer,
    make_scheduler,
    resolve_selection,
    schedule_problems,
    selection_problems,
    split_validation,
)

CRD = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False, "milestones": [2, 4], "lr_decay": 0.1}


def _adam_reference(weight: torch.Tensor, grads: list[torch.Tensor], lr: float, betas, eps, wd, decoupled: bool):
    w, m, v = weight.double().clone(), torch.zeros_like(weight, dtype=torch.float64), None
    v = torch.zeros_like(m)
    for t, g in enumerate(grads, 1):
        g = g.double()
        if decoupled:
            w = w * (1 - lr * wd)
        else:
            g = g + wd * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
        w = w - lr * m_hat / (v_hat.sqrt() + eps)
    return w


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_and_adamw_updates(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, generator=generator)
    grads = [torch.randn(5, generator=generator) for _ in range(3)]
    weight = torch.nn.Parameter(start.clone())
    schedule = {**CRD, "optimizer": name, "lr": 1e-3, "weight_decay": 0.01, "betas": [0.8, 0.99], "eps": 1e-7}
    optimizer = make_optimizer([weight], schedule, torch.device("cpu"))
    for g in grads:
        weight.grad = g.clone()
        optimizer.step()
    expected = _adam_reference(start, grads, 1e-3, (0.8, 0.99), 1e-7, 0.01, decoupled=name == "adamw")
    assert torch.allclose(weight.detach().double(), expected, atol=1e-6)


def test_sgd_is_the_crd_recipe() -> None:
    optimizer = make_optimizer([torch.nn.Parameter(torch.zeros(1))], CRD, torch.device("cpu"))
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["momentum"] == 0.9 and optimizer.defaults["weight_decay"] == 5e-4


def _lrs(schedule: dict, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule["lr"])
    scheduler = make_scheduler(optimizer, schedule)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: nothing moves, but the order is the training loop's
        scheduler.step()
    return lrs


def test_the_default_schedule_is_torchs_multistep() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.05)
    assert isinstance(make_scheduler(optimizer, {**CRD, "epochs": 6}), torch.optim.lr_scheduler.MultiStepLR)
    assert _lrs({**CRD, "epochs": 6}, 6) == pytest.approx([0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005])


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"lr_schedule": "constant"}, [1, 1, 1, 1, 1, 1]),
        ({"lr_schedule": "constant", "warmup_epochs": 2}, [0.5, 1, 1, 1, 1, 1]),
        ({"warmup_epochs": 2}, [0.5, 1, 0.1, 0.1, 0.01, 0.01]),  # milestones 2 and 4 stay absolute
        ({"lr_schedule": "cosine"}, [0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]),
        (
            {"lr_schedule": "cosine", "warmup_epochs": 2},
            [0.5, 1] + [0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)],
        ),
    ],
)
def test_schedules_follow_their_formulas(changes: dict, expected: list[float]) -> None:
    schedule = {**CRD, "epochs": 6, "lr": 0.2, **changes}
    assert _lrs(schedule, 6) == pytest.approx([0.2 * f for f in expected], abs=1e-12)


def test_bad_schedule_values_are_named() -> None:
    bad = {
        **CRD,
        "epochs": 3,
        "optimizer": "adagrad",
        "lr_schedule": "step",
        "warmup_epochs": 3,
        "betas": [0.9],
        "eps": 0,
    }
    assert [key for key, _ in schedule_problems(bad)] == ["optimizer", "lr_schedule", "warmup_epochs", "betas", "eps"]
    assert schedule_problems({**CRD, "epochs": 3}) == []


def test_validation_split_is_stratified_disjoint_and_independent_of_the_run() -> None:
    labels = torch.tensor([0] * 20 + [1] * 10)
    images = torch.arange(30, dtype=torch.uint8).view(30, 1, 1, 1)
    train, held = split_validation(Split(images, labels), 0.2, seed=0)
    assert torch.bincount(held.labels).tolist() == [4, 2] and len(train) == 24
    assert not set(held.images.flatten().tolist()) & set(train.images.flatten().tolist())
    torch.manual_seed(123)  # the run's own RNG has no say
    again = split_validation(Split(images, labels), 0.2, seed=0)[1]
    assert torch.equal(again.images, held.images)
    assert not torch.equal(split_validation(Split(images, labels), 0.2, seed=1)[1].images, held.images)


def test_selection_and_early_stopping_resume_exactly() -> None:
    selection = resolve_selection({"metric": "val_loss"}, {"patience": 2})
    assert selection == Selection("val_loss", "min", 2)
    assert resolve_selection({"metric": "val_weighted_f1"}, None).mode == "max"
    selector = Selector(selection)
    assert [selector.update(e, v) for e, v in [(1, 0.9), (2, 0.7), (3, 0.7)]] == [True, True, False]
    resumed = Selector(selection)
    resumed.load_state_dict(selector.state_dict())
    assert not resumed.should_stop and not resumed.update(4, 0.8) and resumed.should_stop
    assert resumed.best_epoch == 2  # the first of equal values


def test_selection_problems_are_named() -> None:
    keys = [key for key, _ in selection_problems(None, {"metric": "test_top1"}, {"patience": 0})]
    assert keys == ["selection", "selection.metric", "early_stopping.patience"]
    assert selection_problems({"fraction": 0.1}, {"metric": "val_loss", "mode": "min"}, {"patience": 3}) == []
    assert [k for k, _ in selection_problems({"fraction": 1.5, "size": 3}, None, None)] == [
        "validation.fraction",
        "validation.size",
    ]
