"""Each method's loss against an independent computation written here from the formula (float64).

The references loop over samples, positions and pairs where the implementation vectorises, and
use plain definitions (norms of differences, explicit softmax) where it uses identities.
"""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import BATCH, batch, batch_norm_train, block_mean_pool, build_pair, conv1x1

from kdbench.methods import METHODS, create_distiller
from kdbench.methods.at import attention_loss
from kdbench.methods.connectors import ConvReg
from kdbench.methods.kd import kd_loss
from kdbench.methods.nst import nst_loss
from kdbench.methods.pkt import pkt_loss
from kdbench.models.base import Features, StagedModel


def double_pair(teacher_name: str = "resnet8x4", student_name: str = "resnet8") -> tuple[StagedModel, StagedModel]:
    teacher, student = build_pair(teacher_name, student_name)
    return teacher.double().eval(), student.double().train()


def features(teacher: StagedModel, student: StagedModel, seed: int = 1) -> tuple[Features, Features]:
    images, _ = batch(seed=seed, dtype=torch.float64)
    with torch.no_grad():  # values only: differentiability is the contract tests' job
        return student.forward_features(images), teacher.forward_features(images)


def term(name: str, teacher: StagedModel, student: StagedModel, **params: object) -> torch.nn.Module:
    return METHODS.get(name)(teacher, student, **params).double().train()


def close(actual: torch.Tensor, expected: float | torch.Tensor) -> bool:
    return torch.allclose(actual.detach(), torch.as_tensor(expected, dtype=actual.dtype), rtol=1e-9, atol=1e-12)


def smooth_l1(differences: list[float]) -> float:
    return sum(0.5 * d * d if abs(d) < 1 else abs(d) - 0.5 for d in differences) / len(differences)


def pool_to_smaller(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    size = min(a.shape[2], b.shape[2])
    return block_mean_pool(a, size), block_mean_pool(b, size)


LABELS = torch.zeros(BATCH, dtype=torch.long)


# -- KD -------------------------------------------------------------------------------------------
def test_kd_is_batchmean_kl_times_temperature_squared() -> None:
    generator = torch.Generator().manual_seed(0)
    student_logits = torch.randn(BATCH, 7, generator=generator, dtype=torch.float64)
    teacher_logits = torch.randn(BATCH, 7, generator=generator, dtype=torch.float64)
    temperature = 4.0
    total = 0.0
    for b in range(BATCH):
        exp_s = [math.exp(z / temperature) for z in student_logits[b].tolist()]
        exp_t = [math.exp(z / temperature) for z in teacher_logits[b].tolist()]
        p_s = [e / sum(exp_s) for e in exp_s]
        p_t = [e / sum(exp_t) for e in exp_t]
        total += sum(t * (math.log(t) - math.log(s)) for s, t in zip(p_s, p_t, strict=True))
    expected = total / BATCH * temperature**2
    assert close(kd_loss(student_logits, teacher_logits, temperature), expected)

    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)
    student_features.logits, teacher_features.logits = student_logits, teacher_logits
    losses = term("kd", teacher, student)(student_features, teacher_features, LABELS)
    assert close(losses["kd"], 0.9 * expected)


def test_kd_alone_weighs_ce_by_its_gamma() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    images, labels = batch()
    distiller = create_distiller(student, teacher, [("kd", {})])
    logits, losses = distiller(images, labels)
    assert distiller.ce_weight == 0.1
    assert torch.allclose(losses["ce"], 0.1 * torch.nn.functional.cross_entropy(logits, labels))


def test_combination_adds_terms_each_with_its_own_weight() -> None:
    teacher, student = double_pair()
    images, labels = batch(dtype=torch.float64)
    distiller = create_distiller(student, teacher, [("kd", {}), ("at", {"weight": 7.0})])
    _, losses = distiller(images, labels)
    assert set(losses) == {"ce", "kd", "at"}
    student_features, teacher_features = features(teacher, student)
    assert close(losses["kd"], 0.9 * kd_loss(student_features.logits, teacher_features.logits, 4.0))
    at = sum(attention_loss(s, t, 2) for s, t in zip(student_features.stages, teacher_features.stages, strict=True))
    assert close(losses["at"], 7.0 * at)


