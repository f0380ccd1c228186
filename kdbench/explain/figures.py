"""Image grids of the maps: a column per image, rows input, teacher, each student row; PNG and PDF.

Each map is shown over its image, divided by its own maximum (the models' logit scales differ, so only
the shape of a map is comparable across rows; the scores are scale-free too), with one colour bar.
A student row shows the row's first finished seed (named in the row's title).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: overlay colours and their opacity over the image
COLORMAP = "jet"
ALPHA = 0.5
CELL_INCHES = 1.3


def _as_picture(image: torch.Tensor) -> np.ndarray:
    """uint8 C x H x W -> what imshow takes: H x W (grey) or H x W x 3."""
    array = image.cpu().numpy()
    if array.shape[0] == 1 or (array.shape[0] == 3 and (array[0] == array[1]).all() and (array[1] == array[2]).all()):
        return array[0]
    if array.shape[0] == 3:
        return np.transpose(array, (1, 2, 0))
    return array.mean(axis=0)


def _scaled(heatmap: torch.Tensor) -> np.ndarray:
    top = float(heatmap.max())
    return (heatmap / top).numpy() if top > 0 else heatmap.numpy()


def draw_grid(
    pictures: list[np.ndarray],
    titles: list[str],
    rows: list[tuple[str, list[np.ndarray]]],
    heading: str,
    path_stem: Path,
) -> list[Path]:
    """Write ``<path_stem>.png`` and ``.pdf``: the pictures, then one row of overlays per (title, maps)."""
    from matplotlib.figure import Figure

    columns = len(pictures)
    figure = Figure(figsize=(CELL_INCHES * columns + 1.6, CELL_INCHES * (len(rows) + 1) + 0.6), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(rows) + 1, columns, squeeze=False))
    image_options = {"interpolation": "nearest"}
    shown = None
    for column, picture in enumerate(pictures):
        grey = picture.ndim == 2
        axes[0, column].imshow(picture, cmap="gray" if grey else None, vmin=0, vmax=255, **image_options)
        axes[0, column].set_title(titles[column], fontsize=8)
        for row_index, (_, maps) in enumerate(rows, start=1):
            axis = axes[row_index, column]
            axis.imshow(picture, cmap="gray" if grey else None, vmin=0, vmax=255, **image_options)
            shown = axis.imshow(maps[column], cmap=COLORMAP, alpha=ALPHA, vmin=0, vmax=1, **image_options)
    for row_index, label in enumerate(["input", *(title for title, _ in rows)]):
        axes[row_index, 0].set_ylabel(label, fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    if shown is not None:
        figure.colorbar(shown, ax=axes[1:, :].ravel().tolist(), shrink=0.8, label="map / its maximum")
    figure.suptitle(heading, fontsize=9)
    written = []
    for suffix in (".png", ".pdf"):
        path = path_stem.with_suffix(suffix)
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def write_grids(document: dict, grids: list, pictures_raw: torch.Tensor, out: Path, stem: str) -> dict[str, Path]:
    """One grid per pair and view (``<stem>[-<view>]-<teacher>-<student>.png/.pdf``) of the first images.

    ``grids`` are ``runner.GridRows``: per pair, (row title, {view: maps of the shown images}).
    """
    from kdbench.explain.tables import describe

    count = pictures_raw.shape[0]
    pictures = [_as_picture(pictures_raw[i]) for i in range(count)]
    titles = [f"class {label}" for label in document["labels"][:count]]
    written: dict[str, Path] = {}
    for grid in grids:
        for view in document["views"]:
            rows = [(title, [_scaled(maps[view][i]) for i in range(count)]) for title, maps in grid.rows]
            name = stem + ("" if view == "gradcam" else f"-{view}")
            if view == "gradcam":
                heading = f"{describe(document)}\n(teacher {grid.layers[0]}, students {grid.layers[1]})"
            else:
                heading = f"{describe(document)}; map: {view}"
            for path in draw_grid(pictures, titles, rows, heading, out / f"{name}-{grid.teacher}-{grid.student}"):
                written[path.name] = path
    return written
