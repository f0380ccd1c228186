"""The test images every model is explained on: the same for all, seeded, balanced over classes."""

from __future__ import annotations

import numpy as np
import torch


def choose_images(labels: torch.Tensor, count: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``count`` images of a split with these ``labels``, as evenly spread over classes as the split allows.

    Classes take turns in a seeded order, each giving its next image from a seeded permutation of its own
    images; a class that runs out drops from the rotation. Image j of the result is therefore of the
    (j mod C)-th class in that order while every class still has images, so the first C images (a grid's
    columns) show C different classes. The choice depends only on the labels, ``count`` and ``seed``.
    """
    labels_np = labels.cpu().numpy()
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels_np))
    queues = [list(rng.permutation(np.flatnonzero(labels_np == c))) for c in classes]
    chosen: list[int] = []
    count = min(count, len(labels_np))
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(int(queue.pop(0)))
    return torch.tensor(chosen, dtype=torch.long)
