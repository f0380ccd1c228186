"""CRD against an independent float64 computation; its sampling, memory banks and state."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import batch, build_pair

from kdbench.methods import METHODS, create_distiller

# a tiny training set: 12 images of 3 classes, the batch is images 0, 5, 7, 10
TRAIN_LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])
INDICES = torch.tensor([0, 5, 7, 10])


def crd_term(
    nce_k: int = 5, mode: str = "exact", seed: int = 0, labels: torch.Tensor = TRAIN_LABELS
) -> torch.nn.Module:
    teacher, student = build_pair("resnet8x4", "resnet8")
    torch.manual_seed(seed)
    term = METHODS.get("crd")(teacher, student, labels, nce_k=nce_k, feat_dim=8, mode=mode)
    return term.double().train(), teacher.double().eval(), student.double().train()


def unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def embed(linear: torch.nn.Linear, features: torch.Tensor) -> list[list[float]]:
    w, b = linear.weight.tolist(), linear.bias.tolist()
    return [
        unit([sum(wi * xi for wi, xi in zip(row, x, strict=True)) + bi for row, bi in zip(w, b, strict=True)])
        for x in features.tolist()
    ]


def nce_reference(scores: list[list[float]], bank_size: int) -> float:
    k = len(scores[0]) - 1
    noise = k / bank_size
    total = 0.0
    for row in scores:
        total += math.log(row[0] / (row[0] + noise + 1e-7))
        total += sum(math.log(noise / (p + noise + 1e-7)) for p in row[1:])
    return -total / len(scores)


def test_crd_loss_and_memory_update_match_an_independent_computation() -> None:
    term, teacher, student = crd_term()
    images, _ = batch(dtype=torch.float64)
    labels = TRAIN_LABELS[INDICES]
    with torch.no_grad():
        s, t = student.forward_features(images), teacher.forward_features(images)
    rows = term.contrast_indices(labels, INDICES).tolist()  # the draws the forward will make (same counter)
    bank_s, bank_t = term.memory_student.clone(), term.memory_teacher.clone()
    e_s, e_t = embed(term.embed_student, s.embedding), embed(term.embed_teacher, t.embedding)

    def scores(bank: torch.Tensor, anchors: list[list[float]]) -> list[list[float]]:
        return [
            [math.exp(sum(a * m for a, m in zip(anchor, bank[j].tolist(), strict=True)) / 0.07) for j in row]
            for anchor, row in zip(anchors, rows, strict=True)
        ]

    student_side, teacher_side = scores(bank_t, e_s), scores(bank_s, e_t)
    z_student = sum(map(sum, student_side)) / (4 * 6) * 12  # mean score times the bank size
    z_teacher = sum(map(sum, teacher_side)) / (4 * 6) * 12
    expected = nce_reference([[p / z_student for p in r] for r in student_side], 12)
    expected += nce_reference([[p / z_teacher for p in r] for r in teacher_side], 12)

    loss = term(s, t, labels, indices=INDICES)["crd"]
    assert math.isclose(loss.item(), 0.8 * expected, rel_tol=1e-10)
    assert torch.allclose(term.normalisers, torch.tensor([z_student, z_teacher], dtype=torch.float64), rtol=1e-12)
    for bank_before, bank_after, embeddings in ((bank_s, term.memory_student, e_s), (bank_t, term.memory_teacher, e_t)):
        for i, index in enumerate(INDICES.tolist()):
            moved = unit([0.5 * m + 0.5 * e for m, e in zip(bank_before[index].tolist(), embeddings[i], strict=True)])
            assert torch.allclose(bank_after[index], torch.tensor(moved, dtype=torch.float64), rtol=1e-12)
        untouched = [j for j in range(12) if j not in INDICES.tolist()]
        assert torch.equal(bank_after[untouched], bank_before[untouched])

    # the next batch keeps the first batch's normalisers
    z = term.normalisers.clone()
    term(s, t, labels, indices=INDICES)
    assert torch.equal(term.normalisers, z)


def test_crd_defaults_are_the_code_s() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    distiller = create_distiller(student, teacher, [("crd", {})], data_facts={"train_labels": TRAIN_LABELS})
    crd = distiller.terms["crd"]
    assert distiller.ce_weight == 1.0 and distiller.needs_indices
    assert (crd.weight, crd.nce_k, crd.nce_t, crd.nce_m, crd.mode) == (0.8, 16384, 0.07, 0.5, "exact")
    assert crd.memory_student.shape == crd.memory_teacher.shape == (12, 128)
    stdv = 1 / math.sqrt(128 / 3)
    assert crd.memory_student.abs().max() <= stdv and crd.memory_teacher.abs().max() <= stdv
    assert not set(crd.parameter_defaults()) & {"train_labels"}  # a data fact, not a suite parameter
    with pytest.raises(ValueError, match="index"):
        distiller(*batch())  # a bound bank refuses to guess the images' identity
    assert METHODS.get("crd").parameter_problems({"mode": "exactly"})


@pytest.mark.parametrize("mode", ["exact", "relax"])
def test_crd_samples_negatives_from_other_classes_without_replacement(mode: str) -> None:
    term, _, _ = crd_term(nce_k=7, mode=mode)
    labels = TRAIN_LABELS[INDICES]
    seen = set()
    for draw in range(30):
        term.draws = draw
        rows = term.contrast_indices(labels, INDICES)
        assert rows.shape == (4, 8)
        for row, label, index in zip(rows.tolist(), labels.tolist(), INDICES.tolist(), strict=True):
            positive, negatives = row[0], row[1:]
            assert positive == index if mode == "exact" else TRAIN_LABELS[positive] == label
            assert all(TRAIN_LABELS[j] != label for j in negatives)
            assert len(set(negatives)) == 7  # 8 images of other classes: without replacement
            seen.update(negatives)
    assert seen == set(range(12))
    term.draws = 3
    assert torch.equal(term.contrast_indices(labels, INDICES), term.contrast_indices(labels, INDICES))


def test_crd_samples_with_replacement_where_a_class_has_too_few_others() -> None:
    labels = torch.tensor([0] * 9 + [1, 2, 2])  # class 0 has 3 others, classes 1 and 2 have 10 and 9
    term, _, _ = crd_term(nce_k=5, labels=labels)
    assert term.sampler.replacement == "mixed"
    rows = term.contrast_indices(labels[INDICES], INDICES)
    for row, label in zip(rows.tolist(), labels[INDICES].tolist(), strict=True):
        assert all(labels[j] != label for j in row[1:])
    rows = torch.cat([term.contrast_indices(labels[INDICES], INDICES) for term.draws in range(20)])
    class_zero = rows[labels[INDICES].repeat(20) == 0, 1:]
    assert set(class_zero.flatten().tolist()) == {9, 10, 11}


def test_crd_state_dict_restores_banks_normalisers_and_the_sampler() -> None:
    term, teacher, student = crd_term()
    images, _ = batch(dtype=torch.float64)
    labels = TRAIN_LABELS[INDICES]
    with torch.no_grad():
        s, t = student.forward_features(images), teacher.forward_features(images)
    term(s, t, labels, indices=INDICES)
    state = term.state_dict()
    assert {"memory_student", "memory_teacher", "normalisers", "_extra_state"} <= set(state)
    assert not any(key.startswith("sampler_") for key in state)  # derived from the labels, not saved
    fresh, _, _ = crd_term(seed=1)
    fresh.load_state_dict(state)
    assert (fresh.sampler_seed, fresh.draws) == (term.sampler_seed, term.draws) == (term.sampler_seed, 1)
    assert torch.equal(fresh(s, t, labels, indices=INDICES)["crd"], term(s, t, labels, indices=INDICES)["crd"])
    assert torch.equal(fresh.memory_student, term.memory_student)
