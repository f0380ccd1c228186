"""Grad-CAM and saliency through Captum against a direct computation (hooks and autograd, float64)."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

from kdbench.explain.attribution import gradcam_maps, layer_names, resolve_layer, saliency_maps, views
from kdbench.models import MODELS, create_model


def tiny_model(name: str = "resnet8", classes: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(name, classes).double().eval()
    # non-trivial BN statistics, so eval mode is not the identity
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model


def direct_gradcam(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor, stage: int) -> torch.Tensor:
    """Selvaraju et al.: ReLU(sum_k mean_ij(dy_c/dA_kij) A_k), bilinear to the input size."""
    captured = {}
    handle = model.stages[stage - 1].register_forward_hook(lambda module, inputs, output: captured.update(a=output))
    try:
        logits = model(images)
    finally:
        handle.remove()
    activation = captured["a"]
    score = logits.gather(1, targets[:, None]).sum()
    (gradient,) = torch.autograd.grad(score, activation)
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    return F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


@pytest.mark.parametrize(("name", "size"), [("resnet8", 8), ("vgg8", 32)])
def test_gradcam_matches_the_direct_computation_at_every_stage(name: str, size: int) -> None:
    model = tiny_model(name)
    images = torch.randn(5, 3, size, size, dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 3, 1])
    for stage, layer in enumerate(layer_names(model), start=1):
        expected = direct_gradcam(model, images, targets, stage)
        got = gradcam_maps(model, images, targets, layer)
        assert got.shape == (5, size, size)
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
        assert (got >= 0).all() and got.abs().sum() > 0
    # the default is the last stage
    torch.testing.assert_close(
        gradcam_maps(model, images, targets), direct_gradcam(model, images, targets, 3 if name == "resnet8" else 4)
    )


def test_saliency_is_the_absolute_input_gradient_per_channel_and_its_channel_maximum() -> None:
    model = tiny_model()
    images = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    targets = torch.tensor([3, 0, 2, 1])
    leaf = images.clone().requires_grad_(True)
    model(leaf).gather(1, targets[:, None]).sum().backward()
    expected = leaf.grad.abs()
    got = saliency_maps(model, images, targets)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    assert not images.requires_grad
    named = views("saliency", got, per_channel=True)
    assert list(named) == ["max", "channel0", "channel1", "channel2"]
    torch.testing.assert_close(named["max"], expected.amax(dim=1))
    torch.testing.assert_close(named["channel1"], expected[:, 1])
    assert list(views("saliency", got, per_channel=False)) == ["max"]


def test_an_unknown_layer_names_the_choices() -> None:
    model = tiny_model()
    assert resolve_layer(model, "last")[0] == "stage3"
    with pytest.raises(ValueError, match="choose one of: last, stage1, stage2, stage3"):
        resolve_layer(model, "stage4")


@pytest.mark.parametrize("name", MODELS.names())
def test_gradcam_runs_at_every_stage_of_every_model(name: str) -> None:
    """Every stage boundary of the zoo can be read (no in-place op after it breaks the gradient); a model whose
    stages are vectors (an MLP) is refused with a message pointing to saliency."""
    torch.manual_seed(0)
    shape = (1, 28, 28) if "image_shape" in inspect.signature(MODELS.get(name)).parameters else (3, 32, 32)
    model = create_model(name, 10, shape).eval()
    images = torch.randn(2, *shape)
    for layer in layer_names(model):
        with torch.no_grad():
            spatial = model.forward_features(images).stages[int(layer.removeprefix("stage")) - 1].dim() == 4
        if not spatial:
            with pytest.raises(ValueError, match="use --method saliency"):
                gradcam_maps(model, images, torch.tensor([1, 7]), layer)
            continue
        maps = gradcam_maps(model, images, torch.tensor([1, 7]), layer)
        assert maps.shape == (2, *shape[1:]) and torch.isfinite(maps).all() and (maps >= 0).all()
    assert saliency_maps(model, images, torch.tensor([1, 7])).shape == images.shape
