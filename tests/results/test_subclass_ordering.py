"""The subclass suites' ordering note: counted per seed and for the means."""

from __future__ import annotations

import pandas as pd

from kdbench.results.subclass_ordering import ordering_notes


def long_frame(values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for row, seeds in values.items():
        for seed, value in enumerate(seeds):
            rows.append(
                {"row": row, "teacher": "t", "student": "s", "metric": "top1", "seed": seed, "done_value": value}
            )
    return pd.DataFrame(rows)


def test_the_ordering_is_counted_per_seed_and_for_the_means() -> None:
    frame = long_frame(
        {"Teacher": [99.0], "Subclass": [98.0, 97.0, 98.5], "KD": [97.0, 97.5, 98.0], "Vanilla": [96.0, 96.0, 97.0]}
    )
    (note,) = ordering_notes(frame)
    assert "held on 2 of 3 seeds" in note and "for the means (99.00, 97.83, 97.50, 96.33): held" in note


def test_no_note_without_every_row() -> None:
    assert ordering_notes(long_frame({"Teacher": [99.0], "KD": [97.0], "Vanilla": [96.0]})) == []
