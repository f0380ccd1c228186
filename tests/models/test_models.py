"""The model zoo against the CRD code: parameter counts, stage view, checkpoints in its format, FLOPs.

Parametrised over the registry, so a new model is covered by adding its CRD parameter count and
state-dict size below (facts read off the CRD code, RepDistiller ``models/``), with no new test code.
"""

from __future__ import annotations

import argparse
import copy
from functools import cache
from pathlib import Path

import crd_reference
import pytest
import torch
import torch.nn.functional as F

from kdbench.models import MODELS, Features, StagedModel, create_model, model_feature_info
from kdbench.models.checkpoint import (
    from_crd_state_dict,
    load_crd_checkpoint,
    save_crd_checkpoint,
    sha256_of,
    to_crd_state_dict,
)
from kdbench.models.flops import count_flops, count_model_parameters, count_parameters

NUM_CLASSES = 100

#: the CRD code's ``model_dict[name](num_classes=100)``: (parameters, entries of its ``state_dict()``)
CRD_FACTS = {
    "resnet8": (83_892, 56),
    "resnet14": (181_108, 92),
    "resnet20": (278_324, 128),
    "resnet32": (472_756, 200),
    "resnet44": (667_188, 272),
    "resnet56": (861_620, 344),
    "resnet110": (1_736_564, 668),
    "resnet8x4": (1_233_540, 62),
    "resnet32x4": (7_433_860, 206),
    "ResNet50": (23_705_252, 320),
    "wrn_16_1": (180_916, 82),
    "wrn_16_2": (703_284, 83),
    "wrn_40_1": (569_780, 226),
    "wrn_40_2": (2_255_156, 227),
    "vgg8": (3_965_028, 37),
    "vgg11": (9_277_284, 58),
    "vgg13": (9_462_180, 72),
    "vgg16": (14_774_436, 93),
    "vgg19": (20_086_692, 114),
    "MobileNetV2": (812_836, 320),
    "ShuffleV1": (949_258, 296),
    "ShuffleV2": (1_355_528, 338),
}

#: a few of the CRD code's state-dict keys and their shapes (100 classes), per family
CRD_KEYS = {
    "resnet8": {
        "conv1.weight": (16, 3, 3, 3),
        "layer1.0.bn2.running_var": (16,),
        "layer3.0.downsample.0.weight": (64, 32, 1, 1),
        "fc.weight": (100, 64),
    },
    "resnet32x4": {"layer3.4.conv2.weight": (256, 256, 3, 3), "fc.weight": (100, 256)},
    "ResNet50": {
        "layer1.0.shortcut.0.weight": (256, 64, 1, 1),
        "layer4.2.conv3.weight": (2048, 512, 1, 1),
        "linear.weight": (100, 2048),
    },
    "wrn_40_2": {
        "conv1.weight": (16, 3, 3, 3),
        "block1.layer.0.convShortcut.weight": (32, 16, 1, 1),
        "block3.layer.5.conv2.weight": (128, 128, 3, 3),
        "bn1.running_var": (128,),
        "fc.weight": (100, 128),
    },
    "wrn_16_1": {"block2.layer.0.convShortcut.weight": (32, 16, 1, 1), "fc.weight": (100, 64)},
    "vgg13": {"block0.3.weight": (64, 64, 3, 3), "block4.4.running_mean": (512,), "classifier.weight": (100, 512)},
    "vgg8": {"block0.0.bias": (64,), "block4.1.weight": (512,)},
    "MobileNetV2": {
        "conv1.0.weight": (16, 3, 3, 3),
        "blocks.0.0.conv.0.weight": (16, 16, 1, 1),
        "blocks.6.0.conv.6.weight": (160, 480, 1, 1),
        "conv2.0.weight": (1280, 160, 1, 1),
        "classifier.0.weight": (100, 1280),
    },
    "ShuffleV1": {
        "conv1.weight": (24, 3, 1, 1),
        "layer1.0.conv1.weight": (54, 24, 1, 1),
        "layer2.0.conv1.weight": (60, 80, 1, 1),
        "layer3.3.bn3.weight": (960,),
        "linear.weight": (100, 960),
    },
    "ShuffleV2": {
        "layer1.0.conv1.weight": (24, 1, 3, 3),
        "layer3.3.conv3.weight": (232, 232, 1, 1),
        "conv2.weight": (1024, 464, 1, 1),
        "linear.weight": (100, 1024),
    },
}

