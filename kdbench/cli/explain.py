"""``kdbench explain``: Grad-CAM or saliency of a suite's teacher and students, as image grids and as scores."""

from __future__ import annotations

import argparse
import sys

from kdbench.cli.common import UserError, add_command, add_suite_arguments, plan_from_args, store_from_args

METHODS = ("gradcam", "saliency")


def register(subparsers) -> None:
    parser = add_command(
        subparsers,
        "explain",
        help="where the teacher and the students look: Grad-CAM or saliency grids and similarity scores",
        description="For every finished run of the suite, explain the same N test images (seeded, class-balanced) "
        "for their ground-truth class: Grad-CAM at a stage boundary (ReLU, upsampled to the input) or saliency "
        "(|input gradient|, the channel maximum, --per-channel for each channel). Writes image grids (rows: input, "
        "teacher, each student row; PNG and PDF), a JSON and a Markdown table under <results>/<suite>/explain/: per "
        "pair and student row the cosine and Spearman similarity of the student's map to the teacher's, and the "
        "share of images where the teacher's map is closer to the student's than to an independent (Vanilla, next "
        "seed) student's; Vanilla itself is the ~50% control. kdbench report shows the table afterwards.",
        example="kdbench explain suites/explain-digits.yaml --method gradcam --images 200",
    )
    add_suite_arguments(parser)
    parser.add_argument("--method", choices=METHODS, default="gradcam", help="attribution method")
    parser.add_argument(
        "--layer", default="last", help="Grad-CAM's stage boundary: stage1 ... stageN (the stage view's F_K), or last"
    )
    parser.add_argument("--images", type=int, default=200, help="test images to score (the same for every model)")
    parser.add_argument("--grid-images", type=int, default=8, help="of those, how many the grids show")
    parser.add_argument("--image-seed", type=int, default=0, help="seed of the choice of images")
    parser.add_argument(
        "--per-channel", action="store_true", help="saliency: also a map (grid and scores) per input channel"
    )
    parser.add_argument(
        "--pair", action="append", default=[], metavar="T,S", help="only this teacher,student pair (repeatable)"
    )
    parser.add_argument(
        "--row", action="append", default=[], metavar="LABEL", help="only this student row, e.g. KD (repeatable)"
    )
    parser.add_argument("--batch-size", type=int, default=128, help="images per attribution batch")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (auto: cuda if available)")
    parser.add_argument("--out", default=None, help="where to write (default: <results root>/<suite name>/explain/)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def _options(args: argparse.Namespace):
    from kdbench.explain.runner import ExplainOptions

    problems = []
    for name in ("images", "grid_images", "batch_size"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    if args.per_channel and args.method != "saliency":
        problems.append("--per-channel applies to --method saliency only")
    if args.method != "gradcam" and args.layer != "last":
        problems.append("--layer applies to --method gradcam only (saliency is taken at the input)")
    pairs = []
    for text in args.pair:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2 or not all(parts):
            problems.append(f"--pair expects TEACHER,STUDENT, got {text!r}")
        else:
            pairs.append((parts[0], parts[1]))
    if problems:
        raise UserError("; ".join(problems))
    return ExplainOptions(
        method=args.method,
        layer=args.layer,
        images=args.images,
        grid_images=args.grid_images,
        image_seed=args.image_seed,
        batch_size=args.batch_size,
        per_channel=args.per_channel,
        pairs=tuple(pairs),
        rows=tuple(args.row),
        device=args.device,
        progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from kdbench.explain.runner import ExplainError, explain_suite

    options = _options(args)
    from kdbench.preflight import device_problems
    from kdbench.validation import Collector

    device = Collector()  # the device explain computes on: named here, not by a traceback from torch
    device_problems(None if args.device == "auto" else args.device, (), device)
    device.raise_if_any("kdbench explain")
    suite, runs = plan_from_args(args)
    store = store_from_args(args, runs.runs)
    try:
        written = explain_suite(suite, runs, store, options, args.out)
    except ExplainError as error:
        raise UserError(str(error)) from None
    sys.stdout.write(written["markdown"].read_text())
    folder = written["json"].parent
    print(f"wrote {', '.join(sorted(p.name for p in written.values()))} under {folder}", file=sys.stderr)
    return 0
