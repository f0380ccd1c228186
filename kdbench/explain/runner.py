"""``kdbench explain`` for a suite: maps of every finished run on the same test images, scores, files.

For each pair of the suite the teacher and every student row's finished runs are explained on the same
N test images (``images.choose_images``: seeded, class-balanced), for the ground-truth class of each
image. Scores (``scores``) compare each student's map with the teacher's. The independent student of
Ojha et al.'s comparison is the pair's Vanilla student (the row trained with CE alone) of the *next*
seed of the suite (wrapping around: seeds 0, 1, 2 compare with Vanilla seeds 1, 2, 0): another seed,
because the Vanilla student of the same seed starts from the same weights and sees the same batches as
every other method's student of that seed (paired runs), and because the Vanilla-vs-Vanilla control
needs two different students. With two seeds the control's mean is 50% by construction (seed 0's
rate r against seed 1 and seed 1's 100 - r against seed 0, ties counting one half each way); its
spread over seeds is the noise level a distilled row has to clear.

Choices of ours, beside the references: the images come from the test split (Tiny-ImageNet's
validation images, as the SRKD paper's Figure 6); maps are taken for the ground-truth class (Ojha et
al.; Grad-CAM itself takes any class); the rate compares cosine similarities (the issue's reading of
Ojha et al.; Spearman is reported beside it, not used for the rate); grids show each row's first seed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdbench.explain.attribution import LAST, attribute, resolve_layer, views
from kdbench.explain.images import choose_images
from kdbench.explain.scores import average_ranks, closer_rate, cosine_similarity, mean_and_std, pearson_correlation
from kdbench.models import MODELS, StagedModel, create_model
from kdbench.models.checkpoint import load_crd_checkpoint
from kdbench.results.store import DONE, ResultStore, atomic_write_json
from kdbench.suite import RunSpec, Suite

TARGET = "ground-truth class"
INDEPENDENT_RULE = (
    "the pair's Vanilla student of the next seed of the suite (wrapping around); a tie in cosine counts 1/2"
)


class ExplainError(ValueError):
    """A selection that cannot be explained (no such pair or row, no finished run): a user-facing message."""


@dataclass(frozen=True)
class ExplainOptions:
    method: str = "gradcam"
    layer: str = LAST
    images: int = 200
    grid_images: int = 8
    image_seed: int = 0
    batch_size: int = 128
    per_channel: bool = False
    pairs: tuple[tuple[str, str], ...] = ()
    rows: tuple[str, ...] = ()
    device: str = "auto"
    progress: bool = True

    @property
    def stem(self) -> str:
        """The files' name: ``gradcam-<layer>`` or ``saliency``."""
        return f"gradcam-{self.layer}" if self.method == "gradcam" else "saliency"


@dataclass
class ModelToExplain:
    key: str  # run id, or the teacher file's path
    architecture: str
    weights: Path


@dataclass
class PairSelection:
    teacher: ModelToExplain
    student: str
    #: row label -> seed -> finished run (explained rows only)
    rows: dict[str, dict[int, RunSpec]] = field(default_factory=dict)
    #: row label -> seeds planned but not finished
    unfinished: dict[str, list[int]] = field(default_factory=dict)
    #: the Vanilla row: seed -> finished run (the independent students)
    vanilla: dict[int, RunSpec] = field(default_factory=dict)
    vanilla_row: str | None = None

    def students(self) -> list[RunSpec]:
        """Every finished run of the explained rows."""
        return [spec for row in self.rows.values() for spec in row.values()]


def row_label(spec: RunSpec) -> str:
    """A student row of the report: the method label, with its sweep point where there is one."""
    if not spec.sweep:
        return spec.method
    own = f"methods.{spec.method}."  # a sweep over the row's own parameter reads as kd.temperature=4
    points = ", ".join(f"{k.removeprefix(own)}={v}" for k, v in sorted(spec.sweep.items()))
    return f"{spec.method} [{points}]"


def is_vanilla(spec: RunSpec) -> bool:
    return [name for name, _ in spec.terms] == ["vanilla"] and not spec.sweep


def independent_seed(seed: int, vanilla_seeds: Sequence[int]) -> int | None:
    """The Vanilla seed a student of ``seed`` is compared with: the next one after it, wrapping around."""
    ordered = sorted(vanilla_seeds)
    later = [s for s in ordered if s > seed] + [s for s in ordered if s < seed]
    return later[0] if later else None


