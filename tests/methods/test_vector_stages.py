"""A network whose stages are vectors (the course project's fully connected student): every method
either distils into it or says at plan time that it does not apply, never fails in training."""

from __future__ import annotations

import pytest
import torch

from kdbench.methods import METHODS, create_distiller
from kdbench.models import create_model, model_feature_info

SHAPE = (3, 8, 8)


@pytest.mark.parametrize("name", METHODS.names())
def test_a_method_on_a_fully_connected_student_trains_or_is_na(name: str) -> None:
    teacher_info = model_feature_info("course_cnn", 10)
    torch.manual_seed(0)
    teacher, student = create_model("course_cnn", 10, SHAPE), create_model("course_mlp", 10, SHAPE)
    student_info = tuple(student.feature_info)
    assert not any(s.spatial for s in student_info) and all(s.spatial for s in teacher_info)
    reason = METHODS.get(name).not_applicable(teacher_info, student_info, {})
    if reason is not None:
        assert "vectors" in reason or "channels" in reason or "stage" in reason, reason
        pytest.skip(f"NA: {reason}")
    data_facts = {"train_labels": torch.arange(16) % 10} if METHODS.get(name).data_facts else {}
    distiller = create_distiller(student, teacher.eval(), [(name, {})], data_facts=data_facts).train()
    images, labels = torch.rand(4, *SHAPE), torch.arange(4)
    extra = {"indices": torch.arange(4)} if METHODS.get(name).needs_indices else {}
    _, losses = distiller(images, labels, **extra)
    if distiller.init_epochs():
        losses.update(distiller.init_forward(images))
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