# -- FitNet ---------------------------------------------------------------------------------------
def test_fitnet_is_mse_after_conv_bn_relu_regressor_on_stage_two() -> None:
    teacher, student = double_pair()
    fitnet = term("fitnet", teacher, student)
    student_features, teacher_features = features(teacher, student)
    regressor = fitnet.regressor
    assert regressor.conv.kernel_size == (1, 1)  # same spatial size at stage 2
    hint = batch_norm_train(conv1x1(student_features.stages[1], regressor.conv), regressor.bn).clamp(min=0)
    target = teacher_features.stages[1]
    expected = ((hint - target) ** 2).sum() / target.numel()
    assert close(fitnet(student_features, teacher_features, LABELS)["fitnet"], 100 * expected)


@pytest.mark.parametrize(
    "student_size,teacher_size,kind",
    [(8, 8, "Conv2d"), (16, 8, "Conv2d"), (8, 16, "ConvTranspose2d"), (12, 8, "Conv2d"), (8, 4, "Conv2d")],
)
def test_conv_regressor_maps_student_size_to_teacher_size(student_size: int, teacher_size: int, kind: str) -> None:
    regressor = ConvReg(3, student_size, 5, teacher_size)
    assert type(regressor.conv).__name__ == kind
    out = regressor(torch.randn(2, 3, student_size, student_size))
    assert out.shape == (2, 5, teacher_size, teacher_size)
    assert (out >= 0).all()


def test_conv_regressor_refuses_what_the_reference_refuses() -> None:
    with pytest.raises(ValueError, match="upsample"):
        ConvReg(3, 4, 5, 16)


# -- AT -------------------------------------------------------------------------------------------
def attention_reference(feature_map: torch.Tensor) -> torch.Tensor:
    """Per sample: channel mean of the squared activations at each position, over its L2 norm."""
    rows = []
    for sample in feature_map:
        values = torch.stack(
            [(sample[:, h, w] ** 2).mean() for h in range(sample.shape[1]) for w in range(sample.shape[2])]
        )
        rows.append(values / max(values.norm(), 1e-12))
    return torch.stack(rows)


def test_at_sums_squared_attention_differences_over_stages() -> None:
    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)
    expected = 0.0
    for s, t in zip(student_features.stages, teacher_features.stages, strict=True):
        expected += ((attention_reference(s) - attention_reference(t)) ** 2).mean()
    losses = term("at", teacher, student)(student_features, teacher_features, LABELS)
    assert close(losses["at"], 1000 * expected)


def test_at_pools_the_larger_map() -> None:
    generator = torch.Generator().manual_seed(3)
    large = torch.randn(2, 3, 8, 8, generator=generator, dtype=torch.float64)
    small = torch.randn(2, 5, 4, 4, generator=generator, dtype=torch.float64)
    expected = ((attention_reference(block_mean_pool(large, 4)) - attention_reference(small)) ** 2).mean()
    assert close(attention_loss(large, small, 2), expected)
    assert close(attention_loss(small, large, 2), expected)


# -- SP -------------------------------------------------------------------------------------------
def test_sp_compares_row_normalised_batch_gram_matrices() -> None:
    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)

    def gram(feature_map: torch.Tensor) -> list[list[float]]:
        flat = [sample.flatten() for sample in feature_map]
        rows = [[float(torch.dot(a, b)) for b in flat] for a in flat]
        return [[v / max(math.sqrt(sum(x * x for x in row)), 1e-12) for v in row] for row in rows]

    g_s, g_t = gram(student_features.stages[-1]), gram(teacher_features.stages[-1])
    expected = sum((g_t[i][j] - g_s[i][j]) ** 2 for i in range(BATCH) for j in range(BATCH)) / BATCH**2
    losses = term("sp", teacher, student)(student_features, teacher_features, LABELS)
    assert close(losses["sp"], 3000 * expected)


