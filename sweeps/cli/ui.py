"""`sweeps ui`: browse the sweeps recorded in ./mlflow.db in the MLflow UI."""
from __future__ import annotations

import argparse
import os
import time

from sweeps import tracking
from sweeps.errors import UserError

HELP = "browse the sweeps run from this directory in the MLflow UI (serves ./mlflow.db)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")


def main(args: argparse.Namespace) -> int:
    if not os.path.exists(tracking.DB_FILE):
        raise UserError(f"no ./{tracking.DB_FILE} here: run `python -m sweeps run` from this directory "
                        "first (a sweep with --tracking-uri is browsed on that server)")
    try:
        with tracking.local_server(".", port=args.port) as server:
            uri = server.ready()
            print(f"MLflow UI at {tracking.ui_link(uri)}  (Ctrl-C to stop)", flush=True)
            store = tracking.Store(uri)
            for name in store.sweep_names():  # links that open the UI's model-training view
                print(f"  {name:<30} {tracking.ui_link(uri, store.sweep(name).experiment_id)}", flush=True)
            while True:
                time.sleep(3600)
    except tracking.TrackingError as err:
        raise UserError(f"{err} (is port {args.port} in use? try --port)") from err
    except KeyboardInterrupt:
        return 0
