"""The method contract, for every registered method (a new method is covered with no new test code).

Each test runs on two tiny pairs: equal widths (resnet8 -> resnet8) and different widths at every
map (resnet8x4 -> resnet8). A method that is not applicable to a pair must say so at plan time and
refuse to build.
"""

from __future__ import annotations

import inspect
import sys

import pytest
import torch
from method_helpers import PAIRS, batch, build_pair

from kdbench.data import load_dataset
from kdbench.data.base import TensorBatches
from kdbench.methods import METHODS, Distiller, create_distiller
from kdbench.models import model_feature_info

CASES = [(name, pair) for name in METHODS.names() for pair in PAIRS]
IDS = [f"{name}-{teacher}-{student}" for name, (teacher, student) in CASES]


def make_distiller(name: str, pair: tuple[str, str], seed: int = 0) -> Distiller:
    """A distiller for ``name`` on ``pair`` in train mode; where the method says the pair is NA, the test
    checks that it refuses to build one, then skips with the method's reason."""
    teacher, student = build_pair(*pair, seed=seed)
    reason = METHODS.get(name).not_applicable(model_feature_info(pair[0]), model_feature_info(pair[1]), {})
    if reason is not None:
        assert isinstance(reason, str) and reason
        with pytest.raises(ValueError):
            create_distiller(student, teacher, [(name, {})])
        pytest.skip(f"NA: {name} does not apply to {pair[0]} -> {pair[1]}: {reason}")
    return create_distiller(student, teacher, [(name, {})]).train()


