"""Subclass distillation: the colab's losses against direct float64 computations, the subclass head,
and the two known-wrong port behaviours giving other numbers."""

from __future__ import annotations

import math

import pytest
import torch

from kdbench.methods import create_distiller
from kdbench.methods.subclass import auxiliary_loss, soft_cross_entropy
from kdbench.models import create_model
from kdbench.models.subclass_head import class_logits_of, create_model_with_head, head_subclasses


def fixed_logits(batch: int, total: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, total, generator=generator, dtype=torch.float64) * 3).requires_grad_(False)


def direct_auxiliary(logits: list[list[float]], temperature: float, epsilon: float = 1e-9) -> float:
    """The formula written out per element: standardise each row, scale 1/sqrt(T n), mean logsumexp of dots."""
    batch, total = len(logits), len(logits[0])
    rows = []
    for row in logits:
        mean = math.fsum(row) / total
        variance = math.fsum((x - mean) ** 2 for x in row) / total
        rows.append([(x - mean) / math.sqrt(variance + epsilon) / math.sqrt(temperature * total) for x in row])
    lses = []
    for v in rows:
        dots = [math.fsum(a * b for a, b in zip(v, w, strict=True)) for w in rows]
        top = max(dots)
        lses.append(top + math.log(math.fsum(math.exp(d - top) for d in dots)))
    return math.fsum(lses) / batch - 1 / temperature - math.log(batch)


def softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(x - top) for x in row]
    total = math.fsum(exps)
    return [e / total for e in exps]


def direct_student_loss(student: list[list[float]], teacher: list[list[float]], labels: list[int], classes: int,
                        alpha: float, temperature: float) -> float:  # fmt: skip
    """alpha T^2 CE(softmax(t/T), s/T) + (1 - alpha) CE(class logits of s, y), batch means."""
    soft, hard = [], []
    for s_row, t_row, label in zip(student, teacher, labels, strict=True):
        p = softmax([x / temperature for x in t_row])
        q = softmax([x / temperature for x in s_row])
        soft.append(-math.fsum(pi * math.log(qi) for pi, qi in zip(p, q, strict=True)))
        per_class = len(s_row) // classes
        class_logits = [
            math.log(math.fsum(math.exp(x) for x in s_row[c * per_class : (c + 1) * per_class])) for c in range(classes)
        ]
        hard.append(-math.log(softmax(class_logits)[label]))
    n = len(labels)
    return alpha * temperature**2 * math.fsum(soft) / n + (1 - alpha) * math.fsum(hard) / n


@pytest.mark.parametrize(("batch", "total", "temperature"), [(8, 10, 1.0), (5, 20, 0.5), (3, 4, 2.0)])
def test_auxiliary_loss_matches_the_formula_in_float64(batch: int, total: int, temperature: float) -> None:
    logits = fixed_logits(batch, total, seed=batch)
    ours = auxiliary_loss(logits, temperature).item()
    assert ours == pytest.approx(direct_auxiliary(logits.tolist(), temperature), abs=1e-12)


def test_auxiliary_loss_of_a_constant_row_uses_the_epsilon() -> None:
    # a row of equal logits has variance 0: standardised to 0 (not NaN) by epsilon 1e-9
    logits = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0]], dtype=torch.float64)
    assert auxiliary_loss(logits).item() == pytest.approx(direct_auxiliary(logits.tolist(), 1.0), abs=1e-12)


def test_student_loss_matches_the_formula_in_float64() -> None:
    classes, per_class, batch = 2, 5, 6
    student_logits = fixed_logits(batch, classes * per_class, seed=1)
    teacher_logits = fixed_logits(batch, classes * per_class, seed=2)
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    teacher = create_model_with_head("course_mlp", classes, (1, 4, 4), per_class).double()
    student = create_model_with_head("course_mlp", classes, (1, 4, 4), per_class).double()
    distiller = create_distiller(student, teacher, [("subclass", {"subclasses": per_class})])
    from kdbench.models.subclass_head import SubclassFeatures

    def features(logits: torch.Tensor) -> SubclassFeatures:
        empty = torch.zeros(batch, 1, dtype=torch.float64)
        return SubclassFeatures(empty, [], [], empty, class_logits_of(logits, classes), subclass_logits=logits)

    term = distiller.terms["subclass"]
    soft = term(features(student_logits), features(teacher_logits), labels)["subclass"]
    hard = distiller.ce_weight * torch.nn.functional.cross_entropy(class_logits_of(student_logits, classes), labels)
    expected = direct_student_loss(
        student_logits.tolist(), teacher_logits.tolist(), labels.tolist(), classes, alpha=0.5, temperature=4.0
    )
    assert distiller.ce_weight == 0.5 and term.weight == 0.5 and term.temperature == 4.0
    assert (soft + hard).item() == pytest.approx(expected, abs=1e-12)


