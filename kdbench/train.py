"""One run, end to end: setup, epochs, evaluation, checkpoint, result.

Read top to bottom. A run is fully defined by its ``spec.yaml`` and seed: the student's initial
weights depend only on (architecture, seed), and so does the data order, so every method of a pair
starts from the same student and sees the same batches. The checkpoint written after every epoch
holds everything that moves (student, the method's parts, optimizer, scheduler, RNG states, the
metrics so far); a run killed at any point and started again ends with exactly the numbers of a run
that was never stopped.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

import kdbench
from kdbench.data import DataSource, load_dataset
from kdbench.data.loaders import make_loader
from kdbench.methods import Distiller, create_distiller
from kdbench.models import StagedModel, create_model
from kdbench.models.checkpoint import load_crd_checkpoint, save_crd_checkpoint, sha256_of
from kdbench.models.flops import count_flops, count_parameters
from kdbench.results.store import atomic_write_bytes, atomic_write_json
from kdbench.suite import RunSpec

#: 2: CPU runs train in channels_last (their last bits differ from version 1's contiguous layout)
CHECKPOINT_VERSION = 2


class RunFailed(Exception):
    """The run stopped for a reason recorded in its ``failed.json`` (a NaN loss, a missing teacher)."""


class NonFiniteLoss(RunFailed):
    pass


def derive_seed(seed: int, stream: str) -> int:
    """Independent seeds per purpose: the student's init must not shift when a method draws numbers."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{stream}".encode()).digest()[:8], "little") % (2**63)


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
    return load_dataset(spec.dataset["name"], **{k: v for k, v in params.items() if k in accepted})


@dataclass
class Loaders:
    train: Any
    test: Any


def make_loaders(spec: RunSpec, data: DataSource, device: torch.device) -> Loaders:
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
    train = make_loader(
        data.train, train=True, augmentation=data.augmentation, seed=derive_seed(spec.seed, "data"), **common
    )
    return Loaders(train, make_loader(data.test, train=False, augmentation=None, seed=0, **common))


def build_teacher(
    spec: RunSpec, run_dir: Path, num_classes: int, device: torch.device
) -> tuple[StagedModel | None, dict]:
    """The frozen teacher: from the suite's own teacher run, or from a CRD-format checkpoint file."""
    if spec.teacher is None:
        return None, {}
    teacher = create_model(spec.teacher, num_classes)
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
    return teacher.to(device), info


def load_weights(model: StagedModel, path: Path) -> None:
    try:
        load_crd_checkpoint(model, path)
    except ValueError as error:  # the file does not fit the architecture: a user-facing reason
        raise RunFailed(str(error)) from None


