"""Checks that need files or the machine, made before any run directory exists or any job is submitted.

The suite loader checks what the YAML says; this checks what it points at: every teacher file a
student will load (it exists, it loads, it fits the teacher's architecture and class count), and the
device the local executor would train on (it exists; bf16 autocast is CUDA-only). A researcher about
to submit 192 jobs learns of a moved teacher file in the first second, not from 192 failures.
"""

from __future__ import annotations

from collections.abc import Sequence

from kdbench.errors import first_line
from kdbench.suite import RunSpec
from kdbench.validation import Collector


def teacher_file_problems(runs: Sequence[RunSpec], c: Collector) -> None:
    """Every distinct teacher file the runs load: exists, loads, fits (model, class count)."""
    from kdbench.data import dataset_shape
    from kdbench.models import create_model
    from kdbench.models.checkpoint import load_crd_checkpoint

    checked: set[tuple[str, str, int]] = set()
    for spec in runs:
        if spec.teacher_checkpoint is None or spec.teacher is None or spec.not_applicable:
            continue
        num_classes = dataset_shape(spec.dataset).num_classes
        key = (spec.teacher_checkpoint, spec.teacher, num_classes)
        if key in checked:
            continue
        checked.add(key)
        where = f"teachers.{spec.teacher}.checkpoint"
        try:
            import torch

            with torch.device("cpu"):
                model = create_model(spec.teacher, num_classes)
            load_crd_checkpoint(model, spec.teacher_checkpoint)
        except ValueError as error:  # missing, unreadable, or not fitting: the message names the file
            hint = (
                " (set teachers.<name>.checkpoint, or teacher_checkpoints=FOLDER "
                "holding <name>_vanilla/ckpt_epoch_240.pth)"
                if "not found" in str(error)
                else ""
            )
            c.add(where, f"{error}{hint}")


def model_input_problems(runs: Sequence[RunSpec], c: Collector) -> None:
    """Every model of the runs takes the data set's images (a 3-channel CIFAR network on 1-channel MNIST
    would fail every run at its first batch): one forward on the meta device, no weights built."""
    from kdbench.data import dataset_shape
    from kdbench.models.flops import count_flops

    checked: set[tuple[str, str, tuple]] = set()
    for spec in runs:
        if spec.not_applicable:
            continue
        shape = dataset_shape(spec.dataset)
        for name in dict.fromkeys(n for n in (spec.teacher, spec.student) if n):
            options = (spec.models or {}).get(name) or {}
            key = (name, repr(sorted(options.items())), (shape.num_classes, *shape.image_shape))
            if key in checked:
                continue
            checked.add(key)
            try:
                count_flops(name, shape.num_classes, shape.image_shape, options)
            except (RuntimeError, ValueError) as error:
                reason = first_line(error)
                size = "x".join(str(s) for s in shape.image_shape)
                c.add(
                    "dataset",
                    f"{spec.dataset['name']}'s images ({size}) do not fit model {name}: {reason}; "
                    "pair it with a data set of the shape it takes (the CIFAR networks take 3 channels)",
                )


def weights_problems(runs: Sequence[RunSpec], c: Collector) -> None:
    """Every local weights file a model option names (``models: {tv_resnet50: {weights: PATH}}``) exists,
    loads and fits the model. torchvision's named weights (``imagenet``) are fetched by torchvision when
    training starts (or read from its cache), so they are not fetched here."""
    from pathlib import Path

    from kdbench.data import dataset_shape
    from kdbench.models import create_model

    checked: set[tuple[str, str, int]] = set()
    for spec in runs:
        if spec.not_applicable:
            continue
        shape = dataset_shape(spec.dataset)
        for name, options in (spec.models or {}).items():
            weights = options.get("weights")
            if not isinstance(weights, str) or not ("/" in weights or Path(weights).suffix):
                continue  # none, or one of torchvision's names
            key = (name, weights, shape.num_classes)
            if key in checked:
                continue
            checked.add(key)
            if not Path(weights).expanduser().is_file():
                c.add(f"models.{name}.weights", f"no such file: {weights}")
                continue
            try:
                create_model(name, shape.num_classes, shape.image_shape, **options)
            except (ValueError, OSError) as error:  # WeightsError is a ValueError: it names the file
                c.add(f"models.{name}.weights", str(error))


def device_problems(device: str | None, runs: Sequence[RunSpec], c: Collector) -> None:
    """The local device exists, and what the runs ask of it is what it will do."""
    import torch

    name = "auto" if device is None else device
    if name != "auto":
        try:
            resolved = torch.device(name)
        except RuntimeError:
            c.add("--device", f"'{name}' is not a device; use cpu, cuda, cuda:N (or leave it out: cuda if available)")
            return
        if resolved.type == "cuda" and not torch.cuda.is_available():
            c.add("--device", f"'{name}': this machine has no CUDA GPU that torch can use; use --device cpu")
            return
        if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
            c.add("--device", f"'{name}': there are {torch.cuda.device_count()} GPUs (cuda:0 ...)")
            return
        if resolved.type not in ("cpu", "cuda", "mps"):
            c.add("--device", f"'{name}': kdbench trains on cpu or cuda")
            return
        if resolved.type == "mps" and not torch.backends.mps.is_available():
            c.add("--device", f"'{name}': this machine has no Apple GPU (MPS) that torch can use; use --device cpu")
            return
    on_cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    if not on_cuda and any(spec.training.get("precision") == "bf16" for spec in runs):
        c.add(
            "training.precision",
            "bf16 autocast applies on CUDA only; on this CPU the runs would train in fp32 under a bf16 id. "
            "Use training.precision=fp32 here, or run it on a GPU (--device cuda, or --executor slurm)",
        )


def check_before_training(
    runs: Sequence[RunSpec], source: str, *, device: str | None = None, local: bool = True
) -> None:
    """Raise ``ValidationError`` (under ``source``, the suite file) listing every problem; ``local``: also
    check this machine's device."""
    c = Collector()
    model_input_problems(runs, c)
    teacher_file_problems(runs, c)
    weights_problems(runs, c)
    if local:
        device_problems(device, runs, c)
    c.raise_if_any(f"{source} (checked before training)")
