"""DKD, logit standardisation, DIST, TTM, WTTM and CTKD against independent float64 computations.

The references loop over examples and classes in plain Python (explicit softmax, sums of p log p / q)
so that a vectorisation, masking or reduction mistake in the implementation shows.
"""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import BATCH, batch, build_pair

from kdbench.methods import METHODS, create_distiller
from kdbench.methods.base import Distiller
from kdbench.models.base import Features

CLASSES = 7


def logits(seed: int, scale: float = 3.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return scale * torch.randn(BATCH, CLASSES, generator=generator, dtype=torch.float64)


LABELS = torch.tensor([0, 3, 6, 3])
STUDENT, TEACHER = logits(1), logits(2)


def rows(x: torch.Tensor) -> list[list[float]]:
    return x.tolist()


def softmax(values: list[float], temperature: float = 1.0) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def kl(p: list[float], q: list[float]) -> float:
    """KL(p || q), zero terms skipped."""
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q, strict=True) if a > 0)


def standardized(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return [(v - mean) / (1e-7 + std) for v in values]


def features_with(logit_values: torch.Tensor) -> Features:
    empty = torch.zeros(0)
    return Features(empty, [], [], empty, logit_values)


def loss_of(name: str, student: torch.Tensor = STUDENT, teacher: torch.Tensor = TEACHER, **params: object) -> dict:
    t_model, s_model = build_pair("resnet8", "resnet8")
    term = METHODS.get(name)(t_model, s_model, **params).double()
    return term(features_with(student), features_with(teacher), LABELS)


def close(actual: torch.Tensor, expected: float) -> bool:
    return math.isclose(float(actual.detach()), expected, rel_tol=1e-9, abs_tol=1e-12)


# -- DKD ------------------------------------------------------------------------------------------
def dkd_reference(student: list[list[float]], teacher: list[list[float]], alpha: float, beta: float, t: float) -> float:
    total = 0.0
    for z_s, z_t, label in zip(student, teacher, LABELS.tolist(), strict=True):
        p_s, p_t = softmax(z_s, t), softmax(z_t, t)
        tckd = kl([p_t[label], 1 - p_t[label]], [p_s[label], 1 - p_s[label]])
        others_s = softmax([z for c, z in enumerate(z_s) if c != label], t)
        others_t = softmax([z for c, z in enumerate(z_t) if c != label], t)
        total += alpha * tckd + beta * kl(others_t, others_s)
    return total / len(student) * t * t


def test_dkd_is_weighted_target_and_non_target_kl() -> None:
    expected = dkd_reference(rows(STUDENT), rows(TEACHER), 1.0, 8.0, 4.0)
    assert close(loss_of("dkd")["dkd"], expected)
    expected = dkd_reference(rows(STUDENT), rows(TEACHER), 0.5, 2.0, 2.0)
    assert close(loss_of("dkd", alpha=0.5, beta=2.0, temperature=2.0, weight=3.0)["dkd"], 3.0 * expected)


def test_dkd_with_alpha_equal_beta_one_is_not_kd_but_tckd_plus_nckd() -> None:
    # DKD's identity: KD = TCKD + (1 - p_t[target]) * NCKD; the plain sum differs, so the split is real
    from kdbench.methods.kd import kd_loss

    dkd = float(loss_of("dkd", alpha=1.0, beta=1.0)["dkd"])
    assert not math.isclose(dkd, float(kd_loss(STUDENT, TEACHER, 4.0)), rel_tol=1e-6)


def test_logit_standardisation_z_scores_both_sides_before_the_temperature() -> None:
    student, teacher = [standardized(r) for r in rows(STUDENT)], [standardized(r) for r in rows(TEACHER)]
    expected_dkd = dkd_reference(student, teacher, 1.0, 8.0, 2.0)
    losses = loss_of("dkd", logit_standardize=True, temperature=2.0, weight=9.0)
    assert close(losses["dkd"], 9.0 * expected_dkd)
    # invariant to a per-example shift and scale of either side's logits
    shifted = loss_of("dkd", student=5 * STUDENT + 2, logit_standardize=True, temperature=2.0, weight=9.0)
    assert math.isclose(float(shifted["dkd"]), float(losses["dkd"]), rel_tol=1e-6)


def test_dkd_weight_warms_up_linearly_over_twenty_epochs() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    distiller = create_distiller(student, teacher, [("dkd", {})]).eval()
    images, labels = batch()
    term = distiller.terms["dkd"]
    with torch.no_grad():
        full = float(term(student.forward_features(images), teacher.forward_features(images), labels)["dkd"])
        for epoch, factor in [(0, 1 / 20), (9, 10 / 20), (19, 1.0), (100, 1.0)]:
            distiller.set_epoch(epoch)
            assert math.isclose(float(distiller(images, labels)[1]["dkd"]), factor * full, rel_tol=1e-6)
    assert "terms.dkd.warmup_scale" not in distiller.state_dict()  # recomputed from the epoch


def test_dkd_without_warmup_is_full_strength_at_once() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    distiller = create_distiller(student, teacher, [("dkd", {"warmup_epochs": 0})]).eval()
    images, labels = batch()
    with torch.no_grad():
        term = distiller.terms["dkd"]
        expected = term(student.forward_features(images), teacher.forward_features(images), labels)["dkd"]
        assert torch.equal(distiller(images, labels)[1]["dkd"], expected)


# -- DIST -----------------------------------------------------------------------------------------
def pearson(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    da, db = [x - mean_a for x in a], [x - mean_b for x in b]
    norms = math.sqrt(sum(x * x for x in da)) * math.sqrt(sum(x * x for x in db))
    return sum(x * y for x, y in zip(da, db, strict=True)) / (norms + 1e-8)


def test_dist_is_inter_plus_intra_class_pearson_distance() -> None:
    t = 4.0
    y_s = [softmax(r, t) for r in rows(STUDENT)]
    y_t = [softmax(r, t) for r in rows(TEACHER)]
    inter = 1 - sum(pearson(a, b) for a, b in zip(y_s, y_t, strict=True)) / BATCH
    columns = range(CLASSES)
    intra = 1 - sum(pearson([r[c] for r in y_s], [r[c] for r in y_t]) for c in columns) / CLASSES
    assert close(loss_of("dist")["dist"], 2.0 * t * t * (inter + intra))
    weighted = loss_of("dist", inter_weight=0.5, intra_weight=3.0)["dist"]
    assert close(weighted, 2.0 * t * t * (0.5 * inter + 3.0 * intra))


# -- TTM / WTTM -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,weight,exponent", [("ttm", 45.0, 0.1), ("wttm", 4.0, 0.2)])
def test_transformed_teacher_matching(name: str, weight: float, exponent: float) -> None:
    total = 0.0
    for z_s, z_t in zip(rows(STUDENT), rows(TEACHER), strict=True):
        powered = [p**exponent for p in softmax(z_t)]
        transformed = [p / sum(powered) for p in powered]
        divergence = kl(transformed, softmax(z_s))
        total += divergence * (sum(powered) if name == "wttm" else 1.0)
    assert close(loss_of(name)[name], weight * total / BATCH)


def test_ttm_is_kd_with_the_temperature_on_the_teacher_only() -> None:
    # p_T^gamma normalised is softmax(z_T / T) with T = 1 / gamma
    total = sum(kl(softmax(z_t, 4.0), softmax(z_s)) for z_s, z_t in zip(rows(STUDENT), rows(TEACHER), strict=True))
    assert close(loss_of("ttm", exponent=0.25, weight=1.0)["ttm"], total / BATCH)


# -- CTKD -----------------------------------------------------------------------------------------
def ctkd_distiller(**params: object) -> Distiller:
    teacher, student = build_pair("resnet8", "resnet8")
    return create_distiller(student, teacher, [("ctkd", params)])


def test_ctkd_is_kd_at_the_learnt_temperature() -> None:
    term = ctkd_distiller().terms["ctkd"].double()
    t = 1 + 20 / (1 + math.exp(-1.0))  # theta starts at 1
    expected = sum(kl(softmax(z_t, t), softmax(z_s, t)) for z_s, z_t in zip(rows(STUDENT), rows(TEACHER), strict=True))
    losses = term(features_with(STUDENT), features_with(TEACHER), LABELS)
    assert close(losses["ctkd"], 0.9 * expected / BATCH * t * t)


@pytest.mark.parametrize("epoch", [0, 4, 9, 30])
def test_ctkd_temperature_gradient_is_reversed_with_the_cosine_curriculum(epoch: int) -> None:
    distiller = ctkd_distiller()
    term = distiller.terms["ctkd"].double()
    distiller.set_epoch(epoch)
    strength = (1 - math.cos(math.pi * min(epoch + 1, 10) / 10)) / 2
    term(features_with(STUDENT), features_with(TEACHER), LABELS)["ctkd"].backward()
    # the true derivative of the loss in theta, by central differences of the float64 reference
    theta, h = 1.0, 1e-6

    def reference(value: float) -> float:
        t = 1 + 20 / (1 + math.exp(-value))
        pairs = zip(rows(STUDENT), rows(TEACHER), strict=True)
        return 0.9 * sum(kl(softmax(z_t, t), softmax(z_s, t)) for z_s, z_t in pairs) / BATCH * t * t

    derivative = (reference(theta + h) - reference(theta - h)) / (2 * h)
    assert math.isclose(float(term.temperature.theta.grad), -strength * derivative, rel_tol=1e-5)


def test_ctkd_temperature_is_checkpointed_and_the_curriculum_follows_the_epoch() -> None:
    trained = ctkd_distiller()
    with torch.no_grad():
        trained.terms["ctkd"].temperature.theta.fill_(-0.3)
    state = trained.state_dict()
    assert "terms.ctkd.temperature.theta" in state and "terms.ctkd.reversal" not in state
    fresh = ctkd_distiller()
    fresh.load_state_dict(state)
    fresh.set_epoch(7)
    assert float(fresh.terms["ctkd"].current_temperature().detach()) == pytest.approx(1 + 20 / (1 + math.exp(0.3)))
    assert float(fresh.terms["ctkd"].reversal) == pytest.approx((1 - math.cos(math.pi * 8 / 10)) / 2)


@pytest.mark.parametrize(
    "name,params,key",
    [
        ("dkd", {"temperature": 0.0}, "dkd.temperature"),
        ("dkd", {"warmup_epochs": -1}, "dkd.warmup_epochs"),
        ("dist", {"temperature": -1.0}, "dist.temperature"),
        ("ttm", {"exponent": 0.0}, "ttm.exponent"),
        ("wttm", {"exponent": -0.5}, "wttm.exponent"),
        ("ctkd", {"temperature_min": 0.0}, "ctkd.temperature_min"),
        ("ctkd", {"curriculum_epochs": -2}, "ctkd.curriculum_epochs"),
    ],
)
def test_bad_parameters_are_named(name: str, params: dict, key: str) -> None:
    problems = METHODS.get(name).parameter_problems(params)
    assert problems and key in problems[0]


def test_kd_with_logit_standardisation_is_kd_of_z_scores_at_the_base_temperature() -> None:
    student, teacher = [standardized(r) for r in rows(STUDENT)], [standardized(r) for r in rows(TEACHER)]
    t = 2.0
    expected = sum(kl(softmax(z_t, t), softmax(z_s, t)) for z_s, z_t in zip(student, teacher, strict=True))
    losses = loss_of("kd", logit_standardize=True, temperature=t, weight=9.0)
    assert close(losses["kd"], 9.0 * expected / BATCH * t * t)
    plain = sum(kl(softmax(z_t, 4.0), softmax(z_s, 4.0)) for z_s, z_t in zip(rows(STUDENT), rows(TEACHER), strict=True))
    assert close(loss_of("kd")["kd"], 0.9 * plain / BATCH * 16.0)


@pytest.mark.parametrize("name", ["kd", "at"])
def test_any_method_takes_the_general_warmup(name: str) -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    assert METHODS.get(name).parameter_defaults()["warmup_epochs"] == 0
    plain = create_distiller(student, teacher, [(name, {})]).eval()
    warmed = create_distiller(student, teacher, [(name, {"warmup_epochs": 4})]).eval()
    images, labels = batch()
    with torch.no_grad():
        full = float(plain(images, labels)[1][name])
        for epoch, factor in [(0, 0.25), (2, 0.75), (3, 1.0), (50, 1.0)]:
            warmed.set_epoch(epoch)
            losses = warmed(images, labels)[1]
            assert math.isclose(float(losses[name]), factor * full, rel_tol=1e-6)
            assert torch.equal(losses["ce"], plain(images, labels)[1]["ce"])  # CE never warms up
    with pytest.raises(ValueError, match="warmup_epochs"):
        create_distiller(student, teacher, [(name, {"warmup_epochs": -1})])


def test_warmup_counts_main_stage_epochs_after_an_init_stage() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    distiller = create_distiller(student, teacher, [("dkd", {"warmup_epochs": 4}), ("fitnet", {"init_epochs": 2})])
    for loop_epoch, factor in [(0, 0.25), (1, 0.25), (2, 0.25), (3, 0.5), (5, 1.0)]:
        distiller.set_epoch(loop_epoch)
        assert float(distiller.terms["dkd"].warmup_scale) == factor


def test_ctkd_temperature_gradient_stays_finite_where_teacher_probabilities_underflow() -> None:
    distiller = ctkd_distiller()
    term = distiller.terms["ctkd"]
    teacher = 2000.0 * TEACHER.float()  # softmax(z / tau) is exactly 0 for most classes in float32
    term(features_with(STUDENT.float()), features_with(teacher), LABELS)["ctkd"].backward()
    assert torch.isfinite(term.temperature.theta.grad)


def test_dkd_stays_finite_and_exact_for_extreme_logits() -> None:
    student = (1e6 * STUDENT).requires_grad_()
    losses = loss_of("dkd", student=student, teacher=1e6 * TEACHER)
    losses["dkd"].backward()
    assert torch.isfinite(losses["dkd"]) and torch.isfinite(student.grad).all()
    # the non-target softmax really excludes the target class, whatever the logits' scale
    teacher = TEACHER.clone()
    teacher[torch.arange(BATCH), LABELS] = 1e9
    expected = dkd_reference(rows(STUDENT), rows(teacher.clamp(max=50.0)), 0.0, 1.0, 4.0)
    assert close(loss_of("dkd", teacher=teacher, alpha=0.0, beta=1.0)["dkd"], expected)


def test_ctkd_with_logit_standardisation_is_kd_of_z_scores_at_the_learnt_temperature() -> None:
    term = ctkd_distiller(logit_standardize=True).terms["ctkd"].double()
    t = 1 + 20 / (1 + math.exp(-1.0))
    student, teacher = [standardized(r) for r in rows(STUDENT)], [standardized(r) for r in rows(TEACHER)]
    expected = sum(kl(softmax(z_t, t), softmax(z_s, t)) for z_s, z_t in zip(student, teacher, strict=True))
    losses = term(features_with(STUDENT), features_with(TEACHER), LABELS)
    assert close(losses["ctkd"], 0.9 * expected / BATCH * t * t)
