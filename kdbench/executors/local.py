"""Train pending runs in this process, in dependency order (teachers first).

Two ``kdbench run`` on the same suite at once never train the same run twice: each run is trained
under an exclusive per-run lock, and a run locked by another process is skipped. Ctrl-C leaves every
finished epoch checkpointed; the same command resumes.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

from kdbench.results.store import DONE, FAILED, ResultStore, RunLocked, atomic_write_json
from kdbench.suite import RunSpec
from kdbench.train import RunFailed, train_run


@dataclass
class LocalSummary:
    trained: list[str] = field(default_factory=list)
    skipped_done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)


def describe(spec: RunSpec) -> str:
    if spec.kind == "teacher":
        return f"teacher {spec.student} seed {spec.seed}"
    sweep = "".join(f" {k.split('.')[-1]}={v}" for k, v in spec.sweep.items())
    return f"{spec.method}{sweep} {spec.pair_teacher or spec.teacher}->{spec.student} seed {spec.seed}"


def run_local(
    runs: Sequence[RunSpec],
    store: ResultStore,
    *,
    device: str | None = None,
    data_root: str | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    log=print,
) -> LocalSummary:
    from tqdm.auto import tqdm

    summary = LocalSummary()
    todo = [r for r in runs if not r.not_applicable]
    bar = tqdm(todo, desc="runs", unit="run", disable=not progress, dynamic_ncols=True, file=sys.stderr)
    # with bars on screen, lines go through tqdm so they do not tear the bars
    emit = (lambda line: bar.write(line, file=sys.stdout)) if progress else log
    for spec in bar:
        run_id = spec.run_id
        status = store.status(run_id)
        if status == DONE:
            summary.skipped_done.append(run_id)
            continue
        if status == FAILED:
            if not retry_failed:
                summary.failed.append(run_id)
                continue
            store.clear_failure(run_id)
        if spec.teacher_run is not None and store.status(spec.teacher_run) != DONE:
            reason = store.status(spec.teacher_run)
            emit(f"  blocked  {run_id}  {describe(spec)}: its teacher run {spec.teacher_run} is {reason}")
            summary.blocked.append(run_id)
            continue
        run_dir = store.write_spec(spec)
        try:
            with store.lock(run_id):
                result = train_run(
                    run_dir, device=device, data_root=data_root, progress=progress, stop_after_epochs=stop_after_epochs
                )
        except RunLocked:
            emit(f"  busy     {run_id}  {describe(spec)}: another process is training it")
            summary.busy.append(run_id)
            continue
        except RunFailed as error:
            emit(f"  FAILED   {run_id}  {describe(spec)}: {error}")
            summary.failed.append(run_id)
            continue
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as error:  # a bug or a broken environment: record it, go on with the suite
            atomic_write_json(
                run_dir / "failed.json",
                {
                    "reason": f"{type(error).__name__}: {error}",
                    "type": type(error).__name__,
                    "traceback": traceback.format_exc(),
                },
            )
            emit(f"  FAILED   {run_id}  {describe(spec)}: {type(error).__name__}: {error} (see {run_dir}/failed.json)")
            summary.failed.append(run_id)
            continue
        if result.get("status") != "done":
            summary.interrupted.append(run_id)
            continue
        summary.trained.append(run_id)
        emit(
            f"  done     {run_id}  {describe(spec)}: top-1 {result['top1_last']:.2f} "
            f"(best {result['top1_best']:.2f}) in {result['wall_time_s']:.1f} s"
        )
    bar.close()
    return summary
