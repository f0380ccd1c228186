"""One run, end to end: setup, epochs, evaluation, checkpoint, result.

Read top to bottom. A run is fully defined by its ``spec.yaml`` and seed: the student's initial
weights depend only on (architecture, seed), and so does the data order, so every method of a pair
starts from the same student and sees the same batches. The checkpoint written after every epoch
holds everything that moves (student, the method's parts, optimizer, scheduler, RNG states, the
metrics so far); a run killed at any point and started again ends with exactly the numbers of a run
that was never stopped.
"""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml

import kdbench
from kdbench.data import DataSource, load_dataset
from kdbench.data.loaders import make_loader
from kdbench.errors import count_of, first_line
from kdbench.methods import METHODS
from kdbench.metrics import evaluate_classifier
from kdbench.models import StagedModel
from kdbench.models.checkpoint import load_crd_checkpoint, save_crd_checkpoint, sha256_of
from kdbench.models.flops import count_flops, count_parameters
from kdbench.models.subclass_head import create_model_with_head, head_subclasses
from kdbench.models.torchvision_backbones import WeightsError
from kdbench.recipe import Selector, make_scheduler, resolve_selection, split_validation
from kdbench.results.schema import make_result
from kdbench.results.store import PREVIOUS_CHECKPOINT_FILE, atomic_write_bytes, atomic_write_json, write_failure
from kdbench.step import (  # noqa: F401  (make_optimizer, training_step: imported from here by callers)
    Autocast,
    build_training_step,
    derive_seed,
    make_optimizer,
    training_step,
)
from kdbench.suite import RunSpec

#: 2: CPU runs train in channels_last (their last bits differ from version 1's contiguous layout)
CHECKPOINT_VERSION = 2


class RunFailed(Exception):
    """The run stopped for a reason recorded in its ``failed.json`` (a NaN loss, a missing teacher)."""


class NonFiniteLoss(RunFailed):
    pass


@dataclass
class CallReport:
    """What one ``train_run`` call did, for callers that tell the user: the epochs its checkpoint held when
    it started (0: trained from the first epoch) and the epochs it trained (0 for a done run: its result
    was rebuilt from a checkpoint that held every epoch). Init-stage epochs count too."""

    resumed_epochs: int = 0
    trained_epochs: int = 0


