"""The packing benchmark's failure handling (its numbers are checked through the CLI in test_pair)."""

from __future__ import annotations

import pytest

from kdbench.bench.packing import PackingBenchFailed, time_packed
from kdbench.bench.settings import BenchSettings


class DiesWhenUnpickled:
    """Stands in for a workload; the spawned process that unpickles it exits at once, as if killed."""

    def __reduce__(self):
        import os

        return (os._exit, (3,))


def test_a_packing_process_that_dies_is_named_instead_of_waited_for() -> None:
    settings = BenchSettings(device="cpu", steps=1, warmup=0)
    with pytest.raises(PackingBenchFailed) as error:
        time_packed(DiesWhenUnpickled(), settings, 2)  # type: ignore[arg-type]
    assert "process 1/2: died with exit code 3" in str(error.value)
    assert "process 2/2: died with exit code 3" in str(error.value)
