"""Installed from a wheel (no ``-e``), kdbench finds its paper numbers and profiles inside the package.

The wheel is built from this checkout and installed into a fresh virtual environment that borrows
the test environment's third-party packages (torch, pandas, ...) through a ``.pth`` line, so nothing
is downloaded; the editable install of the checkout is not visible there (``.pth`` files of a
borrowed folder are not run). The commands run from a folder outside the checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the installed environment's python, the wheel file)."""
    work = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(work)],
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{built.stderr[-3000:]}")
    wheel = next(work.glob("kdbench-*.whl"))
    env = work / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # install: a wheel is a zip laid out as site-packages
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(purelib)
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "borrowed-test-packages.pth").write_text("\n".join(borrowed) + "\n")
    return python, wheel


def test_the_wheel_carries_the_paper_numbers_and_profiles(wheel_env: tuple[Path, Path]) -> None:
    _, wheel = wheel_env
    names = zipfile.ZipFile(wheel).namelist()
    assert {"kdbench/results/papers/srkd.yaml", "kdbench/results/papers/crd.yaml"} <= set(names)
    assert any(n.startswith("kdbench/executors/slurm/profiles/") and n.endswith(".yaml") for n in names)


def test_plan_and_report_from_a_wheel_outside_the_checkout(wheel_env: tuple[Path, Path], tmp_path: Path) -> None:
    python, _ = wheel_env
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KDBENCH_RESULTS")}
    where = subprocess.run(
        [str(python), "-c", "import kdbench; print(kdbench.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(ROOT) not in where, f"the checkout leaked into the wheel environment: {where}"
    command = [str(python), "-m", "kdbench"]
    planned = subprocess.run(
        [*command, "plan", "suites/cifar10.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert planned.returncode == 0, planned.stderr
    assert "to train" in planned.stdout
    reported = subprocess.run(
        [*command, "report", "suites/cifar10.yaml"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert reported.returncode == 0, reported.stderr
    report = (tmp_path / "results" / "srkd-table3" / "report.md").read_text()
    # the paper column holds the published numbers (srkd/table3: KD 86.52 top-1 on ResNet20 -> ResNet8,
    # 88.67 on ResNet32 -> ResNet20), read from the paper file inside the installed wheel
    kd_row = next(line for line in report.splitlines() if line.startswith("| KD ") and "86.52" in line)
    assert "88.67" in kd_row, report[:3000]
    paper_dir = subprocess.run(
        [str(python), "-c", "from kdbench.results.paper import PAPER_DIR; print(PAPER_DIR)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert str(ROOT) not in paper_dir and (Path(paper_dir) / "srkd.yaml").is_file()
