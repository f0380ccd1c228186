"""``kdbench explain`` end to end on a finished tiny digits suite: files, every row in the JSON, the numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from kdbench.cli import main
from kdbench.explain.runner import normalise
from kdbench.explain.scores import cosine_similarity
from kdbench.models import create_model
from kdbench.models.checkpoint import load_crd_checkpoint
from kdbench.results.store import ResultStore
from kdbench.suite import load_suite, plan
from tests.explain.test_attribution import direct_gradcam

# the explain-digits suite at one epoch, with a smaller teacher
SUITE = {
    "name": "explain-tiny",
    "dataset": "digits",
    "schedule": {"epochs": 1, "batch_size": 64, "lr": 0.05, "milestones": [1], "lr_decay": 0.1},
    "seeds": [0, 1],
    "teachers": {"resnet14": {}},
    "pairs": [["resnet14", "resnet8"]],
    "methods": {"Vanilla": {"use": "vanilla"}, "KD": {"use": "kd"}, "SRKD": {"use": ["kd", "srkd"]}},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The suite trained once for the module; SRKD seed 1 is then made unfinished."""
    folder = tmp_path_factory.mktemp("explain")
    suite = folder / "suite.yaml"
    suite.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    results = folder / "results"
    assert main(["run", str(suite), "--results-dir", str(results), "--quiet", "--no-report", "--workers", "1"]) == 0
    store = ResultStore(results)
    srkd_seed_1 = next(s for s in plan(load_suite(suite)) if s.method == "SRKD" and s.seed == 1)
    (store.run_dir(srkd_seed_1.run_id) / "result.json").unlink()
    return str(suite), results


def test_gradcam_writes_the_files_and_every_row(finished, capsys: pytest.CaptureFixture) -> None:
    suite, results = finished
    argv = ["explain", suite, "--results-dir", str(results), "--images", "40", "--grid-images", "4", "--quiet"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    folder = results / "explain-tiny" / "explain"
    for name in ("gradcam-last.json", "gradcam-last.md", "gradcam-last-resnet14-resnet8.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "gradcam-last-resnet14-resnet8.pdf").read_bytes().startswith(b"%PDF")
    assert (folder / "gradcam-last.md").read_text() == out
    assert "gradcam-last.json" in err
    document = json.loads((folder / "gradcam-last.json").read_text())
    assert document["images"] == 40 and len(set(document["image_indices"])) == 40
    assert sorted(document["labels"]).count(0) == 4  # 4 of each of the 10 classes
    [pair] = document["pairs"]
    assert (pair["teacher"], pair["student"], pair["teacher_layer"]) == ("resnet14", "resnet8", "stage3")
    rows = {row["row"]: row for row in pair["rows"]}
    assert list(rows) == ["Vanilla", "KD", "SRKD"]
    assert rows["Vanilla"]["control"] and not rows["KD"]["control"]
    assert rows["SRKD"]["unfinished_seeds"] == [1] and rows["SRKD"]["views"]["gradcam"]["n"] == 1
    for label in ("Vanilla", "KD"):
        scores = rows[label]["views"]["gradcam"]
        assert scores["n"] == 2 and [s["independent_seed"] for s in scores["seeds"]] == [1, 0]
        assert 0 <= scores["cosine"]["mean"] <= 1 and -1 <= scores["spearman"]["mean"] <= 1
    # two Vanilla seeds compared each way: the rates add up to 100%, so the control averages 50% exactly
    assert rows["Vanilla"]["views"]["gradcam"]["closer_rate"]["mean"] == pytest.approx(50.0)
    for label in ("Vanilla", "KD", "SRKD"):
        assert f"| {label}" in out

    # KD seed 0's cosine to the teacher, recomputed here from the files with hooks and autograd
    from kdbench.data import load_dataset

    data = load_dataset("digits")
    indices = torch.tensor(document["image_indices"])
    assert document["labels"] == data.test.labels[indices].tolist()
    inputs = normalise(data.test.images[indices], data.mean, data.std).double()
    labels = data.test.labels[indices]

    def maps(architecture: str, run_id: str) -> torch.Tensor:
        model = create_model(architecture, 10, (3, 8, 8))
        load_crd_checkpoint(model, results / "runs" / run_id / "model.pt")
        return direct_gradcam(model.double().eval(), inputs, labels, stage=3).detach()

    kd_seed_0 = rows["KD"]["views"]["gradcam"]["seeds"][0]
    cosine = cosine_similarity(maps("resnet14", pair["teacher_weights"]), maps("resnet8", kd_seed_0["run_id"]))
    assert kd_seed_0["cosine"]["mean"] == pytest.approx(float(cosine.mean()), abs=1e-5)

    # kdbench report shows the score table once explain results exist
    assert main(["report", suite, "--results-dir", str(results), "--no-plots"]) == 0
    out, _ = capsys.readouterr()
    assert "kdbench explain" in out and "Grad-CAM at the last stage" in out
    assert "closer than independent" in (results / "explain-tiny" / "report.md").read_text()


def test_saliency_per_channel_and_a_selection(finished, capsys: pytest.CaptureFixture) -> None:
    suite, results = finished
    out_dir = results / "saliency-out"
    argv = [
        "explain",
        suite,
        "--results-dir",
        str(results),
        "--method",
        "saliency",
        "--per-channel",
        "--images",
        "20",
        "--grid-images",
        "2",
    ]
    assert main([*argv, "--row", "KD", "--pair", "ResNet14,resnet8", "--quiet", "--out", str(out_dir)]) == 0
    capsys.readouterr()
    document = json.loads((out_dir / "saliency.json").read_text())
    assert document["views"] == ["max", "channel0", "channel1", "channel2"]
    [pair] = document["pairs"]
    assert [row["row"] for row in pair["rows"]] == ["KD"]
    scores = pair["rows"][0]["views"]
    assert set(scores) == set(document["views"]) and scores["max"]["closer_rate"]["n"] == 2
    for view in document["views"]:
        assert (out_dir / f"saliency-{view}-resnet14-resnet8.png").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--layer", "stage7"], "choose one of: last, stage1, stage2, stage3"),
        (["--row", "KDD"], "its rows: KD, SRKD, Vanilla"),
        (["--pair", "resnet56,resnet8"], "its pairs: resnet14,resnet8"),
        (["--per-channel"], "--method saliency only"),
        (["--images", "0"], "--images must be a positive integer"),
    ],
)
def test_user_errors_exit_2_naming_the_choices(finished, capsys: pytest.CaptureFixture, options, message) -> None:
    suite, results = finished
    assert main(["explain", suite, "--results-dir", str(results), "--quiet", *options]) == 2
    assert message in capsys.readouterr().err
