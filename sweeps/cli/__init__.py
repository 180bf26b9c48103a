"""The commands of `python -m sweeps` (and the `sweeps` console script)."""
from sweeps.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