#: the paper's spellings (SRKD and CRD papers) -> the CRD code's names
ALIASES = {
    "ResNet20": "resnet20",
    "ResNet32x4": "resnet32x4",
    "WRN-40-2": "wrn_40_2",
    "WRN-16-2": "wrn_16_2",
    "VGG13": "vgg13",
    "VGG8": "vgg8",
    "vgg13_bn": "vgg13",
    "MobileNetV2": "MobileNetV2",
    "mobile_half": "MobileNetV2",
    "ShuffleNetV1": "ShuffleV1",
    "ShuffleNetV2": "ShuffleV2",
    "ResNet50": "ResNet50",
}


def _has_crd_counterpart(name: str) -> bool:
    with torch.device("meta"):
        return type(create_model(name, NUM_CLASSES)).crd_key_rules is not None


#: the CRD code's networks (families with CRD key rules); the others have their own tests
NAMES = [name for name in MODELS.names() if _has_crd_counterpart(name)]


@cache
def _prototype(name: str) -> StagedModel:
    torch.manual_seed(0)
    return create_model(name, NUM_CLASSES).eval()


def fresh(name: str) -> StagedModel:
    """A private copy of the (built once) ``name`` model, in eval mode."""
    return copy.deepcopy(_prototype(name))


def randomise(model: StagedModel, seed: int) -> StagedModel:
    """Give every BN non-trivial statistics and affine parameters, and the classifier a bias, so that
    a key mapped to the wrong tensor changes the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if key.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight")) or (
                value.dim() == 1 and key.endswith("weight")
            ):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
            elif key.endswith(("running_mean", "bias")):
                value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
    return model


#: image size where only equality matters, not the CIFAR resolution: 4x cheaper than 32x32
SMALL = 16


def images(size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_model_has_its_crd_facts() -> None:
    """A new model must come with the CRD code's numbers, or the parameter test would not check it."""
    assert set(NAMES) == set(CRD_FACTS)
    assert set(CRD_KEYS) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_the_crd_code(name: str) -> None:
    assert count_parameters(_prototype(name)) == CRD_FACTS[name][0]
    assert count_model_parameters(name, NUM_CLASSES) == CRD_FACTS[name][0]


def test_parameter_count_follows_the_class_count() -> None:
    # only the classifier changes: (features + 1) parameters per class
    assert count_model_parameters("resnet8", 10) == CRD_FACTS["resnet8"][0] - 90 * (64 + 1)
    assert count_model_parameters("ShuffleV2", 10) == CRD_FACTS["ShuffleV2"][0] - 90 * (1024 + 1)


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_paper_spellings_are_aliases(alias: str, name: str) -> None:
    assert MODELS.canonical(alias) == name


@cache
def _eval_outputs(name: str, size: int) -> tuple[torch.Tensor, Features, torch.Tensor]:
    """(images, ``forward_features``, ``forward``) of the eval-mode model, computed once per test run."""
    x = images(size)
    model = _prototype(name)
    with torch.no_grad():
        return x, model.forward_features(x), model(x)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", NAMES)
