"""The benchmark's tables as text: a pair's step times, a suite's projection, packing throughput."""

from __future__ import annotations

from typing import Any


def format_pair_table(result: dict) -> str:
    from tabulate import tabulate

    rows = [
        [
            name,
            1e3 * row["kdbench_step_s"],
            row["kdbench_images_per_s"],
            1e3 * row["reference_step_s"],
            row["reference_images_per_s"],
            row["speedup"],
            row["overhead_vs_vanilla"],
        ]
        for name, row in result["methods"].items()
    ]
    headers = [
        "method",
        "kdbench ms/step",
        "kdbench img/s",
        "reference ms/step",
        "reference img/s",
        "speedup",
        "overhead vs vanilla",
    ]
    return tabulate(rows, headers=headers, floatfmt=(None, ".1f", ".0f", ".1f", ".0f", ".2f", ".2f"))


def format_projection(projection: dict) -> str:
    from tabulate import tabulate

    rows = [
        [
            g["method"],
            g["teacher"] or "-",
            g["student"],
            g["runs"],
            1e3 * g["step_s"],
            1e3 * g["eval_step_s"],
            g["hours"],
        ]
        for g in projection["groups"]
    ]
    table = tabulate(
        rows,
        headers=["method", "teacher", "student", "runs", "ms/step", "eval ms/batch", "hours"],
        floatfmt=(None, None, None, "d", ".1f", ".1f", ".2f"),
    )
    return (
        f"{table}\n\nsuite {projection['suite']}: {projection['runs']} runs "
        f"({projection['not_applicable']} not applicable), {projection['total_hours']:.2f} device-hours on "
        f"{projection['device']} one run after another ({projection['train_hours']:.2f} training, "
        f"{projection['eval_hours']:.2f} evaluation)"
        + (
            f"; {projection['packed_hours']:.2f} device-hours with {projection['packing']}"
            if "packed_hours" in projection
            else ""
        )
        + f"\neval: {projection['eval']}"
    )


def format_packing(packing: dict) -> str:
    from tabulate import tabulate

    rows = [
        [row["processes"], row["images_per_s"], row["images_per_s_per_run"], row["speedup_vs_fewest"]]
        for row in packing["rows"]
    ]
    table = tabulate(
        rows,
        headers=["runs at once", "img/s (device)", "img/s per run", "throughput vs fewest"],
        floatfmt=("d", ".0f", ".0f", ".2f"),
    )
    work = packing["workload"]
    method = "+".join(name for name, _ in work["terms"]) or "vanilla"
    return (
        f"{table}\n\nruns at once on one device ({method} {work['teacher']} -> {work['student']}, batch "
        f"{work['batch_size']}): recommended {packing['recommended_processes']} "
        f"({packing['recommended_rule']})"
    )


# ---------------------------------------------------------------------------------------------
# the GPU check's Markdown summary

#: the README's speed claims the check measures: (claim, target, how it is read from the report)
CLAIMS = (
    ("kdbench's KD step vs the CRD-style loop (first pair, best setting)", ">= 10x"),
    ("KD's step vs vanilla's, best setting (first pair)", "<= 1.3x"),
    ("Table 1 (the projected suite), device-hours with packing", "<= 4 h"),
)


def format_gpu_check(report: dict) -> str:
    """The check as Markdown: stages, environment, CUDA tests, step times, packing, projection, claims."""
    stages = report.get("stages", {})
    plan = report.get("plan", {})
    lines = [
        "# kdbench GPU check",
        "",
        f"kdbench {report.get('kdbench_version')}, started {report.get('started_at')}, device `{plan.get('device')}`"
        f"{' (tiny rehearsal)' if plan.get('tiny') else ''}, budget {plan.get('budget_s', 0):.0f} s",
        "",
        _markdown_table(
            ["stage", "status", "seconds", "limit s", "note"],
            [
                [name, s["status"], f"{s['seconds']:.1f}", f"{s['limit_s']:.0f}", _short(s.get("error", ""))]
                for name, s in stages.items()
            ],
        ),
    ]
    lines += _environment_section(_result(stages, "environment"))
    lines += _tests_section(_result(stages, "tests"))
    lines += _steps_section(stages, plan)
    lines += _packing_section(_result(stages, "packing"))
    lines += _projection_section(_result(stages, "projection"))
    lines += _claims_section(stages, plan)
    return "\n".join(lines)


