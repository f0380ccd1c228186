"""``compile: reduce-overhead`` on CUDA: ResNet56 -> ResNet20 KD compiles whole and replays as CUDA graphs.

Checked through torch's logging API (the ``graph_breaks`` and ``cudagraphs`` / ``perf_hints`` artifacts,
whose records say why a graph broke or why CUDA graphs were skipped) and dynamo's counters, not by eye.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch

from kdbench.bench.workload import calibrate_batchnorm, resolved_terms
from kdbench.models import create_model
from kdbench.step import build_training_step
from kdbench.suite import SCHEDULE_PRESETS
from tests.gpu.cuda_helpers import CUDA_ONLY

pytestmark = CUDA_ONLY

#: the artifacts that report a graph break or a skipped CUDA graph (the names differ across torch versions)
ARTIFACTS = ("graph_breaks", "cudagraphs", "perf_hints", "recompiles")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def torch_logs() -> Iterator[Records]:
    """Every record of the artifacts above while the test runs, from each of their loggers (an artifact's
    logger does not propagate to ``torch``; it exists once its module is imported)."""
    import torch._dynamo.symbolic_convert
    import torch._inductor.compile_fx
    import torch._inductor.cudagraph_trees
    import torch._inductor.cudagraph_utils  # noqa: F401  (registers the cudagraphs artifact's logger)
    from torch._logging._internal import log_registry

    artifacts = {name: True for name in ARTIFACTS if name in log_registry.artifact_names}
    assert "graph_breaks" in artifacts, "torch's logging API no longer names graph breaks 'graph_breaks'"
    torch._logging.set_logs(**artifacts)
    loggers = [
        logging.getLogger(name)
        for name in sorted(log_registry.artifact_log_qnames)
        if name.rsplit(".__", 1)[-1] in artifacts
    ]
    handler = Records()
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        torch._logging.set_logs()


def test_reduce_overhead_kd_step_has_no_graph_break_and_no_skipped_cudagraph(torch_logs: Records) -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    device = torch.device("cuda")
    torch.manual_seed(0)
    teacher = create_model("resnet56", 100).to(device)
    calibrate_batchnorm(teacher, (3, 32, 32), device, seed=0)
    step = build_training_step(
        create_model("resnet20", 100),
        teacher,
        terms=resolved_terms(["kd"]),
        ce_weight=None,
        schedule=SCHEDULE_PRESETS["crd"],
        training={"precision": "bf16", "channels_last": True, "compile": "reduce-overhead"},
        seed=0,
        device=device,
    )
    meter = step.begin_epoch(0)
    generator = torch.Generator(device=device).manual_seed(0)
    images = torch.randn(64, 3, 32, 32, device=device, generator=generator)
    images = images.contiguous(memory_format=torch.channels_last)  # as the tensor loader hands them over
    labels = torch.randint(0, 100, (64,), device=device, generator=generator)
    for _ in range(5):  # warm-up, recording, then replays
        step((images, labels), meter)
    torch.cuda.synchronize()

    messages = [f"{record.name}: {record.getMessage()}" for record in torch_logs.records]
    breaks = [m for m in messages if "__graph_breaks" in m]
    skipped = [m for m in messages if "skipping cudagraphs" in m.lower()]
    assert not breaks and not counters["graph_break"], breaks or dict(counters["graph_break"])
    assert not skipped and counters["inductor"]["cudagraph_skips"] == 0, skipped
    # it did compile (one frame: the distiller's forward) and the losses stayed finite
    assert counters["stats"]["unique_graphs"] >= 1
    assert meter.finish(0).nonfinite is None
