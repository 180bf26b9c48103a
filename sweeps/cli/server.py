"""`sweeps server`: the MLflow tracking server that a cluster's sweeps write to (see sweeps/cluster/server.py)."""
from __future__ import annotations

import argparse
import os
import sys

from sweeps import tracking
from sweeps.cluster import BASIC_AUTH, exposure_warning
from sweeps.errors import UserError

HELP = "run the MLflow tracking server for sweeps (127.0.0.1 unless --host; basic auth when exposed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend-store-uri",
                        help=f"where runs are recorded (default: sqlite:///./{tracking.DB_FILE}; "
                             "on a busy cluster a postgresql://... database)")
    parser.add_argument("--artifacts-destination",
                        help=f"where artifacts are stored, served through this server (default: "
                             f"./{tracking.ARTIFACTS_DIR}; on a cluster a shared path or s3://...)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--app-name", choices=[BASIC_AUTH],
                        help="MLflow's basic-auth app: every request needs a user and password "
                             "(clients set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")


def main(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise UserError(f"--port: must be between 1 and 65535, got {args.port}")
    warning = exposure_warning(args.host, args.port, args.app_name)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    command = tracking.server_command(".", args.port, host=args.host, backend_store_uri=args.backend_store_uri,
                                      artifacts_destination=args.artifacts_destination, app_name=args.app_name)
    print(f"MLflow tracking server on http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    # The server replaces this process: a service manager or `nohup` then holds the real
    # server, and signals reach it directly (it stops its workers on SIGTERM).
    os.execve(command[0], command, tracking.server_environment())
