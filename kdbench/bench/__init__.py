"""``kdbench bench``: what a training step costs, and what a suite will cost.

- ``settings``: what a benchmark measures and the checks of its values;
- ``workload``: one (pair, method) and the random images and models it is timed on;
- ``kdbench_path``: the step ``kdbench.train`` runs, built by ``kdbench.step.build_training_step``;
- ``reference``: the CRD code's loop (DataLoader workers, per-image PIL transforms, a sync per step);
- ``timing``: windows in which the paths take turns; ``pair``: one pair's methods on both paths;
- ``projection``: a suite's device-hours; ``packing``: throughput with N runs sharing a device;
- ``report``: the text tables and the GPU check's Markdown;
- ``gpu_check``: every CUDA path measured and checked in one command, its stages (``gpu_stages``)
  each in a process of its own under its own time limit.

Every module but ``settings`` and ``gpu_check`` imports torch: import them where they are used (the CLI
does so inside its handler).
"""