def _finished_model(store: ResultStore, spec: RunSpec) -> Path | None:
    path = store.run_dir(spec.run_id) / "model.pt"
    return path if store.status(spec.run_id) == DONE and path.exists() else None


def _teacher_sources(runs: Sequence[RunSpec], store: ResultStore) -> dict[str, ModelToExplain | str]:
    """Pair teacher name -> its weights, or why it cannot be explained."""
    sources: dict[str, ModelToExplain | str] = {}
    for spec in runs:
        if spec.kind == "teacher":
            path = _finished_model(store, spec)
            found = ModelToExplain(spec.run_id, spec.student, path) if path else f"teacher run {spec.run_id} unfinished"
            sources.setdefault(spec.student, found)
        elif spec.teacher_checkpoint:
            path = Path(spec.teacher_checkpoint)
            found = ModelToExplain(str(path), spec.teacher, path) if path.exists() else f"{path} not found"
            sources.setdefault(spec.teacher, found)
    return sources


def _canonical_pair(pair: tuple[str, str]) -> tuple[str, str]:
    return (MODELS.canonical(pair[0]), MODELS.canonical(pair[1]))


def select(runs: Sequence[RunSpec], store: ResultStore, options: ExplainOptions) -> list[PairSelection]:
    """The pairs, rows and finished runs to explain; raises ExplainError for a selection that names nothing."""
    students = [s for s in runs if s.kind == "student" and not s.not_applicable]
    planned_pairs = list(dict.fromkeys(s.pair for s in students))
    wanted_pairs = [_canonical_pair(p) for p in options.pairs] or planned_pairs
    for pair in wanted_pairs:
        if pair not in planned_pairs:
            choices = ", ".join(f"{t},{s}" for t, s in planned_pairs)
            raise ExplainError(f"--pair {pair[0]},{pair[1]} is not a pair of the suite; its pairs: {choices}")
    labels = list(dict.fromkeys(row_label(s) for s in students))
    for row in options.rows:
        if row not in labels:
            from kdbench.registry import nearest_first

            choices = ", ".join(nearest_first(row, labels))
            raise ExplainError(f"--row {row!r} is not a student row of the suite; its rows: {choices}")
    teachers = _teacher_sources(runs, store)
    selections = []
    for teacher_name, student_name in wanted_pairs:
        source = teachers.get(teacher_name, f"no teacher run or file for {teacher_name} in the plan")
        if isinstance(source, str):
            raise ExplainError(f"cannot explain {teacher_name} -> {student_name}: {source}")
        selection = PairSelection(teacher=source, student=student_name)
        for spec in students:
            if spec.pair != (teacher_name, student_name):
                continue
            label = row_label(spec)
            path = _finished_model(store, spec)
            if is_vanilla(spec) and path:
                selection.vanilla_row = selection.vanilla_row or label
                if label == selection.vanilla_row:
                    selection.vanilla[spec.seed] = spec
            if options.rows and label not in options.rows:
                continue
            if path:
                selection.rows.setdefault(label, {})[spec.seed] = spec
            else:
                selection.unfinished.setdefault(label, []).append(spec.seed)
        if not selection.rows:
            raise ExplainError(f"{teacher_name} -> {student_name}: no finished student run to explain (run the suite)")
        selections.append(selection)
    return selections


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 N x C x H x W -> the float inputs the models were trained on ((x / 255 - mean) / std)."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (images.to(torch.float32) / 255 - mean_t) / std_t


@dataclass
class Explained:
    """One model's maps (by view name, N x H x W on the CPU) and which of the images it classifies right."""

    maps: dict[str, torch.Tensor]
    correct: torch.Tensor
    layer: str | None
    _ranks: dict[str, torch.Tensor] = field(default_factory=dict)

    def ranks(self, view: str) -> torch.Tensor:
        """Average ranks of each image's map, kept (a teacher's are compared with every student's)."""
        if view not in self._ranks:
            self._ranks[view] = rank_rows(self.maps[view])
        return self._ranks[view]


def rank_rows(maps: torch.Tensor) -> torch.Tensor:
    """N x D average ranks of each flattened map (float64)."""
    flat = maps.reshape(maps.shape[0], -1).to(torch.float64)
    return torch.stack([average_ranks(row) for row in flat])