def cpu_threads() -> int:
    """Intra-op threads of a CPU run: ``$KDBENCH_CPU_THREADS``, else 1.

    One thread by default because CPU results depend on the thread count (reductions split
    differently): with one, a run gives the same numbers on any machine and under any executor, and
    the small models kdbench trains on a CPU run fastest on one thread anyway (measured: a ResNet56
    step on 8x8 digits took 0.09 s on one thread and 0.8 s on two with another process busy).
    """
    value = os.environ.get("KDBENCH_CPU_THREADS", "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def read_spec(run_dir: Path) -> RunSpec:
    return RunSpec.from_dict(yaml.safe_load((run_dir / "spec.yaml").read_text()))


def load_data(spec: RunSpec, data_root: str | None = None) -> DataSource:
    """The run's data set; the root comes from the spec, else ``--data-root``, else ``$KDBENCH_DATA``, else ./data."""
    from kdbench.data import dataset_parameters

    params = {k: v for k, v in spec.dataset.items() if k not in {"name", "loader"}}
    accepted = dataset_parameters(spec.dataset["name"])
    root = data_root or params.get("root") or os.environ.get("KDBENCH_DATA") or "data"
    if "root" in accepted:
        params["root"] = root
    data = load_dataset(spec.dataset["name"], **{k: v for k, v in params.items() if k in accepted})
    if spec.dataset.get("groups"):
        from kdbench.data.grouping import group_classes

        data = group_classes(data, spec.dataset["groups"])  # e.g. MNIST 0-4 vs 5-9
    return data


def hold_out_validation(spec: RunSpec, data: DataSource) -> tuple[DataSource, Any]:
    """The data with ``schedule.validation``'s stratified fraction held out of its train split (the same
    images for every run: the split has its own seed), and that held-out split; None without one."""
    validation = spec.schedule.get("validation")
    if not validation:
        return data, None
    kept, held_out = split_validation(data.train, validation["fraction"], validation.get("seed", 0))
    return dataclasses.replace(data, train=kept), held_out


@dataclass
class Loaders:
    train: Any
    test: Any
    validation: Any = None


def make_loaders(spec: RunSpec, data: DataSource, device: torch.device, validation: Any = None) -> Loaders:
    """The device-resident path by default (``loader: auto``); ``loader: torchvision`` is the CRD code's."""
    kind = spec.dataset.get("loader", "auto")
    common = dict(
        batch_size=spec.schedule["batch_size"],
        mean=data.mean,
        std=data.std,
        device=device,
        channels_last=bool(spec.training.get("channels_last")),
        kind="tensor" if kind == "auto" else kind,
    )
    # methods with a per-image memory (CRD) get each image's index in the training split with its batch
    with_indices = any(METHODS.get(name).needs_indices for name, _ in spec.terms)
    train = make_loader(
        data.train,
        train=True,
        augmentation=data.augmentation,
        seed=derive_seed(spec.seed, "data"),
        with_indices=with_indices,
        **common,
    )
    test = make_loader(data.test, train=False, augmentation=None, seed=0, **common)
    held_out = None if validation is None else make_loader(validation, train=False, augmentation=None, seed=0, **common)
    return Loaders(train, test, held_out)


def build_teacher(
    spec: RunSpec, run_dir: Path, num_classes: int, device: torch.device, image_shape: Any = None
) -> tuple[StagedModel | None, dict]:
    """The frozen teacher: from the suite's own teacher run, or from a CRD-format checkpoint file."""
    if spec.teacher is None:
        return None, {}
    # a teacher run's head (subclass logits) follows from its method terms (kdbench.models.subclass_head)
    teacher_dir = run_dir.parent / spec.teacher_run if spec.teacher_run is not None else None
    known = teacher_dir is not None and (teacher_dir / "spec.yaml").exists()
    subclasses = head_subclasses(read_spec(teacher_dir).terms) if known else None
    teacher = create_model_with_head(spec.teacher, num_classes, image_shape, subclasses)
    if spec.teacher_run is not None:
        path = run_dir.parent / spec.teacher_run / "model.pt"
        if not path.exists():
            raise RunFailed(f"teacher run {spec.teacher_run} has not finished: {path} is missing")
    else:
        path = Path(spec.teacher_checkpoint)
        if not path.exists():
            raise RunFailed(f"teacher checkpoint not found: {path}")
    load_weights(teacher, path)
    info = {"teacher_weights": str(path), "teacher_sha256": sha256_of(path)}
    if spec.teacher_sha256 and info["teacher_sha256"] != spec.teacher_sha256:
        # the run's id holds the content it was planned with: another file's students are other runs
        raise RunFailed(
            f"teacher file {path} changed since the suite was planned (its SHA-256 is now "
            f"{info['teacher_sha256'][:12]}..., planned {spec.teacher_sha256[:12]}...): run kdbench run again "
            "to plan with the file as it is (its students get new ids; these stay as they were)"
        )
    return teacher.to(device), info


def load_weights(model: StagedModel, path: Path) -> None:
    try:
        load_crd_checkpoint(model, path)
    except ValueError as error:  # the file does not fit the architecture: a user-facing reason
        raise RunFailed(str(error)) from None


def evaluate(model: StagedModel, batches: Any, autocast: Autocast, prefix: str = "test") -> dict[str, Any]:
    """Loss, top-1 and top-5 (top-k with k capped at the class count) in %, macro and weighted F1, the
    per-class recall / precision / F1 and the confusion matrix (``kdbench.metrics``), keys prefixed."""
    metrics = evaluate_classifier(model, batches, None, autocast)
    return {f"{prefix}_{key}": value for key, value in metrics.items()}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(kdbench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_checkpoint(path: Path, state: dict) -> None:
    """Write the epoch's checkpoint; the one before it stays as checkpoint.prev.pt until this one is on disk
    whole (its size checked), the fallback of ``_load_checkpoint`` when the newest is damaged."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    previous = path.with_name(PREVIOUS_CHECKPOINT_FILE)
    if path.exists():
        os.replace(path, previous)
    atomic_write_bytes(path, data)
    if path.stat().st_size != len(data):
        raise OSError(f"{path}: wrote {path.stat().st_size} of {len(data)} bytes")


def _load_checkpoint(path: Path, device: torch.device, run_id: str) -> dict | None:
    """The newest checkpoint that loads: ``path``, else checkpoint.prev.pt (one epoch older; it becomes
    ``path``). A damaged file is kept beside under its own name (checkpoint.damaged.pt,
    checkpoint.prev.damaged.pt), and one line on stderr says what was found and where training goes on.
    None: train from the first epoch."""
    previous = path.with_name(PREVIOUS_CHECKPOINT_FILE)
    said: list[str] = []
    for candidate in (path, previous):
        if not candidate.exists():
            if candidate == path and previous.exists():  # killed between the two renames of _save_checkpoint
                said.append(f"{path.name} is missing")
            continue
        try:
            state = torch.load(candidate, map_location=device, weights_only=False)
        except Exception as error:  # torch raises several kinds for a truncated or garbled file
            kept = candidate.with_name(candidate.name.removesuffix(".pt") + ".damaged.pt")
            why = _why_unreadable(candidate, error)
            os.replace(candidate, kept)
            said.append(f"{candidate.name} is damaged ({why}); kept as {kept.name}")
            continue
        if candidate != path:
            os.replace(candidate, path)
            done = state.get("epoch", 0)
            said.append(f"resuming from {candidate.name} at epoch {done + 1} ({count_of(done, 'epoch')} done)")
        if said:
            notice(f"{run_id}: " + "; ".join(said))
        return state
    if said:
        notice(f"{run_id}: " + "; ".join(said) + "; no checkpoint left that loads: training restarts from epoch 1")
    return None


def _why_unreadable(path: Path, error: Exception) -> str:
    """A short reason a file did not load: its first sentence (torch's go on for lines), or that it is empty."""
    if path.stat().st_size == 0:
        return "the file is empty"
    return first_line(error, 120).split(". ")[0]


def notice(line: str) -> None:
    """One line for the user on stderr in kdbench's voice ("kdbench: ..."), not torn into progress bars.

    Through ``tqdm.write``, which lifts this process's bars around the line. A worker process of the local
    executor has no bars of its own (its parent draws them on the same terminal): there the bar's line is
    cleared first, and the bar comes back below at its next update.
    """
    from tqdm.auto import tqdm

    stream = sys.stderr
    text = f"kdbench: {line}"
    if multiprocessing.parent_process() is not None and getattr(stream, "isatty", lambda: False)():
        text = "\r\x1b[K" + text
    tqdm.write(text, file=stream)
    stream.flush()


def _write_metrics(path: Path, metrics: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics).encode())


def train_run(
    run_dir: str | Path,
    *,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = False,
    stop_after_epochs: int | None = None,
    report: CallReport | None = None,
) -> dict:
    """Train (or resume) the run in ``run_dir``; returns the result record, also written to result.json.

    ``stop_after_epochs`` ends the process's work after that many epochs of this call (tests use it to
    interrupt a run at an epoch boundary; kill -9 interrupts it anywhere). ``report``, when given, is
    filled in with where the call started and how many epochs it trained.
    """
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    report = report if report is not None else CallReport()
    try:
        return _train(spec, run_dir, resolve_device(device), data_root, progress, stop_after_epochs, report)
    except RunFailed as error:
        write_failure(run_dir, error, expected=True)
        raise


def _train(
    spec: RunSpec,
    run_dir: Path,
    device: torch.device,
    data_root: str | None,
    progress: bool,
    stop_after: int | None,
    report: CallReport,
) -> dict:
    started = time.perf_counter()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    data, validation = hold_out_validation(spec, load_data(spec, data_root))
    loaders = make_loaders(spec, data, device, validation)

    # -- models: the student's init depends only on (architecture, seed); method parts seeded apart --
    torch.manual_seed(derive_seed(spec.seed, "student-init"))
    # the suite's options of the student (`models:`: pretrained weights, trainable blocks)
    try:
        student = create_model_with_head(
            spec.student,
            data.num_classes,
            data.image_shape,
            head_subclasses(spec.terms),
            **spec.models.get(spec.student, {}),
        )
    except WeightsError as error:  # pretrained weights missing or not fitting: a user-facing reason
        raise RunFailed(str(error)) from None
    teacher, teacher_info = build_teacher(spec, run_dir, data.num_classes, device, data.image_shape)
    # the distiller on the device (layout, compile), its optimizers and autocast: what `kdbench bench` times
    step = build_training_step(
        student,
        teacher,
        terms=spec.terms,
        ce_weight=spec.ce_weight,
        schedule=spec.schedule,
        training=spec.training,
        seed=spec.seed,
        device=device,
        data_facts={"train_labels": data.train.labels},
    )
    distiller, optimizer, init_optimizer, autocast = step.distiller, step.optimizer, step.init_optimizer, step.autocast

    schedule = spec.schedule
    scheduler = make_scheduler(optimizer, schedule)  # the CRD recipe's MultiStepLR unless the schedule says otherwise
    # model selection on the validation split (kdbench.recipe); the selected weights are kept in selected.pt
    selection = resolve_selection(schedule.get("selection"), schedule.get("early_stopping"))
    selector = Selector(selection) if selection is not None else None
    selected_path = run_dir / "selected.pt"
    confusions: dict[str, Any] = {}  # the test confusion matrix of the last and of the selected epoch
    stopped_early = False
    # Two-stage methods (FSP): first their own init stage on the student's feature layers.
    init_epochs = step.init_epochs
    total_epochs = init_epochs + schedule["epochs"]

    checkpoint_path = run_dir / "checkpoint.pt"
    metrics: list[dict] = []
    start_epoch = 0
    state = _load_checkpoint(checkpoint_path, device, spec.run_id)
    # a run found under the id older kdbench gave it (its teacher file by location) keeps that id's checkpoint
    if state is not None and state.get("run_id") not in (spec.run_id, spec.legacy_run_id):
        raise RunFailed(f"{checkpoint_path} belongs to run {state.get('run_id')}; move it away to retrain")
    if state is not None and state.get("version") != CHECKPOINT_VERSION:
        # An earlier kdbench computed those epochs with other arithmetic: finishing them here would give
        # numbers of neither version. Start afresh; the old checkpoint stays beside, renamed.
        kept = checkpoint_path.with_name(f"checkpoint.v{state.get('version')}.pt")
        os.replace(checkpoint_path, kept)
        notice(
            f"{spec.run_id}: checkpoint.pt was written by another kdbench version; training afresh "
            f"(kept as {kept.name})"
        )
        state = None
    if state is not None:
        distiller.load_state_dict(state["distiller"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if init_optimizer is not None:
            init_optimizer.load_state_dict(state["init_optimizer"])
        _set_rng_state(state["rng"])
        metrics = state["metrics"]
        teacher_info = state["teacher_info"]
        start_epoch = state["epoch"]
        confusions = state.get("confusions", {})
        stopped_early = state.get("stopped_early", False)
        if selector is not None:
            selector.load_state_dict(state["selector"])
    elif teacher is not None:
        teacher_info["teacher_top1"] = evaluate(teacher, loaders.test, autocast)["test_top1"]
    report.resumed_epochs = start_epoch
    # metrics.jsonl always mirrors the checkpoint (an epoch past it is redone, never duplicated)
    _write_metrics(run_dir / "metrics.jsonl", metrics)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total_epochs,
            initial=start_epoch,
            desc=f"{spec.method or spec.kind} {spec.run_id}",
            unit="epoch",
            leave=False,
            dynamic_ncols=True,
        )
    epochs_this_call = 0
    for epoch in range(start_epoch, total_epochs):
        if stopped_early or (stop_after is not None and epochs_this_call >= stop_after):
            break
        epoch_started = time.perf_counter()
        in_init = epoch < init_epochs
        active = init_optimizer if in_init else optimizer
        lr = active.param_groups[0]["lr"]
        meter = step.begin_epoch(epoch)  # train mode; the distiller's set_epoch(epoch) hook, if it has one
        for batch in loaders.train.epoch(epoch):
            step(batch, meter, init_stage=in_init)
        totals = meter.finish(epoch)  # the epoch's one host sync
        if totals.nonfinite:
            raise NonFiniteLoss(totals.nonfinite)
        sums, correct, seen = totals.loss_sums, totals.correct, totals.seen
        if not in_init:
            scheduler.step()
        tested = evaluate(student, loaders.test, autocast)
        confusions["last"] = tested.pop("test_confusion")  # the matrix goes to result.json, not every line
        checked = {} if loaders.validation is None else evaluate(student, loaders.validation, autocast, "val")
        checked.pop("val_confusion", None)
        record = {
            "epoch": epoch + 1,
            "phase": "init" if in_init else "main",
            "lr": lr,
            "losses": {k: v / seen for k, v in sums.items()},
            "train_loss": sum(sums.values()) / seen,
            "train_top1": None if in_init else 100.0 * correct / seen,
            **tested,
            **checked,
            "seconds": time.perf_counter() - epoch_started,
        }
        metrics.append(record)
        if selector is not None and not in_init:
            if selector.update(record["epoch"], record[selection.metric]):
                confusions["selected"] = confusions["last"]
                save_crd_checkpoint(student, selected_path, epoch=record["epoch"], accuracy=record["test_top1"])
            stopped_early = selector.should_stop
        _save_checkpoint(
            checkpoint_path,
            {
                "version": CHECKPOINT_VERSION,
                "run_id": spec.run_id,
                "epoch": epoch + 1,
                "distiller": distiller.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "init_optimizer": init_optimizer.state_dict() if init_optimizer is not None else None,
                "rng": _rng_state(),
                "metrics": metrics,
                "teacher_info": teacher_info,
                "confusions": confusions,
                "selector": None if selector is None else selector.state_dict(),
                "stopped_early": stopped_early,
            },
        )
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        epochs_this_call += 1
        report.trained_epochs = epochs_this_call
        if bar is not None:
            bar.set_postfix(top1=f"{record['test_top1']:.2f}", loss=f"{record['train_loss']:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if len(metrics) < total_epochs and not stopped_early:
        return {"status": "interrupted", "epochs": len(metrics)}

    # -- the result record, written last: its presence means "done" --
    main = [m for m in metrics if m["phase"] == "main"]
    best = max(main, key=lambda m: m["test_top1"])
    selected = None if selector is None else next(m for m in main if m["epoch"] == selector.best_epoch)
    # the trained network in the CRD code's checkpoint format: students of this suite (and the CRD code) load it;
    # with model selection, the selected epoch's weights (students of a selected teacher distil from those)
    if selected is not None:
        load_weights(student, selected_path)
        save_crd_checkpoint(student, run_dir / "model.pt", epoch=selected["epoch"], accuracy=selected["test_top1"])
    else:
        save_crd_checkpoint(student, run_dir / "model.pt", epoch=schedule["epochs"], accuracy=main[-1]["test_top1"])
    result = {
        "run_id": spec.run_id,
        "status": "done",
        "spec": spec.to_dict(),
        "top1_last": main[-1]["test_top1"],
        "top5_last": main[-1]["test_top5"],
        "test_loss_last": main[-1]["test_loss"],
        "top1_best": best["test_top1"],
        "top5_best": max(m["test_top5"] for m in main),
        "best_epoch": best["epoch"],
        **_classification_summary(main[-1], selected, confusions, data),
        "stopped_early": stopped_early,
        "epochs": len(main),
        "init_epochs": init_epochs,
        "wall_time_s": sum(m["seconds"] for m in metrics),
        "student_params": count_parameters(student),
        "student_flops": count_flops(spec.student, data.num_classes, data.image_shape, spec.models.get(spec.student)),
        "teacher_top1": teacher_info.get("teacher_top1"),
        "teacher_weights": teacher_info.get("teacher_weights"),
        "teacher_sha256": teacher_info.get("teacher_sha256"),
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "torch_version": torch.__version__,
        "kdbench_version": kdbench.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
        "process_seconds": time.perf_counter() - started,
    }
    result = make_result(result)  # checked against kdbench.results.schema, schema_version set
    atomic_write_json(run_dir / "result.json", result)
    return result


def _classification_summary(last: dict, selected: dict | None, confusions: dict, data: DataSource) -> dict[str, Any]:
    """The result's per-class view: class names, the last epoch's F1 scores, per-class lists and test
    confusion matrix, and the same at the epoch selected on the validation split (None without one)."""
    from kdbench.data.grouping import class_names

    summary: dict[str, Any] = {"class_names": class_names(data)}
    for tag, record in (("last", last), ("selected", selected)):
        for key in ("weighted_f1", "macro_f1", "per_class_recall", "per_class_precision", "per_class_f1"):
            summary[f"{key}_{tag}"] = None if record is None else record[f"test_{key}"]
        summary[f"confusion_{tag}"] = None if record is None else confusions.get(tag)
    summary.update(
        top1_selected=None if selected is None else selected["test_top1"],
        top5_selected=None if selected is None else selected["test_top5"],
        selected_epoch=None if selected is None else selected["epoch"],
    )
    return summary