def test_the_teacher_is_detached_in_the_student_loss() -> None:
    student = fixed_logits(4, 6, seed=3).requires_grad_(True)
    teacher = fixed_logits(4, 6, seed=4).requires_grad_(True)
    soft_cross_entropy(student, teacher, 4.0).backward()
    assert teacher.grad is None and student.grad is not None


def test_the_known_wrong_port_behaviours_give_other_numbers() -> None:
    """Unit-L2 normalisation in place of standardisation, and the teacher's class probabilities
    softened by T inside the CE: neither is the colab's formula, and both change the numbers."""
    logits = fixed_logits(8, 10, seed=5)
    unit = logits / logits.norm(dim=-1, keepdim=True)
    l2_version = (torch.logsumexp(unit @ unit.T, dim=-1).mean() - 1.0 - math.log(8)).item()
    assert abs(auxiliary_loss(logits, 1.0).item() - l2_version) > 1e-3

    classes, temperature = 2, 4.0
    student, teacher = fixed_logits(8, 10, seed=6), fixed_logits(8, 10, seed=7)
    ours = soft_cross_entropy(student, teacher, temperature).item()
    class_targets = torch.softmax(class_logits_of(teacher, classes) / temperature, dim=-1)
    student_class = torch.log_softmax(class_logits_of(student, classes) / temperature, dim=-1)
    wrong = (-(class_targets * student_class).sum(-1).mean() * temperature**2).item()
    assert abs(ours - wrong) > 1e-3


def test_the_head_gives_class_logits_as_summed_subclass_probabilities_and_keeps_the_stage_view() -> None:
    torch.manual_seed(0)
    model = create_model_with_head("course_cnn", 3, (1, 12, 12), 4).double().eval()
    plain = create_model("course_cnn", 3, (1, 12, 12))
    images = torch.randn(5, 1, 12, 12, dtype=torch.float64)
    features = model.forward_features(images)
    assert features.subclass_logits.shape == (5, 12) and features.logits.shape == (5, 3)
    summed = torch.softmax(features.subclass_logits, -1).reshape(5, 3, 4).sum(-1)
    assert torch.allclose(torch.softmax(features.logits, -1), summed, atol=1e-12)
    assert torch.equal(model(images), features.logits)
    assert model.feature_info == plain.feature_info and model.embedding_dim == plain.embedding_dim
    assert [f.shape for f in features.stages] == [f.shape for f in plain.double().forward_features(images).stages]


def test_head_subclasses_reads_a_runs_terms() -> None:
    assert head_subclasses((("subclass_teacher", {"subclasses": 5, "weight": 1.0}),)) == 5
    assert head_subclasses((("subclass", {"subclasses": 3}),)) == 3
    assert head_subclasses((("kd", {"temperature": 4.0}),)) is None


def test_the_binary_digits_suite_trains_teacher_subclass_kd_and_scratch_through_kdbench_run(tmp_path, capsys) -> None:
    from pathlib import Path

    from kdbench.cli import main
    from kdbench.results.store import ResultStore
    from kdbench.suite import load_suite, plan

    suite = Path(__file__).resolve().parents[2] / "suites" / "subclass-mnist-binary-digits.yaml"
    overrides = ["schedule.epochs=1", "seeds=[0]", "schedule.batch_size=128"]
    code = main(["run", str(suite), "--results-dir", str(tmp_path), "--quiet", *overrides])
    out = capsys.readouterr().out
    assert code == 0, out
    runs = plan(load_suite(suite, overrides)).runs
    store = ResultStore(tmp_path)
    teacher = next(spec for spec in runs if spec.kind == "teacher")
    weights = torch.load(store.run_dir(teacher.run_id) / "model.pt", weights_only=False)["model"]
    assert weights["classifier.1.weight"].shape[0] == 2 * 5  # the teacher's subclass head: 2 classes x 5
    for spec in runs:
        result = store.result(spec.run_id)
        assert result is not None and 0 <= result["top1_last"] <= 100
        # every metric on the class logits: 2 classes, whatever the head
        assert len(result["confusion_last"]) == 2 and len(result["per_class_f1_last"]) == 2
    assert "Subclass distillation's ordering Teacher > Subclass > KD > Vanilla" in out
