"""The import rules of docs/architecture.md, checked in fresh interpreters."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import kdbench

LIGHT = [
    "kdbench.suite",
    "kdbench.validation",
    "kdbench.errors",
    "kdbench.lifecycle",
    "kdbench.registry",
    "kdbench.results.store",
    "kdbench.results.schema",
    "kdbench.cli",
]
HEAVY = ("torch", "torchvision", "pandas", "seaborn", "matplotlib", "submitit", "sklearn")
#: the only modules that may import submitit (a GPU machine without it runs everything else)
SUBMITIT_HOMES = ("kdbench.executors.slurm.jobs", "kdbench.executors.slurm.submission")


def loaded_after(imports: list[str], watch: tuple[str, ...]) -> list[str]:
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({name!r})\n" for name in imports)
    code += f"print('LOADED:' + ','.join(m for m in {watch!r} if m in sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("LOADED:"))
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


def test_the_light_core_imports_nothing_heavy() -> None:
    assert loaded_after(LIGHT, HEAVY) == []


def test_only_the_slurm_job_modules_import_submitit() -> None:
    modules = [
        m.name
        for m in pkgutil.walk_packages(kdbench.__path__, "kdbench.")
        if not m.name.startswith(SUBMITIT_HOMES) and m.name != "kdbench.__main__"
    ]
    assert loaded_after(modules, ("submitit",)) == []
