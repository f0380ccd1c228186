"""torchvision's ResNet50 and MobileNetV2 behind the stage view: same outputs as torchvision, weights
in torchvision's format (random ones, saved here), the ImageNet weights API offline, freezing."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision.models
import torchvision.models._api as torchvision_api  # where the weights API downloads

from kdbench.methods import create_distiller
from kdbench.models import MODELS
from kdbench.models.checkpoint import load_crd_checkpoint, save_crd_checkpoint
from kdbench.models.torchvision_backbones import WeightsError

BUILDERS = {"tv_resnet50": "resnet50", "tv_mobilenet_v2": "mobilenet_v2"}
SIZE = 32  # the stage view is size-independent; 32x32 keeps ResNet50 cheap on a CPU


@cache
def _imagenet_like(builder: str) -> dict[str, torch.Tensor]:
    """A random torchvision model's state dict with randomised BN statistics: 'pretrained' weights."""
    torch.manual_seed(1)
    model = getattr(torchvision.models, builder)(weights=None)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif key.endswith("running_mean"):
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
    return {key: value.clone() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name, builder in BUILDERS.items():
        files[name] = folder / f"{builder}.pth"
        torch.save(_imagenet_like(builder), files[name])
    return files


def _torchvision_with(builder: str, state: dict, num_classes: int, head: dict) -> torch.nn.Module:
    reference = getattr(torchvision.models, builder)(weights=None, num_classes=num_classes)
    merged = {
        k: v for k, v in state.items() if k in reference.state_dict() and v.shape == reference.state_dict()[k].shape
    }
    merged.update(head)
    reference.load_state_dict(merged)
    return reference.eval()


@pytest.mark.parametrize("name", BUILDERS)
def test_loaded_weights_give_torchvisions_outputs_with_a_new_head(name: str, weight_files: dict[str, Path]) -> None:
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=3, weights=str(weight_files[name])).eval()
    head = {k[len("net.") :]: v for k, v in model.state_dict().items() if k.startswith(f"net.{model.head_name}.")}
    assert head[f"{'fc' if name == 'tv_resnet50' else 'classifier.1'}.weight"].shape[0] == 3
    reference = _torchvision_with(BUILDERS[name], _imagenet_like(BUILDERS[name]), 3, head)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = reference(x)
        assert torch.equal(model(x), expected)
        features = model.forward_features(x)
    assert torch.equal(features.logits, expected)
    maps = [features.stem, *features.stages]
    assert [m.shape[1] for m in maps] == [info.channels for info in model.feature_info]
    assert [m.shape[-1] for m in maps] == model.feature_sizes(SIZE)
    assert features.embedding.shape == (2, model.embedding_dim)
    # the state dict holds every tensor once, under torchvision's names
    assert set(model.state_dict()) == {f"net.{key}" for key in reference.state_dict()}


def test_a_file_that_does_not_fit_loads_nothing(weight_files: dict[str, Path], tmp_path: Path) -> None:
    state = dict(_imagenet_like("mobilenet_v2"))
    del state["features.3.conv.1.0.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"missing keys \(1\): features.3.conv.1.0.weight") as raised:
        MODELS.get("tv_mobilenet_v2")(num_classes=2, weights=str(tmp_path / "bad.pth"))
    assert "unexpected keys (1): extra.weight" in str(raised.value)
    with pytest.raises(WeightsError, match="no such file, and not one of torchvision's names"):
        MODELS.get("tv_mobilenet_v2")(num_classes=2, weights=str(tmp_path / "absent.pth"))


def test_imagenet_weights_come_through_torchvisions_api(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = []

    def hub(url: str, *args: object, **kwargs: object) -> dict:
        requested.append(url)
        return _imagenet_like("mobilenet_v2")

    monkeypatch.setattr(torchvision_api, "load_state_dict_from_url", hub)
    model = MODELS.get("tv_mobilenet_v2")(num_classes=2, weights="imagenet")
    assert requested == [torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url]
    assert torch.equal(
        model.net.features[5].conv[0][0].weight, _imagenet_like("mobilenet_v2")["features.5.conv.0.0.weight"]
    )


def test_without_a_network_the_error_names_the_file_to_place(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network")

    monkeypatch.setattr(torchvision_api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as raised:
        MODELS.get("tv_resnet50")(num_classes=2, weights="imagenet")
    message = str(raised.value)
    assert str(Path(torch.hub.get_dir()) / "checkpoints" / "resnet50-0676ba61.pth") in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message


def test_trainable_blocks_train_and_the_rest_is_frozen_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = MODELS.get("tv_resnet50")(num_classes=2, trainable=["layer4", "fc"])
    trains = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trains and all(name.startswith(("net.layer4.", "net.fc.")) for name in trains)
    assert all(p.requires_grad for name, p in model.named_parameters() if name.startswith("net.layer4."))
    model.train()
    assert model.training and model.net.layer4[0].bn1.training
    assert not model.net.bn1.training and not model.net.layer3[0].bn1.training
    frozen_stats = model.net.layer3[0].bn1.running_mean.clone()
    trained_stats = model.net.layer4[0].bn1.running_mean.clone()
    model(torch.randn(2, 3, SIZE, SIZE))
    assert torch.equal(model.net.layer3[0].bn1.running_mean, frozen_stats)
    assert not torch.equal(model.net.layer4[0].bn1.running_mean, trained_stats)
    with pytest.raises(WeightsError, match="'layer5' names no block of resnet50; choose from layer"):
        MODELS.get("tv_resnet50")(num_classes=2, trainable=["layer5"])


def test_distilling_into_a_partly_frozen_student_updates_only_its_trainable_part() -> None:
    torch.manual_seed(0)
    teacher = MODELS.get("tv_mobilenet_v2")(num_classes=2, trainable=["classifier"])
    student = MODELS.get("tv_mobilenet_v2")(num_classes=2, trainable=["classifier"])
    before = copy.deepcopy(student.state_dict())
    distiller = create_distiller(student, teacher, [("kd", {})], 0.1)
    optimizer = torch.optim.SGD([p for p in distiller.parameters() if p.requires_grad], lr=0.1)
    distiller.train()
    assert not teacher.training and not student.net.features[3].conv[1][1].training
    logits, losses = distiller(
        torch.randn(4, 3, SIZE, SIZE), torch.tensor([0, 0, 0, 1])
    )  # unbalanced: a nonzero bias gradient
    sum(losses.values()).backward()
    optimizer.step()
    changed = {key for key, value in student.state_dict().items() if not torch.equal(value, before[key])}
    assert changed == {"net.classifier.1.weight", "net.classifier.1.bias"}


def test_our_checkpoint_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MODELS.get("tv_mobilenet_v2")(num_classes=2).eval()
    torch.manual_seed(1)
    other = MODELS.get("tv_mobilenet_v2")(num_classes=2).eval()
    save_crd_checkpoint(model, tmp_path / "model.pt")
    load_crd_checkpoint(other, tmp_path / "model.pt")
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(model(x), other(x))
