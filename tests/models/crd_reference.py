"""Independent re-statements of three CRD-code networks, in the CRD code's key names.

Each function reads a state dict keyed as the CRD code saves it (RepDistiller ``models/resnet.py``,
``wrn.py``, ``vgg.py``) and runs the network functionally, BN in eval mode, returning what the CRD
code's ``forward(x, is_feat=True)`` returns with ``preact=False`` and ``preact=True`` and the logits.
Nothing here uses kdbench: it is the yardstick the model zoo and its key mapping are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

State = dict[str, torch.Tensor]


@dataclass
class CrdOutputs:
    features: list[torch.Tensor]  # f0, one per stage, pooled embedding (``preact=False``)
    preact_features: list[torch.Tensor]  # the same with the CRD code's ``preact=True``
    logits: torch.Tensor


def _conv(state: State, prefix: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    weight = state[prefix + "weight"]
    return F.conv2d(x, weight, state.get(prefix + "bias"), stride, weight.shape[-1] // 2)


def _bn(state: State, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(
        x,
        state[prefix + "running_mean"],
        state[prefix + "running_var"],
        state[prefix + "weight"],
        state[prefix + "bias"],
        training=False,
        momentum=0.1,
        eps=1e-5,
    )


def resnet(state: State, x: torch.Tensor, depth: int) -> CrdOutputs:
    """CIFAR ResNet: conv1-bn1-relu; layer1..3 of (depth - 2) / 6 basic blocks; AvgPool2d(8); fc."""
    blocks = (depth - 2) // 6
    x = F.relu(_bn(state, "bn1.", _conv(state, "conv1.", x)))
    features, preacts = [x], [x]
    for layer in (1, 2, 3):
        for index in range(blocks):
            prefix = f"layer{layer}.{index}."
            stride = 2 if layer > 1 and index == 0 else 1
            out = F.relu(_bn(state, prefix + "bn1.", _conv(state, prefix + "conv1.", x, stride)))
            out = _bn(state, prefix + "bn2.", _conv(state, prefix + "conv2.", out))
            residual = x
            if prefix + "downsample.0.weight" in state:
                residual = _bn(state, prefix + "downsample.1.", _conv(state, prefix + "downsample.0.", x, stride))
            preact = out + residual
            x = F.relu(preact)
        features.append(x)
        preacts.append(preact)
    pooled = F.avg_pool2d(x, 8).flatten(1)
    return CrdOutputs([*features, pooled], [*preacts, pooled], F.linear(pooled, state["fc.weight"], state["fc.bias"]))


def wrn(state: State, x: torch.Tensor, depth: int) -> CrdOutputs:
    """Wide ResNet: conv1; block1..3 of (depth - 4) / 6 pre-activation blocks; bn1-relu; avg_pool2d(8); fc."""
    blocks = (depth - 4) // 6
    x = _conv(state, "conv1.", x)
    features = [x]
    for group in (1, 2, 3):
        for index in range(blocks):
            prefix = f"block{group}.layer.{index}."
            stride = 2 if group > 1 and index == 0 else 1
            activated = F.relu(_bn(state, prefix + "bn1.", x))
            out = F.relu(_bn(state, prefix + "bn2.", _conv(state, prefix + "conv1.", activated, stride)))
            out = _conv(state, prefix + "conv2.", out)
            shortcut = x
            if prefix + "convShortcut.weight" in state:
                shortcut = _conv(state, prefix + "convShortcut.", activated, stride)
            x = shortcut + out
        features.append(x)
    pooled = F.avg_pool2d(F.relu(_bn(state, "bn1.", x)), 8).flatten(1)
    preacts = [
        features[0],
        _bn(state, "block2.layer.0.bn1.", features[1]),
        _bn(state, "block3.layer.0.bn1.", features[2]),
        _bn(state, "bn1.", features[3]),
    ]
    return CrdOutputs([*features, pooled], [*preacts, pooled], F.linear(pooled, state["fc.weight"], state["fc.bias"]))


def vgg(state: State, x: torch.Tensor) -> CrdOutputs:
    """BN VGG: block0-relu; (max-pool, block, relu) x 4, the last pool only for 64-pixel images; pool; fc."""
    height = x.shape[2]

    def block(index: int, x: torch.Tensor) -> torch.Tensor:
        # the block's Sequential: conv, bn, relu, conv, bn, relu, ..., conv, bn (no final relu)
        layer = 0
        while f"block{index}.{layer}.weight" in state:
            if layer:
                x = F.relu(x)
            x = _bn(state, f"block{index}.{layer + 1}.", _conv(state, f"block{index}.{layer}.", x))
            layer += 3
        return x

    x = F.relu(block(0, x))
    features, preacts = [x], [x]
    for index in (1, 2, 3, 4):
        if index < 4 or height == 64:
            x = F.max_pool2d(x, 2, 2)
        preact = block(index, x)
        x = F.relu(preact)
        features.append(x)
        preacts.append(preact)
    pooled = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    logits = F.linear(pooled, state["classifier.weight"], state["classifier.bias"])
    return CrdOutputs([*features, pooled], [*preacts, pooled], logits)
