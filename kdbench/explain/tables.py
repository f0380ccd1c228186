"""The explain scores as a Markdown table, for ``kdbench explain`` and for ``kdbench report``.

Reads only the JSON ``kdbench explain`` wrote (no torch), so ``kdbench report`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

MISSING = "—"
EXPLAIN_DIR = "explain"


def _cell(summary: dict | None, digits: int = 3, scale: float = 1.0, n: int | None = None) -> str:
    if not summary or summary.get("mean") is None:
        return MISSING
    text = f"{summary['mean'] * scale:.{digits}f}"
    if summary.get("std") is not None:
        text += f" ± {summary['std'] * scale:.{digits}f}"
    return f"{text} ({n})" if n is not None else text


def _spread(summary: dict | None) -> str:
    value = (summary or {}).get("image_std")
    return MISSING if value is None else f"{value:.3f}"


def describe(document: dict) -> str:
    """One line: what was explained, on what."""
    layer = "the last stage" if document["layer"] == "last" else document["layer"]
    what = f"Grad-CAM at {layer}" if document["method"] == "gradcam" else "saliency (|input gradient|)"
    return (
        f"{what}, {document['target']}, {document['images']} {document['split']} images "
        f"(class-balanced, seed {document['image_seed']}), suite {document['suite']}"
    )


def scores_markdown(document: dict) -> str:
    """The score table: per pair and student row, cosine and Spearman to the teacher's map, the closer rate."""
    from tabulate import tabulate

    several_views = len(document.get("views", [])) > 1
    headers = ["Pair", "Row", *(["Map"] if several_views else [])]
    headers += ["cosine", "image sd", "Spearman", "image sd", "closer than independent (%)", "top-1 (%)"]
    rows = []
    for pair in document["pairs"]:
        pair_name = f"{pair['teacher']} -> {pair['student']}"
        for row in pair["rows"]:
            label = row["row"] + (" (control)" if row.get("control") else "")
            if not row["views"]:
                unfinished = ", ".join(str(s) for s in row["unfinished_seeds"])
                view_cell = [MISSING] if several_views else []
                rows.append([pair_name, label, *view_cell, f"not finished (seeds {unfinished})"])
                continue
            for view, scores in row["views"].items():
                n = scores["n"]
                rate = scores["closer_rate"]
                rows.append(
                    [
                        pair_name,
                        label,
                        *([view] if several_views else []),
                        _cell(scores["cosine"], n=n),
                        _spread(scores["cosine"]),
                        _cell(scores["spearman"], n=n),
                        _spread(scores["spearman"]),
                        _cell(rate, digits=1, n=rate["n"]) if rate["n"] else "needs 2 Vanilla seeds",
                        _cell(scores["top1"], digits=1),
                    ]
                )
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    legend = (
        "Cosine and Spearman: the student's map against the teacher's, mean ± std over seeds (n) of the mean over "
        "images; image sd: the spread over images (mean over seeds). Closer than independent: the share of images "
        f"whose teacher map is closer (cosine) to this student's than to {document['independent']}; the Vanilla row "
        "is the control (about 50%). top-1: on these images."
    )
    return f"{describe(document)}\n\n{table}\n\n{legend}\n"


def explain_section(suite_dir: str | Path, report_markdown: str | Path | None = None, fmt: str = "markdown") -> str:
    """The score tables of every ``kdbench explain`` result of a suite, "" when there are none.

    Appended to ``report_markdown`` (report.md) when given; returned for printing when ``fmt`` is markdown.
    """
    documents = []
    for path in sorted((Path(suite_dir) / EXPLAIN_DIR).glob("*.json")):
        try:
            documents.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    if not documents:
        return ""
    section = "\n## Where the models look (kdbench explain)\n\n" + "\n".join(scores_markdown(d) for d in documents)
    if report_markdown is not None and Path(report_markdown).exists():
        with open(report_markdown, "a", encoding="utf-8") as handle:
            handle.write(section)
    return section if fmt == "markdown" else ""