def explain_model(
    model: StagedModel,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    options: ExplainOptions,
    device: torch.device,
    progress,
) -> Explained:
    """Maps of ``model`` for every image, in batches on ``device``."""
    model.to(device).eval()
    layer = resolve_layer(model, options.layer)[0] if options.method == "gradcam" else None
    chunks: list[torch.Tensor] = []
    correct: list[torch.Tensor] = []
    for start in range(0, len(labels), options.batch_size):
        batch = inputs[start : start + options.batch_size].to(device)
        targets = labels[start : start + options.batch_size].to(device)
        chunks.append(attribute(options.method, model, batch, targets, options.layer).float().cpu())
        with torch.no_grad():
            correct.append((model(batch).argmax(dim=1) == targets).cpu())
        progress.update(1)
    maps = views(options.method, torch.cat(chunks), options.per_channel)
    return Explained(maps, torch.cat(correct), layer)


def _load(architecture: str, weights: Path, num_classes: int, image_shape: tuple[int, ...]) -> StagedModel:
    """The trained network, built as training builds a teacher it loads (the family's defaults, the data's shape)."""
    model = create_model(architecture, num_classes, image_shape)
    load_crd_checkpoint(model, weights)
    return model


def _summary(values: torch.Tensor) -> dict:
    mean, std = mean_and_std(values)
    return {"mean": mean, "std": std}


def _over_seeds(per_seed: list[dict], key: str) -> dict:
    mean, std = mean_and_std([s[key]["mean"] for s in per_seed])
    image_std, _ = mean_and_std([s[key]["std"] for s in per_seed if s[key]["std"] is not None])
    return {"mean": mean, "std": std, "image_std": image_std}


def score_row(
    teacher: Explained, row: dict[int, RunSpec], explained: dict[str, Explained], vanilla: dict[int, RunSpec], view: str
) -> dict:
    """Scores of one student row against the teacher, per seed and over seeds."""
    per_seed = []
    for seed, spec in sorted(row.items()):
        student = explained[spec.run_id]
        cosine = cosine_similarity(teacher.maps[view], student.maps[view])
        spearman = pearson_correlation(teacher.ranks(view), rank_rows(student.maps[view]))  # not kept
        record = {
            "seed": seed,
            "run_id": spec.run_id,
            "top1": 100.0 * float(student.correct.double().mean()),
            "cosine": _summary(cosine),
            "spearman": _summary(spearman),
            "independent_seed": None,
            "independent_run_id": None,
            "closer_rate": None,
        }
        other = independent_seed(seed, list(vanilla))
        if other is not None:
            independent = explained[vanilla[other].run_id]
            independent_cosine = cosine_similarity(teacher.maps[view], independent.maps[view])
            record.update(
                independent_seed=other,
                independent_run_id=vanilla[other].run_id,
                closer_rate=100.0 * closer_rate(cosine, independent_cosine),
            )
        per_seed.append(record)
    rates = [s["closer_rate"] for s in per_seed if s["closer_rate"] is not None]
    rate_mean, rate_std = mean_and_std(rates) if rates else (None, None)
    return {
        "seeds": per_seed,
        "n": len(per_seed),
        "cosine": _over_seeds(per_seed, "cosine"),
        "spearman": _over_seeds(per_seed, "spearman"),
        "closer_rate": {"mean": rate_mean, "std": rate_std, "n": len(rates)},
        "top1": dict(zip(("mean", "std"), mean_and_std([s["top1"] for s in per_seed]), strict=True)),
    }


@dataclass
class GridRows:
    """What a pair's grids show: the first images' maps of the teacher and of each row's first seed."""

    teacher: str
    student: str
    layers: tuple[str | None, str | None]
    rows: list[tuple[str, dict[str, torch.Tensor]]] = field(default_factory=list)


