"""The CRD code's methods through the training loop: CRD gets every image's index and the training
labels, its banks move, and a run interrupted after one epoch resumes to exactly the uninterrupted
numbers (banks, normalisers and sampler included); AB and FT through their init stages the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from kdbench.train import train_run
from tests.conftest import tiny_suite

METHODS = {
    "CRD": {"use": "crd", "nce_k": 40},  # 40 of the 36 other-class images: with replacement
    "CRD-relax": {"use": "crd", "nce_k": 20, "mode": "relax"},  # 36 others: without replacement
    "CRD+KD": {"use": ["kd", "crd"], "ce_weight": 1, "kd": {"weight": 1}},
    "AB": {"use": "ab", "init_epochs": 1},
    "FT": {"use": "ft", "init_epochs": 1},
    "VID": {"use": "vid"},
    "KDSVD": {"use": "kdsvd"},
}


def comparable(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("crd")
    suite = root / "suite.yaml"
    suite.write_text(json.dumps(tiny_suite(methods=METHODS)))
    store = ResultStore(root / "results")
    runs = plan(load_suite(suite))
    for spec in runs:
        store.write_spec(spec)
    train_run(store.run_dir(runs[0].run_id))
    return root / "results", runs


@pytest.mark.parametrize("label", list(METHODS))
def test_an_interrupted_run_resumes_bit_identically(trained_teacher: tuple[Path, list], label: str) -> None:
    results, runs = trained_teacher
    spec = next(r for r in runs if r.method == label)
    run_dir = results / "runs" / spec.run_id
    reference = results / "runs" / f"reference-{spec.run_id}"
    reference.mkdir()
    (reference / "spec.yaml").write_text((run_dir / "spec.yaml").read_text())

    assert train_run(run_dir, stop_after_epochs=1)["status"] == "interrupted"
    resumed = train_run(run_dir)
    uninterrupted = train_run(reference)
    assert comparable(run_dir) == comparable(reference)
    assert resumed["top1_last"] == uninterrupted["top1_last"]
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    if label == "FT":  # the paraphraser's own lr: 0.01 for a CIFAR ResNet student (the CRD code's pretrain.py)
        assert checkpoint["init_optimizer"]["param_groups"][0]["lr"] == 0.01
    final = checkpoint["distiller"]
    expected = torch.load(reference / "checkpoint.pt", weights_only=False)["distiller"]
    assert final.keys() == expected.keys()
    for key, value in expected.items():
        assert value == final[key] if key.endswith("_extra_state") else torch.equal(value, final[key]), key
    if "crd" in dict(spec.terms):
        assert {"terms.crd.memory_student", "terms.crd.memory_teacher", "terms.crd.normalisers"} <= final.keys()
        assert final["terms.crd._extra_state"]["draws"] == 2 * 3  # 48 images in batches of 16, 2 epochs
        assert (final["terms.crd.normalisers"] > 0).all()


def test_crd_trains_with_every_image_s_index(trained_teacher: tuple[Path, list]) -> None:
    """One epoch visits each image once: every row of both banks has moved away from its random start."""
    results, runs = trained_teacher
    spec = next(r for r in runs if r.method == "CRD")
    run_dir = results / "runs" / f"one-epoch-{spec.run_id}"
    run_dir.mkdir()
    (run_dir / "spec.yaml").write_text((results / "runs" / spec.run_id / "spec.yaml").read_text())
    train_run(run_dir, stop_after_epochs=1)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)["distiller"]
    for bank in ("memory_student", "memory_teacher"):
        rows = state[f"terms.crd.{bank}"]
        assert rows.shape == (48, 128)
        assert torch.allclose(rows.norm(dim=1), torch.ones(48), atol=1e-5)  # written rows are unit vectors
