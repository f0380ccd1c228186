"""kdbench: regenerate published knowledge-distillation results tables from one YAML suite."""

__version__ = "0.1.0"