def explain_suite(
    suite: Suite, runs: Sequence[RunSpec], store: ResultStore, options: ExplainOptions, out: str | Path | None = None
) -> dict[str, Path]:
    """Explain the suite's finished runs; writes the JSON, the Markdown table and the grids; returns their paths.

    Only the teachers' and the Vanilla students' maps stay in memory (every row is compared with them);
    each other student is explained, scored and dropped, keeping the few maps its grid shows.
    """
    from tqdm.auto import tqdm

    import kdbench
    from kdbench.explain.figures import write_grids
    from kdbench.explain.tables import scores_markdown
    from kdbench.train import cpu_threads, load_data, resolve_device

    selections = select(runs, store, options)
    datasets = {json.dumps(spec.dataset, sort_keys=True) for sel in selections for spec in sel.students()}
    if len(datasets) > 1:
        raise ExplainError("the selected runs use several data set configurations; select one (--pair, --row)")
    data = load_data(selections[0].students()[0])
    indices = choose_images(data.test.labels, options.images, options.image_seed)
    raw = data.test.images[indices]
    labels = data.test.labels[indices]
    inputs = normalise(raw, data.mean, data.std)
    device = resolve_device(options.device)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    shown = min(options.grid_images, len(labels))

    models: dict[str, tuple[str, Path]] = {}
    for sel in selections:
        models.setdefault(sel.teacher.key, (sel.teacher.architecture, sel.teacher.weights))
        for spec in [*sel.students(), *sel.vanilla.values()]:
            models.setdefault(spec.run_id, (spec.student, store.run_dir(spec.run_id) / "model.pt"))
    kept = {sel.teacher.key for sel in selections} | {s.run_id for sel in selections for s in sel.vanilla.values()}
    cache: dict[str, Explained] = {}
    batches = -(-len(labels) // options.batch_size)
    progress = tqdm(total=len(models) * batches, desc=f"{options.method} {suite.name}", unit="batch",
                    disable=None if options.progress else True)  # fmt: skip

    def explained(key: str) -> Explained:
        if key in cache:
            return cache[key]
        architecture, weights = models[key]
        try:
            result = explain_model(_load(architecture, weights, data.num_classes, data.image_shape),
                                   inputs, labels, options, device, progress)  # fmt: skip
        except ValueError as error:  # a file that does not fit, a layer the model lacks
            raise ExplainError(str(error)) from None
        if key in kept:
            cache[key] = result
        return result

    document: dict = {
        "suite": suite.name,
        "method": options.method,
        "layer": options.layer if options.method == "gradcam" else None,
        "target": TARGET,
        "split": "test",
        "images": len(labels),
        "image_seed": options.image_seed,
        "image_indices": indices.tolist(),
        "labels": labels.tolist(),
        "independent": INDEPENDENT_RULE,
        "device": str(device),
        "kdbench_version": kdbench.__version__,
        "views": [],
        "pairs": [],
    }
    grids: list[GridRows] = []
    with progress:
        for sel in selections:
            teacher = explained(sel.teacher.key)
            document["views"] = view_names = list(teacher.maps)
            vanilla = {spec.run_id: explained(spec.run_id) for spec in sel.vanilla.values()}
            pair: dict = {
                "teacher": sel.teacher.architecture,
                "student": sel.student,
                "teacher_weights": sel.teacher.key,
                "teacher_layer": teacher.layer,
                "teacher_top1": 100.0 * float(teacher.correct.double().mean()),
                "vanilla_row": sel.vanilla_row,
                "rows": [],
            }
            grid = GridRows(sel.teacher.architecture, sel.student, (teacher.layer, None))
            grid.rows.append((f"Teacher\n{sel.teacher.architecture}", _first(teacher, shown)))
            for label in dict.fromkeys([*sel.rows, *sel.unfinished]):
                row = sel.rows.get(label, {})
                entry: dict = {
                    "row": label,
                    "control": label == sel.vanilla_row,
                    "unfinished_seeds": sorted(sel.unfinished.get(label, [])),
                    "views": {},
                }
                if row:
                    students = {**vanilla, **{spec.run_id: explained(spec.run_id) for spec in row.values()}}
                    first_seed = min(row)
                    first = students[row[first_seed].run_id]
                    entry["student_layer"] = first.layer
                    entry["views"] = {v: score_row(teacher, row, students, sel.vanilla, v) for v in view_names}
                    grid.layers = (teacher.layer, first.layer)
                    grid.rows.append((f"{label}\nseed {first_seed}", _first(first, shown)))
                pair["rows"].append(entry)
            document["pairs"].append(pair)
            grids.append(grid)

    out = Path(out) if out is not None else store.suite_dir(suite.name) / "explain"
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / f"{options.stem}.json", "markdown": out / f"{options.stem}.md"}
    atomic_write_json(written["json"], document)
    written["markdown"].write_text(scores_markdown(document), encoding="utf-8")
    written.update(write_grids(document, grids, raw[:shown], out, options.stem))
    return written


def _first(model: Explained, count: int) -> dict[str, torch.Tensor]:
    """The maps of the first ``count`` images, by view (a copy: the full maps can be freed)."""
    return {view: maps[:count].clone() for view, maps in model.maps.items()}