def all_losses(distiller: Distiller, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Main-stage losses plus init-stage losses of two-stage methods."""
    _, losses = distiller(images, labels)
    if distiller.init_epochs():
        losses.update(distiller.init_forward(images))
    return losses


@pytest.mark.parametrize("name,pair", CASES, ids=IDS)
def test_loss_is_finite_and_differentiable(name: str, pair: tuple[str, str]) -> None:
    distiller = make_distiller(name, pair)
    images, labels = batch()
    logits, losses = distiller(images, labels)
    assert logits.shape == (len(labels), 10)
    if distiller.init_epochs():
        losses.update(distiller.init_forward(images))
    assert "ce" in losses
    for key, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), key
        assert value.requires_grad, key
    sum(losses.values()).backward()
    grads = [p.grad for p in distiller.trainable_parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name,pair", CASES, ids=IDS)
def test_only_student_and_method_parts_train(name: str, pair: tuple[str, str]) -> None:
    distiller = make_distiller(name, pair)
    teacher = distiller.teacher
    trainable = {id(p) for p in distiller.trainable_parameters()}
    own = [p for term in distiller.terms.values() for p in term.parameters()]
    expected = {id(p) for p in distiller.student.parameters()} | {id(p) for p in own}
    assert trainable == expected
    assert {id(p) for p in distiller.init_parameters()} <= trainable
    if teacher is not None:
        assert not trainable & {id(p) for p in teacher.parameters()}
        assert all(not p.requires_grad for p in teacher.parameters())

    sum(all_losses(distiller, *batch()).values()).backward()
    if teacher is not None:
        assert all(p.grad is None for p in teacher.parameters())
    for p in distiller.parameters():
        if p.grad is not None:
            assert id(p) in trainable
    # every part the method owns is trained by its loss
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in own)


@pytest.mark.parametrize("name,pair", CASES, ids=IDS)
def test_training_steps_leave_the_teacher_untouched(name: str, pair: tuple[str, str]) -> None:
    distiller = make_distiller(name, pair)
    teacher = distiller.teacher
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()} if teacher is not None else {}
    student_before = {k: v.clone() for k, v in distiller.student.state_dict().items()}
    if teacher is not None:
        teacher.train()  # even so, putting the distiller in train mode puts the teacher back in eval mode
    distiller.train()
    assert teacher is None or not teacher.training
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    init_optimizer = torch.optim.SGD(distiller.init_parameters(), lr=0.05) if distiller.init_epochs() else None
    for step in range(3):
        images, labels = batch(seed=step)
        if init_optimizer is not None:
            init_optimizer.zero_grad()
            sum(distiller.init_forward(images).values()).backward()
            init_optimizer.step()
        optimizer.zero_grad()
        _, losses = distiller(images, labels)
        sum(losses.values()).backward()
        optimizer.step()
    if teacher is not None:
        for key, value in teacher.state_dict().items():
            assert torch.equal(value, teacher_before[key]), key  # parameters and BN buffers
        assert not teacher.training
    changed = [k for k, v in distiller.student.state_dict().items() if not torch.equal(v, student_before[k])]
    assert changed


@pytest.mark.parametrize("name,pair", CASES, ids=IDS)
def test_state_dict_round_trip_restores_method_parts(name: str, pair: tuple[str, str]) -> None:
    trained = make_distiller(name, pair, seed=0)
    teacher = trained.teacher
    optimizer = torch.optim.SGD(trained.trainable_parameters(), lr=0.05)
    _, losses = trained(*batch(seed=5))
    sum(losses.values()).backward()
    optimizer.step()  # method parts and BN statistics move away from their initial values
    state = trained.state_dict()
    assert all(key.startswith(("student.", "terms.")) for key in state)

    # a fresh distiller (different initialisation) around the same frozen teacher
    _, other_student = build_pair(*pair, seed=1)
    fresh = create_distiller(other_student, teacher, [(name, {})])
    images, labels = batch(seed=6)
    trained.eval()
    fresh.eval()
    expected = all_losses(trained, images, labels)
    before = all_losses(fresh, images, labels)
    assert any(not torch.equal(before[k], expected[k]) for k in expected)
    fresh.load_state_dict(state)
    after = all_losses(fresh, images, labels)
    assert after.keys() == expected.keys()
    for key in expected:
        assert torch.equal(after[key], expected[key]), key


@pytest.mark.parametrize("name,pair", CASES, ids=IDS)
def test_training_on_synthetic_data_lowers_the_objective(name: str, pair: tuple[str, str]) -> None:
    """A few small SGD steps on one synthetic batch: the objective (init-stage one for two-stage
    methods) goes down at every step; a sign or detach error in a term would break this."""
    distiller = make_distiller(name, pair)
    data = load_dataset("synthetic", image_size=16, train_size=16, test_size=4, num_classes=10, augment=False)
    images, labels = next(iter(TensorBatches(data.train, batch_size=16, mean=data.mean, std=data.std)))
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=1e-3)
    objective = []
    for _ in range(4):
        losses = distiller.init_forward(images) if distiller.init_epochs() else distiller(images, labels)[1]
        loss = sum(losses.values())
        objective.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(later < earlier for earlier, later in zip(objective, objective[1:], strict=False)), objective


@pytest.mark.parametrize("name", METHODS.names())
def test_losses_stay_float32_under_bf16_autocast(name: str) -> None:
    """Mixed precision may run the networks in bf16, never the loss formulas (the reference is float32)."""
    distiller = make_distiller(name, ("resnet8", "resnet8"))
    images, labels = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = all_losses(distiller, images, labels)
    assert all(value.dtype == torch.float32 for value in losses.values()), {k: v.dtype for k, v in losses.items()}
    reference = all_losses(distiller, images, labels)
    for key, value in losses.items():  # same objective up to the bf16 features, not bf16 arithmetic
        assert torch.allclose(value, reference[key], rtol=0.1), key


@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_documented_and_parameterised(name: str) -> None:
    cls = METHODS.get(name)
    doc = sys.modules[cls.__module__].__doc__ or ""
    if name != "vanilla":
        assert "Reference" in doc and "Deliberate" in doc and "Features" in doc, name
        assert "weight" in cls.parameter_defaults()
    signature = inspect.signature(cls.__init__)
    keyword_only = [p for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert all(p.default is not inspect.Parameter.empty for p in keyword_only)