# -- CC -------------------------------------------------------------------------------------------
def test_cc_correlates_consecutive_embedding_differences() -> None:
    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)
    cc = term("cc", teacher, student)
    assert cc.embed_student.out_features == cc.embed_teacher.out_features == 128
    e_s = student_features.embedding @ cc.embed_student.weight.t() + cc.embed_student.bias
    e_t = teacher_features.embedding @ cc.embed_teacher.weight.t() + cc.embed_teacher.bias
    delta = (e_s - e_t).abs().detach()
    expected = sum(float(torch.dot(delta[i], delta[i + 1])) for i in range(BATCH - 1)) / (BATCH - 1)
    assert close(cc(student_features, teacher_features, LABELS)["cc"], 0.02 * expected)


# -- RKD ------------------------------------------------------------------------------------------
def rkd_reference(student: torch.Tensor, teacher: torch.Tensor) -> float:
    def distances(e: torch.Tensor) -> list[float]:
        values = [float((e[i] - e[j]).norm()) if i != j else 0.0 for i in range(len(e)) for j in range(len(e))]
        mean = sum(v for v in values if v > 0) / sum(1 for v in values if v > 0)
        return [v / mean for v in values]

    def angles(e: torch.Tensor) -> list[float]:
        def unit(v: torch.Tensor) -> torch.Tensor:
            return v / max(float(v.norm()), 1e-12)

        n = len(e)
        return [
            float(torch.dot(unit(e[j] - e[i]), unit(e[k] - e[i]))) for i in range(n) for j in range(n) for k in range(n)
        ]

    distance = smooth_l1([s - t for s, t in zip(distances(student), distances(teacher), strict=True)])
    angle = smooth_l1([s - t for s, t in zip(angles(student), angles(teacher), strict=True)])
    return 25 * distance + 50 * angle


def test_rkd_is_weighted_distance_and_angle_smooth_l1() -> None:
    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)
    expected = rkd_reference(student_features.embedding, teacher_features.embedding)
    losses = term("rkd", teacher, student)(student_features, teacher_features, LABELS)
    assert torch.allclose(losses["rkd"].detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-7)


# -- PKT ------------------------------------------------------------------------------------------
def pkt_reference(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> float:
    def distribution(e: torch.Tensor) -> list[list[float]]:
        units = [v / (float(v.norm()) + eps) for v in e]
        rows = [[(float(torch.dot(a, b)) + 1) / 2 for b in units] for a in units]
        return [[v / sum(row) for v in row] for row in rows]

    p_s, p_t = distribution(student), distribution(teacher)
    n = len(p_s)
    terms = [p_t[i][j] * math.log((p_t[i][j] + eps) / (p_s[i][j] + eps)) for i in range(n) for j in range(n)]
    return sum(terms) / len(terms)


def test_pkt_is_kl_of_cosine_similarity_distributions() -> None:
    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)
    expected = pkt_reference(student_features.embedding, teacher_features.embedding)
    losses = term("pkt", teacher, student)(student_features, teacher_features, LABELS)
    assert torch.allclose(losses["pkt"].detach(), torch.tensor(30000 * expected, dtype=torch.float64), rtol=1e-9)


def test_pkt_computes_in_float64_for_float32_features() -> None:
    generator = torch.Generator().manual_seed(4)
    student = torch.rand(8, 16, generator=generator)
    teacher = student + 1e-3 * torch.rand(8, 16, generator=generator)  # a realistic, tiny loss
    expected = pkt_reference(student.double(), teacher.double())
    loss = pkt_loss(student, teacher)
    assert loss.dtype == torch.float32
    assert 0 < expected < 1e-5
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)


