"""``kdbench plan``: every run of a suite, before any compute is spent."""

from __future__ import annotations

import argparse

from tabulate import tabulate

from kdbench.cli.common import add_command, add_suite_arguments, plan_from_args, store_from_args
from kdbench.errors import count_of
from kdbench.results.store import BLOCKED, DONE, FAILED, NOT_APPLICABLE


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "plan",
        help="list every run of a suite (id, pair, method, parameters, seed, status)",
        description="Expand a suite into its runs without training anything: one row per run with its id, "
        "teacher, student, method, parameters, seed and status, then the models' sizes and the totals.",
        example="kdbench plan suites/cifar100.yaml schedule.epochs=2 seeds=[0]",
    )
    add_suite_arguments(parser)
    parser.add_argument("--all-params", action="store_true", help="show every resolved parameter, defaults included")
    parser.set_defaults(handler=run)


def _params(spec, full: bool) -> str:
    parts = []
    for name, params in spec.terms:
        if name == "vanilla":
            continue
        shown = params if full else {k: v for k, v in params.items() if k in ("weight", "temperature")}
        parts.append(f"{name}({', '.join(f'{k}={v}' for k, v in shown.items())})")
    if spec.kind == "student":
        parts.append(f"ce={spec.ce_weight:g}")
    sweep = ", ".join(f"{k}={v}" for k, v in spec.sweep.items())
    return " ".join(parts) + (f" [{sweep}]" if sweep else "")


def run(args: argparse.Namespace) -> int:
    from kdbench.preflight import check_before_training

    suite, runs = plan_from_args(args)
    store = store_from_args(args, runs.runs)
    states = store.states(runs.runs)  # students of a failed teacher are blocked, as status says
    # what the runs to train point at (teacher files) is checked here too: plan is where a user looks first
    to_train = [spec for spec in runs.runs if not spec.not_applicable and states[spec.run_id].status != DONE]
    check_before_training(to_train, suite.source, local=False)
    rows = []
    for spec in runs:
        status = NOT_APPLICABLE if spec.not_applicable else states[spec.run_id].status
        rows.append(
            [
                spec.run_id,
                spec.kind,
                spec.pair_teacher or spec.teacher or "-",
                spec.student,
                spec.method,
                _params(spec, args.all_params),
                spec.seed,
                status if not spec.not_applicable else f"NA: {spec.not_applicable}",
            ]
        )
    print(f"suite {suite.name} ({suite.source})" + (f", reproduces {suite.reproduces}" if suite.reproduces else ""))
    print(tabulate(rows, headers=["run", "kind", "teacher", "student", "method", "parameters", "seed", "status"]))
    print()
    print(models_table(runs))
    distinct = [r for r in runs.runs if not r.not_applicable]
    teachers = sum(1 for r in distinct if r.kind == "teacher")
    na = sum(1 for r in runs if r.not_applicable)
    statuses = {r.run_id: states[r.run_id].status for r in distinct}
    done = sum(1 for s in statuses.values() if s == "done")
    # a failed run, and the students it blocks, train only with --retry-failed: not "to train" as such
    held = [r for r in distinct if statuses[r.run_id] in (FAILED, BLOCKED)]
    remaining = [r for r in distinct if statuses[r.run_id] != DONE and r not in held]
    epochs = sum(r.schedule["epochs"] for r in remaining)
    kinds = f"{count_of(teachers, 'teacher')}, {count_of(len(distinct) - teachers, 'student')}"
    print(
        f"\n{len(distinct)} runs ({kinds}): {done} done, "
        f"{len(remaining)} to train ({epochs} epochs in all); {na} not applicable; {len(runs)} report cells x seeds."
    )
    if held:
        failed = sum(1 for r in held if statuses[r.run_id] == FAILED)
        print(
            f"{failed} failed and {len(held) - failed} blocked by a failed teacher: kdbench status says why; "
            "fix the cause, then kdbench run --retry-failed trains them again"
        )
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    print("status: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    return 0


def models_table(runs) -> str:
    """Parameters and FLOPs of every model of the plan (FLOPs from torch's own counter)."""
    from kdbench.data import dataset_shape
    from kdbench.models.flops import count_flops, count_model_parameters

    if not runs:
        return ""
    num_classes, image_shape = dataset_shape(runs[0].dataset)
    names: list[str] = []
    options: dict[str, dict] = {}
    for r in runs:
        for name in (r.pair_teacher or r.teacher, r.student):
            if name and name not in names:
                names.append(name)
        for name, given in (r.models or {}).items():
            options.setdefault(name, given)  # a family's own options change its size (first_pool_stride)
    rows = []
    for name in names:
        params = count_model_parameters(name, num_classes, image_shape, options.get(name))
        flops = count_flops(name, num_classes, image_shape, options.get(name))
        rows.append([name, f"{params:,}", f"{flops / 1e6:,.1f} M"])
    shape = "x".join(str(s) for s in image_shape)
    return tabulate(rows, headers=["model", "parameters", f"FLOPs ({shape}, {num_classes} classes)"])