@torch.no_grad()
def evaluate(model: StagedModel, batches: Any, autocast: Any) -> dict[str, float]:
    """Test loss, top-1 and top-5 (top-k with k capped at the class count) in %."""
    was_training = model.training
    model.eval()
    total, loss_sum, correct1, correct5 = 0, 0.0, 0, 0
    for images, labels in batches.epoch(0):
        with autocast():
            logits = model(images)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        total += labels.numel()
    model.train(was_training)
    return {"test_loss": loss_sum / total, "test_top1": 100.0 * correct1 / total, "test_top5": 100.0 * correct5 / total}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(kdbench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def make_optimizer(parameters: Any, schedule: dict, device: torch.device) -> torch.optim.SGD:
    """SGD as in the CRD recipe; the multi-tensor (foreach) update on CUDA, where it saves launches."""
    return torch.optim.SGD(
        parameters,
        lr=schedule["lr"],
        momentum=schedule["momentum"],
        weight_decay=schedule["weight_decay"],
        nesterov=schedule["nesterov"],
        foreach=device.type == "cuda",
    )


def prepare_for_device(distiller: Distiller, training: dict, device: torch.device) -> None:
    """The ``training`` settings that change how the step runs (in place); its arithmetic changes only in
    the last bits (another order of floating-point operations), which is why they are part of the run id.

    channels_last (NHWC, the fast convolution layout of cuDNN and of oneDNN on CPUs: a training step
    of these networks took 10-45% less time on a CPU, measured on 2 cores) for the student, the
    method's parts and the teacher; and ``compile``: the distiller's forward (student,
    teacher, losses) and its backward through torch.compile, with ``reduce-overhead`` and
    ``max-autotune`` replaying them as CUDA graphs on CUDA. Parameter names and the checkpoint stay
    those of the eager model.
    """
    if training.get("channels_last"):
        distiller.to(memory_format=torch.channels_last)
        if distiller.teacher is not None:
            distiller.teacher.to(memory_format=torch.channels_last)
    mode = training.get("compile", "off")
    if mode != "off":
        # one graph per batch shape (two per epoch: full and last partial batch), no dynamic shapes
        distiller.compile(mode=mode, dynamic=False)


def training_step(
    distiller: Distiller,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    autocast: Any,
    *,
    init_stage: bool = False,
) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """One optimisation step; returns the logits and the (weighted) loss terms, not yet synchronised.

    A non-finite loss still takes its step: the caller checks the losses and stops the run, and the
    checkpoint it resumes from predates the step.
    """
    if getattr(distiller, "_compiled_call_impl", None) is not None:  # set by nn.Module.compile
        # a new iteration: CUDA-graph outputs of the previous step may be overwritten from here on
        torch.compiler.cudagraph_mark_step_begin()
    with autocast():
        if init_stage:
            logits, losses = None, distiller.init_forward(images)
        else:
            logits, losses = distiller(images, labels)
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return logits, losses


class EpochMeter:
    """An epoch's loss sums and correct predictions, accumulated on the device.

    Reading a loss with ``.item()`` after every step makes the CPU wait for the GPU; a CIFAR step
    at batch 64 is short enough for that wait to dominate. So the sums (float64, as a Python float
    would keep them), the correct count and the first non-finite step stay on the device, read once
    per epoch. A non-finite loss still stops the run, at the end of its epoch: that epoch is never
    checkpointed, so a resumed run never sees it.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.sums: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.nonfinite_steps = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_terms: torch.Tensor | None = None
        self.seen = 0
        self.steps = 0

    def add(self, losses: dict[str, torch.Tensor], logits: torch.Tensor | None, labels: torch.Tensor) -> None:
        count = labels.numel()
        values = torch.stack([value.detach().double() for value in losses.values()])
        for name, value in zip(losses, values, strict=True):
            self.sums[name] = self.sums[name] + value * count if name in self.sums else value * count
        bad = ~torch.isfinite(values).all()
        self.nonfinite_steps += bad
        first = bad & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(first, self.steps, self.first_bad_step)
        self.bad_terms = values if self.bad_terms is None else torch.where(first, values, self.bad_terms)
        if logits is not None:
            self.correct += (logits.argmax(1) == labels).sum()
        self.seen += count
        self.steps += 1

    def finish(self, epoch: int) -> tuple[dict[str, float], int, int]:
        """(loss sums, correct, images seen) as Python numbers; raises NonFiniteLoss naming the first bad step."""
        step = int(self.first_bad_step.item())
        if step >= 0:
            terms = ", ".join(f"{k}={v:.4g}" for k, v in zip(self.sums, self.bad_terms.tolist(), strict=True))
            raise NonFiniteLoss(f"non-finite loss at epoch {epoch + 1}, step {step + 1}: {terms}")
        return {k: v.item() for k, v in self.sums.items()}, int(self.correct.item()), self.seen


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
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _write_metrics(path: Path, metrics: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(m, sort_keys=True) + "\n" for m in metrics).encode())


def train_run(
    run_dir: str | Path,
    *,
    device: str | None = None,
    data_root: str | None = None,
    progress: bool = False,
    stop_after_epochs: int | None = None,
) -> dict:
    """Train (or resume) the run in ``run_dir``; returns the result record, also written to result.json.

    ``stop_after_epochs`` ends the process's work after that many epochs of this call (tests use it to
    interrupt a run at an epoch boundary; kill -9 interrupts it anywhere).
    """
    run_dir = Path(run_dir)
    spec = read_spec(run_dir)
    try:
        return _train(spec, run_dir, resolve_device(device), data_root, progress, stop_after_epochs)
    except RunFailed as error:
        atomic_write_json(
            run_dir / "failed.json",
            {
                "reason": str(error),
                "type": type(error).__name__,
                "time": datetime.now(timezone.utc).isoformat(),
            },
        )
        raise


def _train(
    spec: RunSpec, run_dir: Path, device: torch.device, data_root: str | None, progress: bool, stop_after: int | None
) -> dict:
    started = time.perf_counter()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())
    data = load_data(spec, data_root)
    loaders = make_loaders(spec, data, device)
    use_bf16 = spec.training.get("precision") == "bf16" and device.type == "cuda"
    if device.type == "cuda":
        # cuDNN picks the fastest kernels unless bit-reproducible runs are asked for (CPU runs always are)
        deterministic = bool(spec.training.get("deterministic"))
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # -- models: the student's init depends only on (architecture, seed); method parts seeded apart --
    torch.manual_seed(derive_seed(spec.seed, "student-init"))
    student = create_model(spec.student, data.num_classes)
    teacher, teacher_info = build_teacher(spec, run_dir, data.num_classes, device)
    torch.manual_seed(derive_seed(spec.seed, "method-init"))
    distiller = create_distiller(student, teacher, spec.terms, spec.ce_weight).to(device)
    prepare_for_device(distiller, spec.training, device)
    torch.manual_seed(derive_seed(spec.seed, "train"))

    schedule = spec.schedule
    optimizer = make_optimizer(distiller.trainable_parameters(), schedule, device)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, schedule["milestones"], gamma=schedule["lr_decay"])
    init_epochs = distiller.init_epochs()
    # Two-stage methods (FSP): first their own init stage on the student's feature layers.
    init_optimizer = make_optimizer(distiller.init_parameters(), schedule, device) if init_epochs else None
    total_epochs = init_epochs + schedule["epochs"]

    checkpoint_path = run_dir / "checkpoint.pt"
    metrics: list[dict] = []
    start_epoch = 0
    state = torch.load(checkpoint_path, map_location=device, weights_only=False) if checkpoint_path.exists() else None
    if state is not None and state.get("run_id") != spec.run_id:
        raise RunFailed(f"{checkpoint_path} belongs to run {state.get('run_id')}; move it away to retrain")
    if state is not None and state.get("version") != CHECKPOINT_VERSION:
        # An earlier kdbench computed those epochs with other arithmetic: finishing them here would give
        # numbers of neither version. Start afresh; the old checkpoint stays beside, renamed.
        kept = checkpoint_path.with_name(f"checkpoint.v{state.get('version')}.pt")
        os.replace(checkpoint_path, kept)
        message = f"{checkpoint_path}: written by another kdbench version; training afresh (kept as {kept.name})"
        warnings.warn(message, stacklevel=2)
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
    elif teacher is not None:
        teacher_info["teacher_top1"] = evaluate(teacher, loaders.test, autocast)["test_top1"]
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
        if stop_after is not None and epochs_this_call >= stop_after:
            break
        epoch_started = time.perf_counter()
        in_init = epoch < init_epochs
        active = init_optimizer if in_init else optimizer
        lr = active.param_groups[0]["lr"]
        distiller.train()
        meter = EpochMeter(device)
        for images, labels in loaders.train.epoch(epoch):
            logits, losses = training_step(distiller, active, images, labels, autocast, init_stage=in_init)
            meter.add(losses, logits, labels)
        sums, correct, seen = meter.finish(epoch)  # the epoch's one host sync; raises NonFiniteLoss
        if not in_init:
            scheduler.step()
        record = {
            "epoch": epoch + 1,
            "phase": "init" if in_init else "main",
            "lr": lr,
            "losses": {k: v / seen for k, v in sums.items()},
            "train_loss": sum(sums.values()) / seen,
            "train_top1": None if in_init else 100.0 * correct / seen,
            **evaluate(student, loaders.test, autocast),
            "seconds": time.perf_counter() - epoch_started,
        }
        metrics.append(record)
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
            },
        )
        with open(run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        epochs_this_call += 1
        if bar is not None:
            bar.set_postfix(top1=f"{record['test_top1']:.2f}", loss=f"{record['train_loss']:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if len(metrics) < total_epochs:
        return {"status": "interrupted", "epochs": len(metrics)}

    # -- the result record, written last: its presence means "done" --
    main = [m for m in metrics if m["phase"] == "main"]
    best = max(main, key=lambda m: m["test_top1"])
    # the trained network in the CRD code's checkpoint format: students of this suite (and the CRD code) load it
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
        "epochs": len(main),
        "init_epochs": init_epochs,
        "wall_time_s": sum(m["seconds"] for m in metrics),
        "student_params": count_parameters(student),
        "student_flops": count_flops(spec.student, data.num_classes, data.image_shape),
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
    atomic_write_json(run_dir / "result.json", result)
    return result
