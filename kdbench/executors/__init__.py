"""Executors: where runs train (this process, or a SLURM cluster through submitit)."""
