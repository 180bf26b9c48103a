"""The commands of `python -m sweeps` (and of the `sweeps` console script): the top layer.

One module per command (`commands.COMMANDS` maps the names), each with `HELP`,
`add_arguments(parser)` and `main(args)`: it parses its options, calls the layers below
and prints. `options` holds the options several commands share; running a sweep is the
engine's (engine.driver), its folder and record `record`'s. A new command is a module here and a line
in COMMANDS; what it computes belongs to the subpackage that owns it. May import every
subpackage and `models`; imports no Ray, Optuna, MLflow or pyarrow itself, and `engine`
(which imports Ray, seconds) only once the input is valid.
"""
from sweeps.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
