"""`python -m sweeps COMMAND ...`: one module per command.

Each command module defines `HELP`, `add_arguments(parser)` and `main(args) -> int`.
Expected failures (bad config, unknown sweep, unusable model file) are raised as `UserError`, or
as the error of the part that found them (ConfigError, SpaceError, DataError, ModelFileError),
and printed as one clear line with exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from sweeps.errors import UserError, redact

COMMANDS = {
    "train": "sweeps.cli.train",
    "evaluate": "sweeps.cli.evaluate",
    "sample": "sweeps.cli.sample",
    "run": "sweeps.cli.run",
    "resume": "sweeps.cli.resume",
    "ui": "sweeps.cli.ui",
    "trials": "sweeps.cli.trials",
    "pareto": "sweeps.cli.pareto",
    "export-best": "sweeps.cli.export_best",
    "confirm": "sweeps.cli.confirm",
    "sensitivity": "sweeps.cli.sensitivity",
    "report": "sweeps.cli.report",
    "server": "sweeps.cli.server",
    "tracking-user": "sweeps.cli.tracking_user",
    "submit": "sweeps.cli.jobs",
    "status": "sweeps.cli.jobs",
    "logs": "sweeps.cli.jobs",
    "stop": "sweeps.cli.jobs",
}


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
    from models import ConfigError, ModelFileError
    from models.data import DataError
    from sweeps.space import SpaceError
    try:
        return args._main(args) or 0
    except (UserError, ConfigError, SpaceError, DataError, ModelFileError) as err:
        print(f"error: {redact(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
