"""Fabricated results frames, shaped like ``results_frame(runs, store)``: the report's test inputs.

The numbers are chosen so every cell can be checked by hand: three seeds x-d, x, x+d give mean x and
std d; two seeds a, a+1 give mean a+0.5 and std 0.71 (1/sqrt(2)).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

NAN = math.nan
COLUMNS = [
    "run_id", "suite", "reproduces", "dataset", "kind", "teacher", "student", "method", "terms", "params", "sweep",
    "seed", "status", "na_reason", "top1_last", "top5_last", "top1_best", "top5_best", "test_loss_last", "epochs",
    "wall_time_s", "student_params", "student_flops", "teacher_top1", "schedule",
]  # fmt: skip
# the srkd-cifar preset (SRKD paper 3.1) and the CRD code's schedule, as a run's spec stores them
SRKD_CIFAR = {"epochs": 180, "batch_size": 64, "lr": 0.05, "milestones": [90, 120, 150], "lr_decay": 0.1,
              "momentum": 0.9, "weight_decay": 5.0e-4, "nesterov": False}  # fmt: skip
CRD_SCHEDULE = {**SRKD_CIFAR, "epochs": 240, "milestones": [150, 180, 210]}
TERMS = {"Teacher": "vanilla", "Vanilla": "vanilla", "KD": "kd", "FSP": "fsp", "SRKD": "kd+srkd", "KD+SRKD": "kd+srkd"}


def record(
    method: str,
    teacher: str | None,
    student: str,
    seed: int,
    top1: float = NAN,
    status: str | None = None,
    *,
    top5: float = NAN,
    sweep: dict | None = None,
    teacher_top1: float = NAN,
    run_id: str | None = None,
    suite: str = "golden",
    reproduces: str = "srkd/table1",
    dataset: str = "cifar100",
    schedule: dict | None = None,
) -> dict:
    """One frame row; ``status`` defaults to done when a top-1 is given, else pending."""
    status = status or ("done" if not math.isnan(top1) else "pending")
    done = status == "done"
    sweep_text = json.dumps(sweep or {}, sort_keys=True)
    kind = "teacher" if method == "Teacher" else "student"
    schedule = schedule or SRKD_CIFAR
    return {
        "run_id": run_id or f"{method}-{teacher}-{student}-{seed}-{sweep_text}",
        "suite": suite,
        "reproduces": reproduces,
        "dataset": dataset,
        "kind": kind,
        "teacher": None if kind == "teacher" else teacher,
        "student": student,
        "method": method,
        "terms": TERMS.get(method, method.lower()),
        "params": json.dumps({"ce_weight": 0.1}),
        "sweep": sweep_text,
        "seed": seed,
        "status": status,
        "na_reason": "FSP needs equal widths" if status == "na" else None,
        "top1_last": top1 if done else NAN,
        "top5_last": top5 if done else NAN,
        # the best epoch is fabricated 0.25 above the last one, so --metric best is visibly different
        "top1_best": top1 + 0.25 if done else NAN,
        "top5_best": top5 + 0.25 if done else NAN,
        "test_loss_last": 1.0 if done else NAN,
        "epochs": schedule["epochs"] if done else NAN,
        "wall_time_s": 3600.0 if done else NAN,
        "student_params": 1.0e5,
        "student_flops": 4.0e7,
        "teacher_top1": teacher_top1 if done and kind == "student" else NAN,
        "schedule": json.dumps(schedule, sort_keys=True),
    }


def golden_frame() -> pd.DataFrame:
    """Three CIFAR-100 pairs of srkd/table1 with every kind of cell (see tests/results/golden/*)."""
    wrn, r56, r110 = ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet110", "resnet20")
    weight = "methods.KD+SRKD.srkd.weight"
    rows = [
        # teachers: two trained by the suite; resnet110 loaded from a checkpoint (no run of its own), so
        # its students' measured teacher_top1 (74.31) stands in for the Teacher row
        record("Teacher", None, "wrn_40_2", 0, 75.50, top5=93.00),
        record("Teacher", None, "resnet56", 0, 72.00, top5=92.00),
        # WRN-40-2 -> WRN-40-1: complete, except FSP (not applicable) and one sweep point that failed
        *[record("Vanilla", *wrn, s, v) for s, v in enumerate([71.5, 72.0, 72.5])],
        *[record("KD", *wrn, s, v) for s, v in enumerate([73.0, 73.5, 74.0])],
        *[record("FSP", *wrn, s, status="na") for s in range(3)],
        *[record("SRKD", *wrn, s, v) for s, v in enumerate([73.8, 74.0, 74.2])],
        record("KD+SRKD", *wrn, 0, 73.7, sweep={weight: 0.01}),
        record("KD+SRKD", *wrn, 0, status="failed", sweep={weight: 1}),
    ]
    # ResNet56 -> ResNet20 and ResNet110 -> ResNet20 share the Vanilla ResNet20 runs (same run ids).
    for pair in (r56, r110):
        rows += [record("Vanilla", *pair, s, v, run_id=f"vanilla-resnet20-{s}") for s, v in enumerate([68.5, 69, 69.5])]
    rows += [
        record("KD", *r56, 0, 70.0),
        record("KD", *r56, 1, 71.0),
        record("KD", *r56, 2, status="running"),
        record("FSP", *r56, 0, 69.0),
        record("FSP", *r56, 1, 70.0),
        record("FSP", *r56, 2, status="failed"),
        record("SRKD", *r56, 0, 72.1),  # one seed finished, two pending
        record("SRKD", *r56, 1),
        record("SRKD", *r56, 2),
        record("KD+SRKD", *r56, 0, 71.0, sweep={weight: 0.01}),
        record("KD+SRKD", *r56, 0, 70.2, sweep={weight: 1}),
        # ResNet110 -> ResNet20: KD not started, FSP excluded from the suite (no runs at all)
        *[record("KD", *r110, s) for s in range(3)],
        record("SRKD", *r110, 0, 71.5, teacher_top1=74.31),
        record("SRKD", *r110, 1, 72.5, teacher_top1=74.31),
        record("SRKD", *r110, 2, status="interrupted"),
        record("KD+SRKD", *r110, 0, sweep={weight: 0.01}),
        record("KD+SRKD", *r110, 0, sweep={weight: 1}),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def top5_frame() -> pd.DataFrame:
    """One CIFAR-10 pair of srkd/table3 with top-1 and top-5; the teacher loaded from a checkpoint."""
    pair = ("resnet20", "resnet8")
    common = {"suite": "golden-top5", "reproduces": "srkd/table3", "dataset": "cifar10", "teacher_top1": 85.9}
    rows = [
        *[record("Vanilla", *pair, s, v, top5=t, **common) for s, (v, t) in enumerate([(78.0, 98.6), (78.5, 98.8)])],
        *[record("KD", *pair, s, v, top5=t, **common) for s, (v, t) in enumerate([(86.5, 99.3), (86.5, 99.2)])],
        *[record("KD+SRKD", *pair, s, v, top5=t, **common) for s, (v, t) in enumerate([(86.9, 99.4), (86.7, 99.4)])],
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def ties_frame() -> pd.DataFrame:
    """Known answers for ties, paired differences and protocols: ResNet56 -> ResNet20 of srkd/table1.

    Per seed (0, 1, 2): Vanilla 70.0, 71.0, 72.0; KD 73.0, 74.1, 74.9 (the highest mean, 74.0: a clear
    winner over Vanilla, +3.0, +3.1, +2.9); KD+SRKD exactly KD on every seed (an exact tie); FitNet
    KD - 0.1, + 0.2, - 0.15 (a tie: not significant); AT KD - 1.0, - 1.1, - 0.9 (significantly worse);
    SP one seed, 72.0 (no interval, not tested). ResNet110 -> ResNet20 mixes protocols: its KD ran the
    CRD schedule (240 epochs), its Vanilla the srkd-cifar one (180).
    """
    pair, other = ("resnet56", "resnet20"), ("resnet110", "resnet20")
    common = {"suite": "ties"}
    kd = [73.0, 74.1, 74.9]
    rows = [record("Teacher", None, "resnet56", 0, 72.0, **common)]
    rows += [record("Vanilla", *pair, s, v, run_id=f"vanilla-{s}", **common) for s, v in enumerate([70.0, 71.0, 72.0])]
    rows += [record("Vanilla", *other, s, v, run_id=f"vanilla-{s}", **common) for s, v in enumerate([70.0, 71.0, 72.0])]
    rows += [record("KD", *pair, s, v, **common) for s, v in enumerate(kd)]
    rows += [record("KD+SRKD", *pair, s, v, **common) for s, v in enumerate(kd)]
    rows += [
        record("FitNet", *pair, s, v + d, **common) for s, (v, d) in enumerate(zip(kd, [-0.1, 0.2, -0.15], strict=True))
    ]
    rows += [
        record("AT", *pair, s, v + d, **common) for s, (v, d) in enumerate(zip(kd, [-1.0, -1.1, -0.9], strict=True))
    ]
    rows += [record("SP", *pair, 0, 72.0, **common), record("SP", *pair, 1, **common), record("SP", *pair, 2, **common)]
    rows += [record("KD", *other, s, v, schedule=CRD_SCHEDULE, **common) for s, v in enumerate([71.0, 71.5, 72.6])]
    return pd.DataFrame(rows, columns=COLUMNS)


def large_frame(runs: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """``runs`` random finished and unfinished runs over 10 pairs x 20 methods x 50 seeds (timing input)."""
    rng = np.random.default_rng(seed)
    pairs = [("resnet56", "resnet20"), ("resnet110", "resnet20"), ("resnet110", "resnet32"), ("wrn_40_2", "wrn_16_2"),
             ("wrn_40_2", "wrn_40_1"), ("vgg13", "vgg8"), ("resnet32x4", "resnet8x4"), ("resnet20", "resnet8"),
             ("resnet32", "resnet20"), ("resnet56", "resnet8")]  # fmt: skip
    methods = ["Vanilla", "KD", "FitNet", "AT", "SP", "CC", "RKD", "PKT", "FSP", "NST", "SRKD"] + [
        f"M{i}" for i in range(9)
    ]
    index = np.arange(runs)
    pair_index, method_index, seed_index = index % len(pairs), (index // len(pairs)) % len(methods), index // 200
    status = rng.choice(["done", "done", "done", "pending", "failed"], size=runs)
    top1 = np.where(status == "done", rng.normal(71, 1.5, size=runs), np.nan)
    frame = pd.DataFrame(
        {
            "run_id": [f"run{i:05d}" for i in index],
            "suite": "large",
            "reproduces": "srkd/table1",
            "dataset": "cifar100",
            "kind": "student",
            "teacher": [pairs[i][0] for i in pair_index],
            "student": [pairs[i][1] for i in pair_index],
            "method": [methods[i] for i in method_index],
            "terms": "kd",
            "params": "{}",
            "sweep": "{}",
            "seed": seed_index,
            "status": status,
            "na_reason": None,
            "top1_last": top1,
            "top5_last": top1 + 20,
            "top1_best": top1 + 0.3,
            "top5_best": top1 + 20.3,
            "test_loss_last": 1.0,
            "epochs": 180,
            "wall_time_s": 3600.0,
            "student_params": 1e5,
            "student_flops": 4e7,
            "teacher_top1": np.where(status == "done", 74.0, np.nan),
            "schedule": json.dumps(SRKD_CIFAR, sort_keys=True),
        }
    )
    return frame[COLUMNS]
