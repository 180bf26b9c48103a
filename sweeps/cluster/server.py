"""`sweeps server`: the MLflow tracking server that a cluster's sweeps write to.

The same server a local sweep starts for itself (tracking.server_command), run in the
foreground for as long as the cluster is up. It binds to 127.0.0.1 unless --host says
otherwise: every trial writes through it, so whoever reaches its port can read, change
and delete every sweep. Exposed beyond this machine it should run MLflow's basic-auth
app, whose admin password and session key come from the environment
(MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY; see docs/cluster.md).
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys

from sweeps import tracking
from sweeps.errors import UserError

HELP = "run the MLflow tracking server for sweeps (127.0.0.1 unless --host; basic auth when exposed)"
BASIC_AUTH = "basic-auth"


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


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, or a name resolving there)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except socket.gaierror as err:
            raise UserError(f"--host {host!r}: cannot resolve it ({err.strerror})") from None


def main(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise UserError(f"--port: must be between 1 and 65535, got {args.port}")
    if not is_loopback(args.host) and args.app_name != BASIC_AUTH:
        print(f"warning: --host {args.host} exposes the tracking server beyond this machine without "
              f"authentication: anyone who reaches port {args.port} can read, change and delete every "
              f"sweep. Add --app-name {BASIC_AUTH} (see docs/cluster.md).", file=sys.stderr, flush=True)
    command = tracking.server_command(".", args.port, host=args.host, backend_store_uri=args.backend_store_uri,
                                      artifacts_destination=args.artifacts_destination, app_name=args.app_name)
    print(f"MLflow tracking server on http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    # The server replaces this process: a service manager or `nohup` then holds the real
    # server, and signals reach it directly (it stops its workers on SIGTERM).
    os.execve(command[0], command, tracking.server_environment())
