"""The subclass-distillation colab's claim, checked on a report: teacher > subclass KD > KD > scratch.

The colab (``kdbench.methods.subclass``) logs one run of each: 99.35 > 99.01 > 98.72 > 98.53. A
report with the rows ``Teacher``, ``Subclass``, ``KD`` and ``Vanilla`` (``suites/subclass-mnist*.yaml``)
gets one note per column saying on how many seeds the whole ordering held (each seed's three students
against the teacher run(s) of the column, strictly greater) and whether it holds for the means.
"""

from __future__ import annotations

import pandas as pd

#: the report rows of the ordering, best first (the labels of the subclass suites)
ORDERING = ("Teacher", "Subclass", "KD", "Vanilla")


def ordering_notes(long: pd.DataFrame) -> list[str]:
    """One note per (teacher, student, metric) column holding every row of ``ORDERING`` with values.

    ``long`` is the report's long frame (``row, teacher, student, metric, seed, done_value``)."""
    if not set(ORDERING) <= set(long["row"]):
        return []
    notes = []
    done = long[long["done_value"].notna()]
    for (teacher, student, metric), column in done.groupby(["teacher", "student", "metric"], sort=False):
        by_row = {row: values for row, values in column.groupby("row")}
        if not all(row in by_row for row in ORDERING):
            continue
        teacher_value = by_row["Teacher"]["done_value"].mean()
        students = [by_row[row].set_index("seed")["done_value"] for row in ORDERING[1:]]
        seeds = sorted(set.intersection(*(set(s.index) for s in students)))
        held = sum(teacher_value > students[0][seed] > students[1][seed] > students[2][seed] for seed in seeds)
        means = [teacher_value, *(s.loc[seeds].mean() for s in students)]
        in_means = all(a > b for a, b in zip(means, means[1:], strict=False))
        shown = " > ".join(ORDERING)
        notes.append(
            f"Subclass distillation's ordering {shown} ({teacher} -> {student}, {metric}): held on {held} of "
            f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}; for the means "
            f"({', '.join(f'{m:.2f}' for m in means)}): {'held' if in_means else 'did not hold'}."
        )
    return notes
