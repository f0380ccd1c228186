"""The benchmark's tables as text: a pair's step times, a suite's projection, packing throughput."""

from __future__ import annotations


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