def _result(stages: dict, name: str) -> dict:
    return (stages.get(name) or {}).get("result") or {}


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return "-" if value is None or value == "" else str(value).replace("|", "/")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(out)


def _ms(seconds: float | None) -> str | None:
    return None if seconds is None else f"{1e3 * seconds:.2f}"


def _environment_section(env: dict) -> list[str]:
    if not env:
        return ["", "## Environment", "", "not recorded"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB, sm {g['capability']})" for g in env.get("gpus", []))
    return [
        "",
        "## Environment",
        "",
        f"- torch {env.get('torch')}, CUDA {env.get('cuda')}, cuDNN {env.get('cudnn')}, driver {env.get('driver')}",
        f"- GPU: {gpus or 'none'}; {env.get('cpu_count')} CPUs; Python {env.get('python')}; {env.get('platform')}",
        f"- kdbench {env.get('kdbench')} at commit {env.get('git_commit')}; submitit installed: "
        f"{env.get('submitit_installed')}, imported: {env.get('submitit_imported')}",
    ]


def _tests_section(tests: dict) -> list[str]:
    lines = ["", "## CUDA tests (`pytest -m gpu tests/gpu`)", ""]
    if not tests.get("tests"):
        return [*lines, "no test outcome recorded"]
    counts = tests.get("counts", {})
    lines.append(", ".join(f"{count} {outcome}" for outcome, count in counts.items()))
    rows = [
        [name, test["outcome"], f"{test.get('seconds', 0):.1f}", _short(test.get("message", ""))]
        for name, test in tests["tests"].items()
    ]
    return [*lines, "", _markdown_table(["test", "outcome", "s", "message"], rows)]


def _step_rows(stage: dict) -> dict[tuple[str, str], dict]:
    return {
        (pair, method): row
        for pair, entry in (stage.get("pairs") or {}).items()
        for method, row in (entry.get("methods") or {}).items()
        if isinstance(row, dict)
    }


def _steps_section(stages: dict, plan: dict) -> list[str]:
    fp32, bf16, compiled = (_step_rows(_result(stages, n)) for n in ("bench_fp32", "bench_bf16", "bench_compile"))
    keys = list(dict.fromkeys([*fp32, *bf16, *compiled]))
    lines = [
        "",
        f"## Step times (ms per training step, batch {plan.get('batch_size')}, {plan.get('dataset')} shape)",
        "",
    ]
    notes = {_result(stages, n).get("note") for n in ("bench_bf16", "bench_compile")} - {None}
    lines += [f"note: {note}" for note in sorted(notes)]
    rows = []
    for pair, method in keys:
        measured = {
            "fp32": fp32.get((pair, method), {}).get("kdbench_step_s"),
            "bf16": bf16.get((pair, method), {}).get("kdbench_step_s"),
            "bf16+compile": compiled.get((pair, method), {}).get("kdbench_step_s"),
        }
        reference = fp32.get((pair, method), {}).get("reference_step_s")
        best = min((v for v in measured.values() if v), default=None)
        skipped = compiled.get((pair, method), {}).get("skipped")
        rows.append(
            [
                pair,
                method,
                _ms(measured["fp32"]),
                _ms(measured["bf16"]),
                _ms(measured["bf16+compile"]) or (f"skipped ({skipped})" if skipped else None),
                _ms(reference),
                f"{reference / best:.1f}x" if reference and best else None,
            ]
        )
    headers = ["pair", "method", "fp32", "bf16", "bf16+compile", "CRD-style loop (fp32)", "speed-up (best)"]
    return [*lines, _markdown_table(headers, rows)] if rows else [*lines, "not measured"]


