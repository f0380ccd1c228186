"""SRKD: stage reset inputs, stage selection, the width bridge, gradients, and its relation to M-FitNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from method_helpers import BATCH, batch, batch_norm_train, build_pair, conv1x1

from kdbench.methods import create_distiller
from kdbench.methods.mfitnet import MFitNet
from kdbench.methods.srkd import SRKD, StageOutOfRange, select_stages
from kdbench.models import model_feature_info
from kdbench.models.base import StagedModel

LABELS = torch.zeros(BATCH, dtype=torch.long)


def record_stage_inputs(model: StagedModel) -> tuple[dict[int, list[torch.Tensor]], list]:
    """Hooks that record what each stage of ``model`` receives."""
    received: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(model.stages))}
    handles = [
        stage.register_forward_pre_hook(lambda module, args, i=i: received[i].append(args[0]))
        for i, stage in enumerate(model.stages)
    ]
    return received, handles


def adapter_reference(srkd: SRKD, index: int, feature_map: torch.Tensor) -> torch.Tensor:
    conv, bn = srkd.adapters[str(index)]
    return batch_norm_train(conv1x1(feature_map, conv), bn)


def test_teacher_stage_receives_exactly_the_students_stage_input() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    srkd = SRKD(teacher, student)
    images, _ = batch()
    student_features = student.forward_features(images)
    received, handles = record_stage_inputs(teacher)
    srkd(student_features, None, LABELS)  # every stage reset: the teacher's image-side features are not read
    for handle in handles:
        handle.remove()
    student_inputs = [student_features.stem, *student_features.stages[:-1]]
    for i, student_input in enumerate(student_inputs):
        assert len(received[i]) == 1
        assert received[i][0] is student_input


def test_srkd_loss_matches_the_formula() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8x4")
    teacher, student = teacher.double().eval(), student.double().train()
    srkd = SRKD(teacher, student).double()
    images, _ = batch(dtype=torch.float64)
    student_features = student.forward_features(images)
    inputs = [student_features.stem, *student_features.stages]
    expected = 0.0
    with torch.no_grad():
        for i in range(1, len(inputs)):
            target = teacher.stages[i - 1](inputs[i - 1])
            expected += ((adapter_reference(srkd, i, inputs[i]) - target) ** 2).mean()
    loss = srkd(student_features, None, LABELS)["srkd"]
    assert torch.allclose(loss.detach(), 0.1 * expected, rtol=1e-9, atol=0)


def test_select_stages_forms() -> None:
    stages = [1, 2, 3]
    assert select_stages(None, stages, "k") == [1, 2, 3]
    assert select_stages("all", stages, "k") == [1, 2, 3]
    assert select_stages("none", stages, "k") == []
    assert select_stages(0, stages, "k") == []
    assert select_stages(1, stages, "k") == [3]
    assert select_stages(2, stages, "k") == [2, 3]
    assert select_stages([3, 1], stages, "k") == [1, 3]
    assert select_stages(1, [1, 2], "k") == [2]  # the last of the candidates
    for bad in ("first", -1, True, [0], [1.5], {"a": 1}):
        with pytest.raises(ValueError, match="k"):
            select_stages(bad, stages, "k")
    for missing in (4, [4]):
        with pytest.raises(StageOutOfRange):
            select_stages(missing, stages, "k")


def test_reset_stages_picks_from_the_last_stage_backwards_and_keeps_the_other_hints() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    srkd = SRKD(teacher, student, reset_stages=1)
    assert srkd.stages == [1, 2, 3] and srkd.reset_stages == [3]
    assert sorted(srkd.adapters) == ["1", "2", "3"]
    images, _ = batch()
    with torch.no_grad():
        teacher_features = teacher.forward_features(images)
    student_features = student.forward_features(images)
    received, handles = record_stage_inputs(teacher)
    srkd(student_features, teacher_features, LABELS)
    for handle in handles:
        handle.remove()
    assert [len(received[i]) for i in range(3)] == [0, 0, 1]
    assert received[2][0] is student_features.stages[1]

    only_last = SRKD(teacher, student, stages=[3])
    assert sorted(only_last.adapters) == ["3"]
    received, handles = record_stage_inputs(teacher)
    loss = only_last(student_features, None, LABELS)["srkd"]
    for handle in handles:
        handle.remove()
    assert [len(received[i]) for i in range(3)] == [0, 0, 1]
    with torch.no_grad():
        target = teacher.stages[2](student_features.stages[1])
    expected = ((adapter_reference(only_last, 3, student_features.stages[2]) - target) ** 2).mean()
    assert torch.allclose(loss, 0.1 * expected, rtol=1e-5)


def test_no_reset_is_mfitnet() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")
    srkd = SRKD(teacher, student, reset_stages=0)
    mfitnet = MFitNet(teacher, student)
    mfitnet.load_state_dict(srkd.state_dict())
    images, _ = batch()
    with torch.no_grad():
        teacher_features = teacher.forward_features(images)
    student_features = student.forward_features(images)
    received, handles = record_stage_inputs(teacher)
    srkd_loss = srkd(student_features, teacher_features, LABELS)["srkd"]
    mfitnet_loss = mfitnet(student_features, teacher_features, LABELS)["mfitnet"]
    for handle in handles:
        handle.remove()
    assert not any(received.values())  # no teacher stage is run on student inputs
    assert torch.equal(srkd_loss, mfitnet_loss)
    assert MFitNet.parameter_defaults()["weight"] == SRKD.parameter_defaults()["weight"] == 0.1


def test_width_bridge_on_wrn_40_2_to_wrn_40_1() -> None:
    teacher, student = build_pair("wrn_40_2", "wrn_40_1")
    srkd = SRKD(teacher, student)
    # stage 1 reads the stem (16 channels in both); stages 2 and 3 read maps of different widths
    assert srkd.bridged_inputs == [1, 2]
    assert sorted(srkd.adapters) == ["1", "2", "3"]
    images, _ = batch()
    student_features = student.forward_features(images)
    received, handles = record_stage_inputs(teacher)
    srkd.train()
    loss = srkd(student_features, None, LABELS)["srkd"]
    for handle in handles:
        handle.remove()
    assert torch.isfinite(loss)
    assert received[0][0] is student_features.stem
    for stage in (2, 3):
        bridged = srkd.adapters[str(stage - 1)](student_features.stages[stage - 2])
        assert torch.equal(received[stage - 1][0], bridged)
        assert received[stage - 1][0].shape[1] == teacher.feature_info[stage - 1].channels


def test_stem_bridge_adds_a_trained_stem_adapter() -> None:
    teacher, student = build_pair("resnet8x4", "resnet8")  # stems of 32 and 16 channels
    teacher, student = teacher.double().eval(), student.double().train()
    srkd = SRKD(teacher, student, stages=[1]).double()
    assert srkd.bridged_inputs == [0] and sorted(srkd.adapters) == ["0", "1"]
    images, _ = batch(dtype=torch.float64)
    student_features = student.forward_features(images)
    with torch.no_grad():
        teacher_features = teacher.forward_features(images)
        stem_adapted = adapter_reference(srkd, 0, student_features.stem)
        stage_target = teacher.stages[0](stem_adapted)
        expected = ((stem_adapted - teacher_features.stem) ** 2).mean()
        expected += ((adapter_reference(srkd, 1, student_features.stages[0]) - stage_target) ** 2).mean()
    loss = srkd(student_features, teacher_features, LABELS)["srkd"]
    assert torch.allclose(loss.detach(), 0.1 * expected, rtol=1e-9, atol=0)
    loss.backward()
    assert all(p.grad is not None for p in srkd.adapters["0"].parameters())


@pytest.mark.parametrize("grad_through_teacher", [False, True])
def test_gradients_never_reach_the_teacher(grad_through_teacher: bool) -> None:
    teacher, student = build_pair("wrn_40_2", "wrn_40_1")
    distiller = create_distiller(
        student, teacher, [("kd", {}), ("srkd", {"grad_through_teacher": grad_through_teacher})]
    )
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller.train()
    optimizer = torch.optim.SGD(distiller.trainable_parameters(), lr=0.1)
    images, labels = batch()
    _, losses = distiller(images, labels)
    sum(losses.values()).backward()
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key


def test_grad_through_teacher_adds_the_target_path_gradient() -> None:
    teacher, student = build_pair("resnet8", "resnet8")
    teacher, student = teacher.double().eval(), student.double().train()
    images, _ = batch(dtype=torch.float64)
    stem_weight = student.stem[0].weight

    def srkd_stem_gradient(grad_through_teacher: bool) -> tuple[torch.Tensor, SRKD]:
        torch.manual_seed(3)
        srkd = SRKD(teacher, student, stages=[1], grad_through_teacher=grad_through_teacher).double()
        features = student.forward_features(images)
        (gradient,) = torch.autograd.grad(srkd(features, None, LABELS)["srkd"], stem_weight)
        return gradient, srkd

    def reference_gradient(srkd: SRKD, detach: bool) -> torch.Tensor:
        stem = student.stem(images)
        target = teacher.stages[0](stem)
        target = target.detach() if detach else target
        loss = 0.1 * F.mse_loss(adapter_reference(srkd, 1, student.stages[0](stem)), target)
        (gradient,) = torch.autograd.grad(loss, stem_weight)
        return gradient

    detached, srkd = srkd_stem_gradient(False)
    assert torch.allclose(detached, reference_gradient(srkd, detach=True), rtol=1e-9, atol=1e-12)
    through, srkd = srkd_stem_gradient(True)
    assert torch.allclose(through, reference_gradient(srkd, detach=False), rtol=1e-9, atol=1e-12)
    assert not torch.allclose(through, detached)


def test_not_applicable_and_parameter_errors() -> None:
    resnet, vgg = model_feature_info("resnet8"), model_feature_info("vgg8")
    assert "stages" in SRKD.not_applicable(vgg, resnet, {})
    assert "stages" in MFitNet.not_applicable(vgg, resnet, {})
    assert SRKD.not_applicable(model_feature_info("wrn_40_2"), model_feature_info("wrn_40_1"), {}) is None
    assert "4" in SRKD.not_applicable(resnet, resnet, {"stages": [4]})
    assert "reset_stages" in SRKD.not_applicable(resnet, resnet, {"stages": [3], "reset_stages": 2})
    with pytest.raises(ValueError, match="srkd.reset_stages"):
        SRKD.not_applicable(resnet, resnet, {"reset_stages": "last"})
    teacher, student = build_pair("resnet8", "resnet8")
    with pytest.raises(ValueError, match="srkd.stages"):
        SRKD(teacher, student, stages=[0])
