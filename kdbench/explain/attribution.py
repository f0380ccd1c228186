"""Attribution maps through Captum: Grad-CAM at a stage boundary, and vanilla-gradient saliency.

- Grad-CAM (Selvaraju et al., ICCV 2017): for the target class score y^c (the logit, before the
  softmax), each channel k of the chosen stage's output A gets the weight alpha_k = mean over positions
  of dy^c/dA_k; the map is ReLU(sum_k alpha_k A_k), upsampled bilinearly to the input size, as in the
  original method. Captum's ``LayerGradCam`` with ``relu_attributions=True``, then
  ``LayerAttribution.interpolate(..., "bilinear")``. The layer is a boundary of the stage view
  (``model.stages[k - 1]``, the CRD code's feature f_k); the default is the last stage.
- Saliency (Simonyan et al., 2013): |dy^c/dx| per input channel (Captum's ``Saliency``, ``abs=True``),
  and the paper's single map, the maximum over channels.

Both are taken for a given target class per image (``kdbench explain`` uses the ground-truth label, as
Ojha et al. do). Models are put in eval mode; maps come back on the models' device.
"""

from __future__ import annotations

import torch
from torch import nn

from kdbench.models import StagedModel

METHODS = ("gradcam", "saliency")
LAST = "last"


def layer_names(model: StagedModel) -> list[str]:
    """The stage boundaries Grad-CAM can read: ``stage1`` ... ``stageN`` (the outputs F_1 ... F_N)."""
    return [f"stage{index}" for index in range(1, len(model.stages) + 1)]


def resolve_layer(model: StagedModel, layer: str) -> tuple[str, nn.Module]:
    """``stageK`` (1-based, as the stage view numbers F_K) or ``last``: its name and its module.

    Raises ``ValueError`` naming the valid choices when the model has no such stage.
    """
    names = layer_names(model)
    name = names[-1] if layer == LAST else layer
    if name not in names:
        raise ValueError(f"{type(model).__name__} has no layer '{layer}'; choose one of: {', '.join([LAST, *names])}")
    return name, model.stages[names.index(name)]


def gradcam_maps(model: StagedModel, images: torch.Tensor, targets: torch.Tensor, layer: str = LAST) -> torch.Tensor:
    """Grad-CAM of class ``targets`` at ``layer``: N x H x W at the input's resolution, >= 0."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    name, module = resolve_layer(model, layer)
    cams = LayerGradCam(model, module).attribute(images, target=targets, relu_attributions=True)
    if cams.dim() != 4:
        raise ValueError(
            f"Grad-CAM needs a feature map, but the output of {type(model).__name__}'s {name} is a vector; "
            "use --method saliency for this model"
        )
    upsampled = LayerAttribution.interpolate(cams, tuple(images.shape[-2:]), interpolate_mode="bilinear")
    return upsampled[:, 0].detach()


def saliency_maps(model: StagedModel, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """|d logit_target / d input| per channel: N x C x H x W (the channel maximum is ``.amax(1)``)."""
    from captum.attr import Saliency

    model.eval()
    leaf = images.detach().clone().requires_grad_(True)  # the caller's tensor is left as it was
    return Saliency(model).attribute(leaf, target=targets, abs=True).detach()


def views(method: str, maps: torch.Tensor, per_channel: bool) -> dict[str, torch.Tensor]:
    """The maps each score and grid is made of, by name: ``gradcam``, or saliency's ``max`` (+ ``channel<i>``)."""
    if method == "gradcam":
        return {"gradcam": maps}
    named = {"max": maps.amax(dim=1)}
    if per_channel:
        named.update({f"channel{index}": maps[:, index] for index in range(maps.shape[1])})
    return named


def attribute(
    method: str, model: StagedModel, images: torch.Tensor, targets: torch.Tensor, layer: str = LAST
) -> torch.Tensor:
    """Grad-CAM (N x H x W) or saliency (N x C x H x W) of ``images`` for classes ``targets``."""
    if method == "gradcam":
        return gradcam_maps(model, images, targets, layer)
    if method == "saliency":
        return saliency_maps(model, images, targets)
    raise ValueError(f"unknown attribution method '{method}'; choose one of: {', '.join(METHODS)}")