def _packing_section(packing: dict) -> list[str]:
    lines = [
        "",
        f"## Packing: runs at once on one device ({packing.get('method', 'kd')}, "
        f"{packing.get('precision_run', 'bf16')})",
    ]
    if not packing.get("pairs"):
        return [*lines, "", "not measured"]
    for pair, entry in packing["pairs"].items():
        lines += ["", f"{pair}: recommended {entry.get('recommended_processes', '-')} at once"]
        rows = [
            [
                row["processes"],
                f"{row['images_per_s']:.0f}",
                f"{row['images_per_s_per_run']:.0f}",
                f"{row['speedup_vs_fewest']:.2f}",
            ]
            for row in entry.get("rows", [])
        ]
        rows += [[count, None, None, _short(problem)] for count, problem in entry.get("problems", {}).items()]
        lines += ["", _markdown_table(["runs", "img/s (device)", "img/s per run", "vs 1 run"], rows)]
    return lines


def _projection_section(projection: dict) -> list[str]:
    lines = ["", f"## Projection: {projection.get('suite', 'the suite')}", ""]
    if "total_hours" not in projection:
        return [*lines, "not measured"]
    items = [
        f"- {projection['runs']} runs at {projection.get('precision')} (eager), one after another: "
        f"{projection['total_hours']:.2f} device-hours ({projection['train_hours']:.2f} training, "
        f"{projection['eval_hours']:.2f} evaluation) on {projection['device']}",
    ]
    if "packed_hours" in projection:
        items.append(f"- packed, {projection['packing']}: {projection['packed_hours']:.2f} device-hours")
    if "compiled_hours_estimate" in projection:
        items.append(
            f"- with compile at its measured gain ({projection['compile_gain']:.2f}x): "
            f"{projection['compiled_hours_estimate']:.2f} device-hours (estimate)"
            + (
                f", packed too: {projection['compiled_packed_hours_estimate']:.2f} (a lower bound)"
                if "compiled_packed_hours_estimate" in projection
                else ""
            )
        )
    return [*lines, *items]


def _claims_section(stages: dict, plan: dict) -> list[str]:
    pairs = plan.get("pairs") or [["?", "?"]]
    first = f"{pairs[0][0]} -> {pairs[0][1]}"
    rows = [_step_rows(_result(stages, n)) for n in ("bench_fp32", "bench_bf16", "bench_compile")]

    def best(method: str) -> float | None:
        values = [r.get((first, method), {}).get("kdbench_step_s") for r in rows]
        return min((v for v in values if v), default=None)

    reference = rows[0].get((first, "kd"), {}).get("reference_step_s")
    kd, vanilla = best("kd"), best("vanilla")
    projection = _result(stages, "projection")
    hours = projection.get("packed_hours", projection.get("total_hours"))
    measured = [
        reference / kd if reference and kd else None,
        kd / vanilla if kd and vanilla else None,
        hours,
    ]
    holds = [
        None if measured[0] is None else measured[0] >= 10,
        None if measured[1] is None else measured[1] <= 1.3,
        None if measured[2] is None else measured[2] <= 4,
    ]
    shown = [
        None if measured[0] is None else f"{measured[0]:.1f}x",
        None if measured[1] is None else f"{measured[1]:.2f}x",
        None if measured[2] is None else f"{measured[2]:.2f} h",
    ]
    table = [
        [claim, target, value, {True: "yes", False: "NO", None: "-"}[ok]]
        for (claim, target), value, ok in zip(CLAIMS, shown, holds, strict=True)
    ]
    return ["", "## Claims", "", _markdown_table(["claim", "target", "measured", "holds"], table)]
