"""The course project's MNIST teacher CNN and FC student: counts from the layer list, a functional
re-implementation of the Keras network, the stage view, the digits shape, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from kdbench.models import MODELS, create_model
from kdbench.models.checkpoint import load_crd_checkpoint, save_crd_checkpoint
from kdbench.models.course import CourseCNN, CourseMLP
from kdbench.models.flops import count_flops, count_model_parameters, count_parameters


def dense(inputs: int, outputs: int) -> int:
    return (inputs + 1) * outputs


def conv3x3(inputs: int, outputs: int) -> int:
    return (inputs * 9 + 1) * outputs


def test_parameter_counts_follow_the_layer_list_and_the_document() -> None:
    # 28 -conv-> 26 -pool(stride 1)-> 25 -conv-> 23 -pool(stride 2)-> 11
    teacher = conv3x3(1, 32) + conv3x3(32, 64) + dense(11 * 11 * 64, 128) + dense(128, 10)
    student = dense(784, 784) + dense(784, 784) + dense(784, 10)
    assert count_parameters(MODELS.get("course_cnn")(num_classes=10)) == teacher
    assert count_parameters(MODELS.get("course_mlp")(num_classes=10)) == student
    assert round(teacher / 1e6, 2) == 1.01  # the document: about 1.01 M
    assert round(student / 1e6, 2) == 1.24  # the document: about 1.24 M


def keras_cnn(model: CourseCNN, x: torch.Tensor) -> torch.Tensor:
    """The notebook's Sequential, in eval mode (dropout off), written with torch.nn.functional."""
    conv1, conv2 = model.stem[0], model.stages[0].blocks[1]
    x = F.relu(F.conv2d(x, conv1.weight, conv1.bias))
    x = F.max_pool2d(x, 2, stride=1)
    x = F.relu(F.conv2d(x, conv2.weight, conv2.bias))
    x = F.max_pool2d(x, 2, stride=2)
    x = F.relu(F.linear(x.flatten(1), model.hidden[1].weight, model.hidden[1].bias))
    return F.linear(x, model.classifier[1].weight, model.classifier[1].bias)


def keras_mlp(model: CourseMLP, x: torch.Tensor) -> torch.Tensor:
    first, second = model.stages[0].blocks[0], model.stages[1].blocks[0]
    x = F.relu(F.linear(x.flatten(1), first.weight, first.bias))
    x = F.relu(F.linear(x, second.weight, second.bias))
    return F.linear(x, model.classifier.weight, model.classifier.bias)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8)])
def test_cnn_is_the_notebooks_network_and_its_stage_view_agrees(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = CourseCNN(5, shape).eval()
    x = torch.rand(3, *shape, dtype=torch.float64)
    model = model.double()
    with torch.no_grad():
        features = model.forward_features(x)
        expected = keras_cnn(model, x)
        assert torch.allclose(model(x), expected, atol=1e-12)
    assert torch.allclose(features.logits, expected, atol=1e-12)
    sizes = model.feature_sizes(shape[1])
    maps = [features.stem, *features.stages]
    expected_shapes = [(info.channels, side, side) for info, side in zip(model.feature_info, sizes, strict=True)]
    assert [tuple(m.shape[1:]) for m in maps] == expected_shapes
    assert features.embedding.shape == (3, model.embedding_dim)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 8, 8)])
def test_mlp_is_the_notebooks_network(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = CourseMLP(4, shape).double().eval()
    x = torch.rand(3, *shape, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(model(x), keras_mlp(model, x), atol=1e-12)
        assert torch.allclose(model.forward_features(x).logits, keras_mlp(model, x), atol=1e-12)
    assert model.feature_info[0].channels == math.prod(shape)


def test_dropout_trains_and_evaluation_is_deterministic() -> None:
    torch.manual_seed(0)
    model = CourseCNN(10)
    x = torch.rand(4, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_keras_initialisation() -> None:
    torch.manual_seed(0)
    model = CourseCNN(10)
    dense_layer = model.hidden[1]
    bound = math.sqrt(6 / (7744 + 128))  # Glorot uniform
    assert float(dense_layer.weight.detach().abs().max()) <= bound
    assert float(dense_layer.weight.detach().abs().max()) > 0.9 * bound
    conv = model.stages[0].blocks[1]
    assert float(conv.weight.detach().abs().max()) <= math.sqrt(6 / (32 * 9 + 64 * 9))
    assert all(float(m.bias.detach().abs().max()) == 0 for m in (dense_layer, conv, model.classifier[1]))


def test_too_small_images_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 7x7"):
        CourseCNN(10, (1, 6, 6))


@pytest.mark.parametrize("name", ["course_cnn", "course_mlp"])
def test_checkpoint_round_trip_under_our_own_keys(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MODELS.get(name)(num_classes=10).eval()
    torch.manual_seed(1)
    other = MODELS.get(name)(num_classes=10).eval()
    save_crd_checkpoint(model, tmp_path / "model.pt")
    assert set(torch.load(tmp_path / "model.pt")["model"]) == set(model.state_dict())
    load_crd_checkpoint(other, tmp_path / "model.pt")
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(model(x), other(x))


def test_flops_and_parameters_follow_the_data_sets_shape() -> None:
    # torch's counter: 2 FLOPs per multiply-add of convolutions and matrix products
    cnn_mnist = 2 * (26 * 26 * 32 * 9 + 23 * 23 * 64 * 32 * 9 + 7744 * 128 + 128 * 10)
    mlp_digits = 2 * (192 * 784 + 784 * 784 + 784 * 10)  # digits: 3 x 8 x 8 = 192 inputs
    assert count_flops("course_cnn", 10, (1, 28, 28)) == cnn_mnist
    assert count_flops("course_mlp", 10, (3, 8, 8)) == mlp_digits
    assert count_model_parameters("course_mlp", 10, (3, 8, 8)) == dense(192, 784) + dense(784, 784) + dense(784, 10)
    # the CNN on 8x8: 6 -> 5 -> 3 -> 1 pixel maps, so the dense layer reads 64 features
    assert count_model_parameters("course_cnn", 10, (3, 8, 8)) == conv3x3(3, 32) + conv3x3(32, 64) + dense(
        64, 128
    ) + dense(128, 10)


def test_the_colab_cnn_pools_at_stride_2_and_its_counts_follow() -> None:
    """subclass_distillation/mnist_colab.ipynb's CNN: Keras's MaxPooling2D((2, 2)) strides by 2."""
    from kdbench.models.flops import count_model_parameters

    colab = create_model("course_cnn", 10, (1, 28, 28), first_pool_stride=2)
    maps = colab.forward_features(torch.rand(2, 1, 28, 28)).stages
    assert [tuple(m.shape[-2:]) for m in maps] == [(11, 11), (5, 5)] and colab.feature_sizes(28) == [26, 11, 5]
    # conv 320 + conv 18,496 + dense 64*5*5*128 + 128 + dense 1,290
    assert count_model_parameters("course_cnn", 10, (1, 28, 28), {"first_pool_stride": 2}) == 225_034
    with pytest.raises(ValueError, match="at least 10x10"):
        create_model("course_cnn", 10, (3, 8, 8), first_pool_stride=2)
