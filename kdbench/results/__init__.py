"""Run directories, result records and reports."""
