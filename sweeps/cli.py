"""`python -m sweeps COMMAND ...`: one module per command.

Each command module defines `HELP`, `add_arguments(parser)` and `main(args) -> int`.
Expected failures (bad config, unknown sweep) are raised as `UserError` and
printed as one clear line with exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "train": "sweeps.train_cmd",
    "run": "sweeps.run",
    "resume": "sweeps.resume",
    "ui": "sweeps.ui",
    "trials": "sweeps.trial_table",
    "pareto": "sweeps.pareto",
    "export-best": "sweeps.export",
    "confirm": "sweeps.confirm",
    "sensitivity": "sweeps.sensitivity",
    "report": "sweeps.report",
    "server": "sweeps.server",
    "submit": "sweeps.jobs",
    "status": "sweeps.jobs",
    "logs": "sweeps.jobs",
    "stop": "sweeps.jobs",
}


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sweeps", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from models.config import ConfigError
    from models.data import DataError
    try:
        return args._main(args) or 0
    except (UserError, ConfigError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