def test_stage_view_matches_feature_info(name: str, size: int) -> None:
    model = _prototype(name)
    info = model.feature_info
    assert list(model_feature_info(name, NUM_CLASSES)) == info  # known without running a batch
    assert len(info) == len(model.stages) + 1
    heights = model.feature_sizes(size)
    if size == 32:
        assert heights == [32 // stage.stride for stage in info]

    _, features, logits = _eval_outputs(name, size)
    assert features.stem.shape == (2, info[0].channels, heights[0], heights[0])
    assert len(features.stages) == len(features.preact) == len(model.stages)
    for output, preact, stage, height in zip(features.stages, features.preact, info[1:], heights[1:], strict=True):
        assert output.shape == (2, stage.channels, height, height)
        assert preact.shape == output.shape
    assert features.embedding.shape == (2, model.embedding_dim)
    assert features.logits.shape == (2, NUM_CLASSES)
    assert torch.equal(features.logits, logits)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", NAMES)
def test_stages_run_one_by_one(name: str) -> None:
    """``forward_stage`` chained from the stem gives the same stage outputs (SRKD relies on it)."""
    model = _prototype(name)
    x, features, _ = _eval_outputs(name, 32)
    with torch.no_grad():
        current = model.stem(x)
        assert torch.equal(current, features.stem)
        for index, expected in enumerate(features.stages):
            current = model.forward_stage(index, current)
            assert torch.equal(current, expected)
        assert torch.equal(model.embed(current), features.embedding)


@pytest.mark.parametrize("name", NAMES)
def test_forward_features_trains_like_forward(name: str) -> None:
    """In training mode both give the same logits and update the BN statistics once, identically."""
    plain, featured = fresh(name).train(), fresh(name).train()
    x = images(SMALL)
    with torch.no_grad():
        logits = plain(x)
        features = featured.forward_features(x)
    assert torch.equal(features.logits, logits)
    plain_state, featured_state = plain.state_dict(), featured.state_dict()
    assert all(torch.equal(plain_state[key], featured_state[key]) for key in plain_state)


@pytest.mark.parametrize("name", NAMES)
def test_crd_checkpoint_round_trip_gives_identical_logits(name: str, tmp_path: Path) -> None:
    source = randomise(fresh(name), seed=1)
    path = save_crd_checkpoint(source, tmp_path / f"{name}_vanilla" / "ckpt_epoch_240.pth", epoch=240)

    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 240
    assert len(saved["model"]) == CRD_FACTS[name][1]
    for key, shape in CRD_KEYS.get(name, {}).items():
        assert tuple(saved["model"][key].shape) == shape, key

    torch.manual_seed(123)
    target = create_model(name, NUM_CLASSES).eval()
    assert not torch.equal(target.classifier.weight, source.classifier.weight)
    assert load_crd_checkpoint(target, path) == {"epoch": 240}
    target_state = target.state_dict()
    assert all(torch.equal(value, target_state[key]) for key, value in source.state_dict().items())
    x = images(SMALL)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


CRD_REFERENCES = {
    "resnet8": lambda state, x: crd_reference.resnet(state, x, depth=8),
    "resnet8x4": lambda state, x: crd_reference.resnet(state, x, depth=8),
    "wrn_16_1": lambda state, x: crd_reference.wrn(state, x, depth=16),
    "wrn_16_2": lambda state, x: crd_reference.wrn(state, x, depth=16),
    "vgg8": crd_reference.vgg,
    "vgg11": crd_reference.vgg,
}


@pytest.mark.parametrize("name", list(CRD_REFERENCES))
def test_logits_and_features_equal_an_independent_crd_network(name: str) -> None:
    """Our model and a re-statement of the CRD code, fed the same CRD-keyed weights, agree to the bit."""
    model = randomise(fresh(name), seed=2)
    state = to_crd_state_dict(model)
    sizes = [32, 64] if name.startswith("vgg") else [32]  # the CRD code's other networks break at 64x64
    for size in sizes:
        x = images(size, seed=size)
        with torch.no_grad():
            expected = CRD_REFERENCES[name](state, x)
            features = model.forward_features(x)
        assert torch.equal(features.logits, expected.logits)
        ours = [features.stem, *features.stages, features.embedding]
        ours_preact = [features.stem, *features.preact, features.embedding]
        assert len(ours) == len(expected.features)
        assert all(torch.equal(a, b) for a, b in zip(ours, expected.features, strict=True))
        assert all(torch.equal(a, b) for a, b in zip(ours_preact, expected.preact_features, strict=True))

    # and the other way: a CRD-keyed state dict loads into a fresh model with the same logits
    target = fresh(name)
    target.load_state_dict(from_crd_state_dict(target, state))
    x = images(32, seed=3)
    with torch.no_grad():
        assert torch.equal(target(x), CRD_REFERENCES[name](state, x).logits)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_architecture_checkpoint_is_refused_with_key_names(name: str, tmp_path: Path) -> None:
    other = "wrn_16_1" if name == "resnet8" else "resnet8"
    path = save_crd_checkpoint(fresh(other), tmp_path / f"{other}.pth")
    model = fresh(name)
    before = copy.deepcopy(model.state_dict())
    ours = set(to_crd_state_dict(model))
    theirs = set(torch.load(path, weights_only=True)["model"])
    missing = {key for key in ours - theirs if not key.endswith("num_batches_tracked")}  # optional in old files

    with pytest.raises(ValueError) as raised:
        load_crd_checkpoint(model, path)
    message = str(raised.value)
    assert str(path) in message
    assert f"missing keys ({len(missing)})" in message
    assert any(key in message for key in missing)
    if theirs - ours:
        assert f"unexpected keys ({len(theirs - ours)})" in message
        assert any(key in message for key in theirs - ours)
    after = model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # nothing loaded


def test_wrong_class_count_names_the_classifier_and_both_shapes(tmp_path: Path) -> None:
    path = save_crd_checkpoint(create_model("resnet8", 10), tmp_path / "cifar10.pth")
    with pytest.raises(ValueError) as raised:
        load_crd_checkpoint(fresh("resnet8"), path)
    message = str(raised.value)
    assert "shape mismatches (2)" in message
    assert "fc.weight is [10, 64] in the file, [100, 64] in the model" in message
    assert "fc.bias" in message
    assert "10 classes, the model 100" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_other_crd_file_shapes_load(tmp_path: Path) -> None:
    """A bare state dict, the CRD code's final ``*_last.pth`` (argparse options inside) and a
    DataParallel-prefixed state dict all load; the optimizer state is not returned."""
    source = randomise(fresh("wrn_16_1"), seed=4)
    state = to_crd_state_dict(source)
    files = {
        "bare.pth": state,
        "wrn_16_1_last.pth": {"opt": argparse.Namespace(model="wrn_16_1"), "model": state, "optimizer": {"state": {}}},
        "parallel.pth": {"model": {f"module.{key}": value for key, value in state.items()}, "best_acc": 75.5},
    }
    x = images(32)
    with torch.no_grad():
        expected = source(x)
    for file_name, payload in files.items():
        torch.save(payload, tmp_path / file_name)
        target = fresh("wrn_16_1")
        extras = load_crd_checkpoint(target, tmp_path / file_name)
        assert "optimizer" not in extras and "model" not in extras
        with torch.no_grad():
            assert torch.equal(target(x), expected), file_name
    assert load_crd_checkpoint(fresh("wrn_16_1"), tmp_path / "parallel.pth") == {"best_acc": 75.5}


def test_unreadable_checkpoints_are_refused_with_the_file_name(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(ValueError, match="not found.*nowhere.pth"):
        load_crd_checkpoint(fresh("resnet8"), missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_crd_checkpoint(fresh("resnet8"), garbage)
    odd = tmp_path / "odd.pth"
    torch.save({"epoch": 3, "weights": [1, 2]}, odd)
    with pytest.raises(ValueError, match=r"odd.pth: not a CRD checkpoint.*\['epoch', 'weights'\]"):
        load_crd_checkpoint(fresh("resnet8"), odd)


def test_sha256_of_a_known_file(tmp_path: Path) -> None:
    path = tmp_path / "abc"
    path.write_bytes(b"abc")
    assert sha256_of(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_flops_of_resnet8_match_a_hand_count() -> None:
    """2 FLOPs per multiply-add of every conv and of the classifier, counted by hand for 32x32."""

    def conv(in_channels: int, out_channels: int, kernel: int, height: int) -> int:
        return 2 * in_channels * out_channels * kernel * kernel * height * height

    expected = (
        conv(3, 16, 3, 32)  # stem
        + 2 * conv(16, 16, 3, 32)  # stage 1
        + conv(16, 32, 3, 16) + conv(32, 32, 3, 16) + conv(16, 32, 1, 16)  # stage 2 and its projection
        + conv(32, 64, 3, 8) + conv(64, 64, 3, 8) + conv(32, 64, 1, 8)  # stage 3 and its projection
        + 2 * 64 * NUM_CLASSES  # classifier
    )  # fmt: skip
    assert count_flops("resnet8", NUM_CLASSES, (3, 32, 32)) == expected


@pytest.mark.parametrize(
    "family",
    [
        ["resnet8", "resnet20", "resnet56", "resnet110"],
        ["resnet8", "resnet8x4", "resnet32x4"],
        ["wrn_16_1", "wrn_40_1", "wrn_40_2"],
        ["wrn_16_1", "wrn_16_2", "wrn_40_2"],
        ["vgg8", "vgg11", "vgg13", "vgg16", "vgg19"],
        ["MobileNetV2", "ShuffleV1", "ShuffleV2", "resnet32x4", "ResNet50"],
    ],
)
def test_flops_grow_with_the_model(family: list[str]) -> None:
    flops = [count_flops(name, NUM_CLASSES) for name in family]
    assert all(a > 0 for a in flops)
    assert flops == sorted(flops) and len(set(flops)) == len(flops)


def _smallest_of_each_family() -> list[str]:
    smallest: dict[type, str] = {}
    for name in sorted(NAMES, key=lambda name: CRD_FACTS.get(name, (0,))[0]):
        with torch.device("meta"):  # the class only: no weights at collection time
            smallest.setdefault(type(create_model(name, NUM_CLASSES)), name)
    return sorted(smallest.values())


@pytest.mark.parametrize("name", _smallest_of_each_family())
def test_flops_at_64x64(name: str) -> None:
    """Convolutions cost 4x at 64x64 and the classifier the same; VGG's extra pooling saves some."""
    small, large = count_flops(name, NUM_CLASSES, (3, 32, 32)), count_flops(name, NUM_CLASSES, (3, 64, 64))
    classifier = 2 * _prototype(name).embedding_dim * NUM_CLASSES
    if name.startswith("vgg"):
        assert classifier < large - classifier < 4 * (small - classifier)
    else:
        assert large - classifier == 4 * (small - classifier)


def test_flop_counts_accept_aliases_and_leave_the_rng_alone() -> None:
    state = torch.random.get_rng_state()
    assert count_flops("WRN-40-2", NUM_CLASSES) == count_flops("wrn_40_2", NUM_CLASSES)
    assert count_flops("ShuffleV2", 10, [3, 32, 32]) < count_flops("ShuffleV2", NUM_CLASSES, (3, 32, 32))
    assert torch.equal(state, torch.random.get_rng_state())
    with pytest.raises(ValueError, match="channels, height, width"):
        count_flops("resnet8", NUM_CLASSES, (32, 32))


def test_vgg_pools_once_more_at_64x64_as_the_crd_code() -> None:
    model = _prototype("vgg8")
    assert model.feature_sizes(32) == [32, 16, 8, 4, 4]
    assert model.feature_sizes(64) == [64, 32, 16, 8, 4]
    with torch.no_grad():
        assert model.forward_features(images(64)).stages[-1].shape[-1] == 4


def test_global_pooling_makes_the_embedding_size_independent() -> None:
    # the pooled embedding of a 64x64 image is the mean over its map, not a 2x2 map flattened
    model = _prototype("resnet8")
    with torch.no_grad():
        features = model.forward_features(images(64))
    last = features.stages[-1]
    assert features.embedding.shape == (2, 64)
    assert torch.allclose(features.embedding, last.mean((2, 3)), atol=1e-6)
    assert torch.allclose(F.linear(features.embedding, model.classifier.weight, model.classifier.bias), features.logits)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_family_declares_its_crd_key_rules_on_its_own_class(name: str) -> None:
    """A family states its CRD key mapping (or None) beside its definition, so saving never fails late."""
    with torch.device("meta"):
        model = create_model(name, NUM_CLASSES)
    assert "crd_key_rules" in vars(type(model)), f"{type(model).__name__} must declare crd_key_rules"


def test_a_family_without_crd_rules_saves_and_loads_under_its_own_keys(tmp_path: Path) -> None:
    class NoCrdCounterpart(type(create_model("resnet8", 10))):
        crd_key_rules = None

        def __init__(self) -> None:
            super().__init__(8, (16, 16, 32, 64), 10)

    torch.manual_seed(0)
    model, copy_of = NoCrdCounterpart(), NoCrdCounterpart()
    save_crd_checkpoint(model, tmp_path / "model.pt")
    assert set(torch.load(tmp_path / "model.pt")["model"]) == set(model.state_dict())
    load_crd_checkpoint(copy_of, tmp_path / "model.pt")
    images = torch.rand(2, 3, 8, 8)
    assert torch.equal(model.eval()(images), copy_of.eval()(images))


@pytest.mark.parametrize("name", [n for n in MODELS.names() if n.startswith(("course_", "tv_"))])
def test_a_non_crd_family_file_of_another_class_count_is_refused_cleanly(name: str, tmp_path: Path) -> None:
    shape = (1, 28, 28) if name.startswith("course_") else (3, 32, 32)
    torch.manual_seed(0)
    save_crd_checkpoint(create_model(name, 10, shape), tmp_path / "model.pt")
    with pytest.raises(ValueError, match="the file has 10 classes, the model 3"):
        load_crd_checkpoint(create_model(name, 3, shape), tmp_path / "model.pt")
