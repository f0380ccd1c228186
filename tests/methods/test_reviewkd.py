"""ReviewKD against an independent float64 computation of the review path and the HCL loss.

The reference below rebuilds the fusion from the ABF modules' weights with plain operations (BN from
its definition, 1x1 convs as sums over channels, nearest resizing by index arithmetic, pooling by
block means) and the hierarchical context loss as explicit sums.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from method_helpers import batch_norm_train, block_mean_pool, conv1x1

from kdbench.methods import METHODS
from kdbench.methods.reviewkd import ReviewKD
from kdbench.models import create_model, model_feature_info


def nearest(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour resize: output index j reads input index floor(j * in / out)."""
    index = [math.floor(j * x.shape[2] / size) for j in range(size)]
    return x[:, :, index][:, :, :, index]


def mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).sum()) / a.numel()


def hcl_reference(students: list[torch.Tensor], teachers: list[torch.Tensor]) -> float:
    total = 0.0
    for s, t in zip(students, teachers, strict=True):
        side = s.shape[2]
        parts = [(1.0, mse(s, t))]
        for size in (4, 2, 1):
            if size < side:
                parts.append((0.5 ** len(parts), mse(block_mean_pool(s, size), block_mean_pool(t, size))))
        total += sum(w * v for w, v in parts) / sum(w for w, _ in parts)
    return total


def review_reference(term: ReviewKD, levels: list[torch.Tensor], sizes: list[int]) -> list[torch.Tensor]:
    outputs: list[torch.Tensor] = [None] * len(levels)  # type: ignore[list-item]
    below = None
    for i in reversed(range(len(levels))):
        fusion = term.fusions[i]
        x = batch_norm_train(conv1x1(levels[i], fusion.reduce[0]), fusion.reduce[1])
        if below is not None:
            below = nearest(below, x.shape[2])
            logits = conv1x1(torch.cat([x, below], dim=1), fusion.attention[0])
            attention = 1 / (1 + torch.exp(-logits))
            x = x * attention[:, 0:1] + below * attention[:, 1:2]
        if x.shape[2] != sizes[i]:
            x = nearest(x, sizes[i])
        conv = fusion.output[0]
        outputs[i] = batch_norm_train(F.conv2d(x, conv.weight, padding=1), fusion.output[1])
        below = x
    return outputs


@pytest.mark.parametrize(
    "teacher_name,student_name,image", [("resnet8x4", "resnet8", 8), ("resnet32x4", "ShuffleV1", 16)]
)
def test_reviewkd_is_hcl_of_the_reviewed_student_levels(teacher_name: str, student_name: str, image: int) -> None:
    torch.manual_seed(0)
    teacher = create_model(teacher_name, 10).double().eval()
    student = create_model(student_name, 10).double().train()
    term = ReviewKD(teacher, student).double().train()
    images = torch.randn(3, 3, image, image, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        s_features, t_features = student.forward_features(images), teacher.forward_features(images)
        targets = [*t_features.preact, t_features.embedding[:, :, None, None]]
        levels = [*s_features.stages, s_features.embedding[:, :, None, None]]
        outputs = review_reference(term, levels, [t.shape[2] for t in targets])
        assert [o.shape for o in outputs] == [t.shape for t in targets]
        loss = term(s_features, t_features, torch.zeros(3, dtype=torch.long))["reviewkd"]
    assert math.isclose(float(loss), hcl_reference(outputs, targets), rel_tol=1e-9)
    # mid width: min(512, the student's embedding width), as the reference
    assert term.fusions[0].reduce[0].out_channels == min(512, student.embedding_dim)
    assert term.fusions[-1].attention is None


def test_reviewkd_is_na_where_stage_counts_differ() -> None:
    reason = METHODS.get("reviewkd").not_applicable(model_feature_info("vgg13"), model_feature_info("resnet8"), {})
    assert reason and "stages" in reason