# -- FSP ------------------------------------------------------------------------------------------
def fsp_reference(student_maps: list[torch.Tensor], teacher_maps: list[torch.Tensor]) -> float:
    def matrices(maps: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for k in range(len(maps) - 1):
            bottom, top = pool_to_smaller(maps[k], maps[k + 1])
            positions = bottom.shape[2] * bottom.shape[3]
            g = torch.zeros(bottom.shape[0], top.shape[1], bottom.shape[1], dtype=torch.float64)
            for i in range(top.shape[1]):
                for j in range(bottom.shape[1]):
                    g[:, i, j] = (top[:, i] * bottom[:, j]).flatten(1).sum(1) / positions
            out.append(g)
        return out

    return sum(
        float(((s - t) ** 2).mean()) for s, t in zip(matrices(student_maps), matrices(teacher_maps), strict=True)
    )


def test_fsp_is_init_only_by_default_with_unweighted_flow_matrix_loss() -> None:
    teacher, student = double_pair("resnet8", "resnet8")
    student_features, teacher_features = features(teacher, student)
    expected = fsp_reference(
        [student_features.stem, *student_features.stages], [teacher_features.stem, *teacher_features.stages]
    )
    fsp = term("fsp", teacher, student)
    assert fsp.init_epochs() == 30
    assert fsp(student_features, teacher_features, LABELS) == {}  # the CRD main stage: CE only
    assert close(fsp.init_loss(student_features, teacher_features)["fsp_init"], expected)
    weighted = term("fsp", teacher, student, weight=50.0, init_weight=2.0)
    assert close(weighted(student_features, teacher_features, LABELS)["fsp"], 50 * expected)
    assert close(weighted.init_loss(student_features, teacher_features)["fsp_init"], 2 * expected)


# -- NST ------------------------------------------------------------------------------------------
def nst_reference(student_map: torch.Tensor, teacher_map: torch.Tensor) -> float:
    student_map, teacher_map = pool_to_smaller(student_map, teacher_map)

    def units(feature_map: torch.Tensor) -> torch.Tensor:
        flat = feature_map.flatten(2)
        return flat / flat.norm(dim=2, keepdim=True).clamp(min=1e-12)

    def kernel_mean(a: torch.Tensor, b: torch.Tensor) -> float:
        values = [
            float(torch.dot(a[n, i], b[n, j])) ** 2
            for n in range(len(a))
            for i in range(a.shape[1])
            for j in range(b.shape[1])
        ]
        return sum(values) / len(values)

    s, t = units(student_map), units(teacher_map)
    return kernel_mean(t, t) + kernel_mean(s, s) - 2 * kernel_mean(s, t)


def test_nst_is_polynomial_mmd_summed_over_stages() -> None:
    teacher, student = double_pair("resnet8", "resnet8")  # small channel counts keep the loops short
    student_features, teacher_features = features(teacher, student)
    expected = sum(nst_reference(s, t) for s, t in zip(student_features.stages, teacher_features.stages, strict=True))
    losses = term("nst", teacher, student)(student_features, teacher_features, LABELS)
    assert close(losses["nst"], 50 * expected)


def test_nst_pools_the_larger_map() -> None:
    generator = torch.Generator().manual_seed(5)
    small = torch.randn(2, 3, 2, 2, generator=generator, dtype=torch.float64)
    large = torch.randn(2, 4, 4, 4, generator=generator, dtype=torch.float64)
    assert close(nst_loss(small, large), nst_reference(small, large))


# -- M-FitNet -------------------------------------------------------------------------------------
def test_mfitnet_hints_every_stage_against_the_teachers_own_features() -> None:
    teacher, student = double_pair()
    student_features, teacher_features = features(teacher, student)
    mfitnet = term("mfitnet", teacher, student)
    expected = 0.0
    for index, (s, t) in enumerate(zip(student_features.stages, teacher_features.stages, strict=True), start=1):
        conv, bn = mfitnet.adapters[str(index)]
        adapted = batch_norm_train(conv1x1(s, conv), bn)
        expected += ((adapted - t) ** 2).mean()
    assert close(mfitnet(student_features, teacher_features, LABELS)["mfitnet"], 0.1 * expected)
