"""Two runs packed on one GPU (``kdbench run --workers 2``) end as the same runs trained one at a time.

fp32 with ``training.deterministic: true``: each run is its own process with its own seeds, so the
numbers must be identical; a run sharing the GPU gets no other arithmetic.
"""

from __future__ import annotations

import json

from kdbench.cli import main
from tests.gpu.cuda_helpers import CHANCE_TOP1, CUDA_ONLY, cuda_suite, metrics

pytestmark = CUDA_ONLY


def test_a_packed_pair_of_runs_ends_like_the_runs_one_at_a_time(write_suite, tmp_path) -> None:
    suite = write_suite(cuda_suite({"precision": "fp32", "deterministic": True}))
    finals = {}
    for workers in ("1", "2"):  # teacher first, then the Vanilla and KD students: two at once with 2 workers
        results = tmp_path / f"workers-{workers}"
        args = ["run", str(suite), "--results-dir", str(results), "--device", "cuda", "--workers", workers]
        assert main([*args, "--no-report", "--quiet"]) == 0
        finals[workers] = {
            json.loads((run / "result.json").read_text())["spec"]["method"]: metrics(run)
            for run in sorted((results / "runs").iterdir())
        }
    assert set(finals["1"]) == {"Teacher", "Vanilla", "KD"}
    assert finals["2"] == finals["1"]
    assert all(runs[-1]["test_top1"] > 2 * CHANCE_TOP1 for runs in finals["1"].values())
