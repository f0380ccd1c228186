"""The MNIST teacher CNN and fully connected student of the KD course project (ECE1512, Toronto).

Reference: the project's starter notebook (``T1.ipynb``, TensorFlow/Keras), read layer by layer:

- teacher ``course_cnn``: conv 32 (3x3, valid, ReLU) -> max-pool 2x2 **stride 1** -> conv 64 (3x3,
  valid, ReLU) -> max-pool 2x2 stride 2 -> flatten -> dropout 0.5 -> dense 128 (ReLU) -> dropout 0.5
  -> dense classes. On 28x28x1 MNIST: 28 -> 26 -> 25 -> 23 -> 11, so the dense layer reads
  11 * 11 * 64 = 7,744 features and the network has 1,011,466 parameters, the document's "about
  1.01 M". (With the usual stride-2 first pool it would be 225,034: the stride 1 is what the
  document's count implies, and what the notebook has.)
- student ``course_mlp``: flatten -> dense 784 (ReLU) -> dense 784 (ReLU) -> dense classes:
  1,238,730 parameters on MNIST, the document's "about 1.24 M". The document's layer list "784 ->
  784 -> 10" reads as one hidden layer (623,290 parameters); its count, and the notebook, have two
  hidden layers of 784, which is what this is.

Initialisation as Keras's defaults: Glorot-uniform kernels, zero biases. Keras flattens NHWC and
torch NCHW: the dense layer sees the same features in another order (no difference when trained from
scratch; a Keras checkpoint would need its kernel's rows permuted, and there is no such loader).

Stage view: the CNN's stem is conv 1 (F_0, 32 channels), stage 1 max-pool + conv 2 (64 channels),
stage 2 the second max-pool; the pooled embedding is the dense-128 output (after the first dropout),
the classifier dropout + the last dense layer. The MLP's stem flattens the image (F_0 is the image
as a vector), its stages are the two hidden layers, its embedding the second hidden layer's output:
its features are vectors, not maps, so only logit methods (``kd``, ``vanilla``) apply to it. Both
take ``image_shape`` (C, H, W) from the data set (the digits stand-in is 3x8x8, where the CNN's maps
are 6, 5, 3 and 1 pixels wide). Neither has a CRD checkpoint format (``crd_key_rules = None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from kdbench.models import MODELS
from kdbench.models.base import Stage, StagedModel, StageInfo

MNIST_SHAPE = (1, 28, 28)


def glorot_init(model: nn.Module) -> None:
    """Keras's defaults: Glorot-uniform weights (fans over the receptive field, as Keras counts them), zero biases."""
    if any(p.is_meta for p in model.parameters()):
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(size) for size in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"image_shape must be (channels, height, width), got {tuple(image_shape)}")
    return shape  # type: ignore[return-value]


class CourseCNN(StagedModel):
    """conv 32 -> max-pool (stride 1) -> conv 64 -> max-pool -> dropout -> dense 128 -> dropout -> dense."""

    crd_key_rules: ClassVar[None] = None

    def __init__(
        self,
        num_classes: int,
        image_shape: Sequence[int] = MNIST_SHAPE,
        dropout: float = 0.5,
        first_pool_stride: int = 1,
    ):
        super().__init__()
        if first_pool_stride not in (1, 2):
            raise ValueError(
                f"first_pool_stride: {first_pool_stride!r} must be 1 (the course notebook) or 2 (Keras's default)"
            )
        channels, height, width = _check_shape(image_shape)
        self.input_size = (height, width)
        self.first_pool_stride = first_pool_stride
        sizes = [self._map_sizes(side, first_pool_stride) for side in (height, width)]
        if min(sizes[0][-1], sizes[1][-1]) < 1:
            smallest = 7 if first_pool_stride == 1 else 10
            raise ValueError(
                f"course_cnn (first_pool_stride {first_pool_stride}) needs images of at least {smallest}x{smallest} "
                f"pixels, got {height}x{width}"
            )
        self.stem = nn.Sequential(nn.Conv2d(channels, 32, 3), nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(
            [
                Stage(nn.MaxPool2d(2, stride=first_pool_stride), nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True)),
                Stage(nn.MaxPool2d(2, stride=2)),
            ]
        )
        self.pool = nn.Flatten()
        flat = 64 * sizes[0][-1] * sizes[1][-1]
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(flat, 128), nn.ReLU(inplace=True))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(128, num_classes))
        self.embedding_dim = 128
        # strides as the total down-sampling; the exact map sizes (valid convs) come from feature_sizes
        self.feature_info = [StageInfo(32, 1), StageInfo(64, first_pool_stride), StageInfo(64, 2 * first_pool_stride)]
        glorot_init(self)

    @staticmethod
    def _map_sizes(side: int, first_pool_stride: int = 1) -> list[int]:
        """F_0, stage 1 and stage 2 side lengths: valid 3x3 conv, 2x2 pool (stride 1 or 2), valid conv,
        2x2 pool stride 2."""
        stem = side - 2
        stage1 = (stem - 2) // first_pool_stride + 1 - 2
        return [stem, stage1, stage1 // 2]

    def embed(self, last_stage_output: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.pool(last_stage_output))

    def feature_sizes(self, image_size: int) -> list[int]:
        return self._map_sizes(image_size, self.first_pool_stride)


class CourseMLP(StagedModel):
    """flatten -> dense 784 -> dense 784 -> dense classes, ReLU between."""

    crd_key_rules: ClassVar[None] = None

    def __init__(self, num_classes: int, image_shape: Sequence[int] = MNIST_SHAPE, hidden: int = 784):
        super().__init__()
        inputs = 1
        for size in _check_shape(image_shape):
            inputs *= size
        self.stem = nn.Flatten()
        self.stages = nn.ModuleList(
            [
                Stage(nn.Linear(inputs, hidden), nn.ReLU(inplace=True)),
                Stage(nn.Linear(hidden, hidden), nn.ReLU(inplace=True)),
            ]
        )
        self.pool = nn.Identity()
        self.classifier = nn.Linear(hidden, num_classes)
        self.embedding_dim = hidden
        self.feature_info = [StageInfo(inputs, 1, spatial=False), StageInfo(hidden, 1, spatial=False)]
        self.feature_info.append(StageInfo(hidden, 1, spatial=False))
        glorot_init(self)

    def feature_sizes(self, image_size: int) -> list[int]:
        return [1, 1, 1]  # vectors: no spatial extent


@MODELS.register("course_cnn", aliases=("CourseCNN", "course-teacher-cnn"))
def course_cnn(num_classes: int, image_shape: Sequence[int] = MNIST_SHAPE, first_pool_stride: int = 1) -> CourseCNN:
    """``first_pool_stride: 2`` is the subclass-distillation colab's CNN (Keras's MaxPooling2D default)."""
    return CourseCNN(num_classes, image_shape, first_pool_stride=first_pool_stride)


@MODELS.register("course_mlp", aliases=("CourseMLP", "course-student-fc"))
def course_mlp(num_classes: int, image_shape: Sequence[int] = MNIST_SHAPE) -> CourseMLP:
    return CourseMLP(num_classes, image_shape)
