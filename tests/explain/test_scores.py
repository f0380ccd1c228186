"""The similarity scores on constructed maps with known answers, and against scipy in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from kdbench.explain.images import choose_images
from kdbench.explain.runner import Explained, independent_seed, score_row
from kdbench.explain.scores import (
    average_ranks,
    closer_rate,
    cosine_similarity,
    mean_and_std,
    spearman_correlation,
)
from kdbench.suite import RunSpec


def random_maps(count: int = 6, size: int = 5, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, size, size, generator=generator, dtype=torch.float64)


def test_cosine_known_answers_and_numpy() -> None:
    maps = random_maps()
    torch.testing.assert_close(cosine_similarity(maps, maps), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(cosine_similarity(maps, 3 * maps), torch.ones(6, dtype=torch.float64))
    left = torch.zeros(1, 2, 2, dtype=torch.float64)
    right = torch.zeros(1, 2, 2, dtype=torch.float64)
    left[0, 0, 0], right[0, 1, 1] = 1.0, 2.0
    assert cosine_similarity(left, right).item() == 0.0  # disjoint support
    assert cosine_similarity(torch.zeros(1, 2, 2), maps[:1, :2, :2]).item() == 0.0  # an all-zero map: 0 by convention
    other = random_maps(seed=1)
    a, b = maps.reshape(6, -1).numpy(), other.reshape(6, -1).numpy()
    expected = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    np.testing.assert_allclose(cosine_similarity(maps, other).numpy(), expected, rtol=1e-12)


def test_spearman_matches_scipy_with_ties() -> None:
    # rounded values tie often, as the zeros of a ReLU'd Grad-CAM do
    first, second = (random_maps(seed=7) * 4).round() / 4, (random_maps(seed=8) * 4).round() / 4
    got = spearman_correlation(first, second)
    for i in range(first.shape[0]):
        expected = stats.spearmanr(first[i].flatten().numpy(), second[i].flatten().numpy()).statistic
        assert got[i].item() == pytest.approx(expected, abs=1e-12)
    values = torch.tensor([0.0, 2.0, 0.0, 1.0, 2.0, 0.0], dtype=torch.float64)
    np.testing.assert_allclose(average_ranks(values).numpy(), stats.rankdata(values.numpy()))


def test_spearman_known_answers() -> None:
    maps = random_maps()
    torch.testing.assert_close(spearman_correlation(maps, maps.exp()), torch.ones(6, dtype=torch.float64))
    torch.testing.assert_close(spearman_correlation(maps, -maps), -torch.ones(6, dtype=torch.float64))
    assert spearman_correlation(torch.ones(1, 3, 3), maps[:1, :3, :3]).item() == 0.0  # a constant map


def test_closer_rate_identical_maps_and_the_tie_rule() -> None:
    teacher = random_maps(count=50, seed=2)
    independent = random_maps(count=50, seed=3)
    student = teacher.clone()  # looks exactly like the teacher
    student_similarity = cosine_similarity(teacher, student)
    independent_similarity = cosine_similarity(teacher, independent)
    torch.testing.assert_close(student_similarity, torch.ones(50, dtype=torch.float64))
    assert closer_rate(student_similarity, independent_similarity) == 1.0
    # the control on two copies of one student: every image ties, and a tie counts one half
    assert closer_rate(independent_similarity, independent_similarity.clone()) == 0.5
    # two students compared each way: the rates add up to one, so two seeds average 50% exactly
    other = cosine_similarity(teacher, random_maps(count=50, seed=4))
    assert closer_rate(independent_similarity, other) + closer_rate(other, independent_similarity) == 1.0
    assert closer_rate(torch.tensor([0.9, 0.5, 0.2, 0.7]), torch.tensor([0.8, 0.5, 0.3, 0.1])) == 0.625


def spec(method: str, seed: int) -> RunSpec:
    terms = (("vanilla", {}),) if method == "Vanilla" else (("kd", {"weight": 0.9, "temperature": 4.0}),)
    return RunSpec(
        kind="student", dataset={"name": "digits"}, schedule={}, training={}, seed=seed, student="resnet8",
        teacher=None, terms=terms, ce_weight=1.0, method=method, pair_teacher="resnet56",
    )  # fmt: skip


def explained(maps: torch.Tensor) -> Explained:
    return Explained({"gradcam": maps}, torch.ones(maps.shape[0], dtype=torch.bool), "stage3")


def test_score_row_on_constructed_models() -> None:
    teacher_maps = random_maps(count=40, seed=5)
    vanilla = {0: spec("Vanilla", 0), 1: spec("Vanilla", 1)}
    kd = {0: spec("KD", 0), 1: spec("KD", 1)}
    copy_of_vanilla = random_maps(count=40, seed=6)
    models = {
        vanilla[0].run_id: explained(copy_of_vanilla),
        vanilla[1].run_id: explained(copy_of_vanilla.clone()),  # two copies of one student
        kd[0].run_id: explained(teacher_maps.clone()),  # KD students that look exactly like the teacher
        kd[1].run_id: explained(teacher_maps * 2),
    }
    teacher = explained(teacher_maps)
    row = score_row(teacher, kd, models, vanilla, "gradcam")
    assert row["n"] == 2
    assert row["cosine"]["mean"] == pytest.approx(1.0) and row["cosine"]["std"] == pytest.approx(0.0, abs=1e-12)
    assert row["spearman"]["mean"] == pytest.approx(1.0)
    assert row["closer_rate"] == {"mean": 100.0, "std": 0.0, "n": 2}
    assert [s["independent_seed"] for s in row["seeds"]] == [1, 0]
    control = score_row(teacher, vanilla, models, vanilla, "gradcam")
    assert control["closer_rate"]["mean"] == 50.0 and control["closer_rate"]["std"] == 0.0
    direct = cosine_similarity(teacher_maps, copy_of_vanilla)
    assert control["cosine"]["mean"] == pytest.approx(float(direct.mean()))
    assert control["cosine"]["image_std"] == pytest.approx(float(direct.std()))
    # one Vanilla seed: no independent student, no rate
    lone = score_row(teacher, kd, models, {0: vanilla[0]}, "gradcam")
    assert lone["closer_rate"]["n"] == 1 and lone["seeds"][0]["closer_rate"] is None


def test_independent_seed_is_the_next_vanilla_seed_wrapping_around() -> None:
    assert [independent_seed(s, [0, 1, 2]) for s in (0, 1, 2)] == [1, 2, 0]
    assert independent_seed(5, [0, 1]) == 0
    assert independent_seed(0, [0]) is None
    assert mean_and_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert mean_and_std([4.0]) == (4.0, None)


def test_images_are_seeded_and_class_balanced() -> None:
    labels = torch.tensor([c for c in range(5) for _ in range(7)] + [5, 5])  # class 5 has two images
    chosen = choose_images(labels, 20, seed=3)
    assert torch.equal(chosen, choose_images(labels, 20, seed=3))
    assert not torch.equal(chosen, choose_images(labels, 20, seed=4))
    assert len(set(chosen.tolist())) == 20
    counts = torch.bincount(labels[chosen], minlength=6)
    assert counts[5] == 2 and counts[:5].max() - counts[:5].min() <= 1
    assert len(set(labels[chosen[:6]].tolist())) == 6  # the first images (a grid) show different classes
    assert len(choose_images(labels, 100)) == len(labels)


def test_inputs_are_normalised_as_the_test_loader_does() -> None:
    from kdbench.data.base import Split, TensorBatches
    from kdbench.explain.runner import normalise

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 4, 4), generator=generator, dtype=torch.uint8)
    mean, std = (0.2, 0.5, 0.7), (0.3, 0.25, 0.2)
    batches = TensorBatches(Split(images, torch.zeros(6, dtype=torch.long)), batch_size=6, mean=mean, std=std)
    loaded = next(iter(batches.epoch(0)))[0]
    torch.testing.assert_close(normalise(images, mean, std), loaded, rtol=1e-6, atol=1e-6)
