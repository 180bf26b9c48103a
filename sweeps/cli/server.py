"""`sweeps server`: the MLflow tracking server that a cluster's sweeps write to (see sweeps/cluster/server.py)."""
from __future__ import annotations

import argparse
import os
import sys

from sweeps import tracking
from sweeps.cluster import BASIC_AUTH, exposure_warning
from sweeps.errors import UserError, redact

HELP = "run the MLflow tracking server for sweeps (127.0.0.1 unless --host; basic auth when exposed)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend-store-uri",
                        help=f"where runs are recorded (default: sqlite:///./{tracking.DB_FILE}; one that outlives "
                             "this machine: postgresql://USER@HOST:5432/DB, the password in PGPASSWORD or ~/.pgpass)")
    parser.add_argument("--artifacts-destination",
                        help=f"where artifacts are stored, served through this server (default: "
                             f"./{tracking.ARTIFACTS_DIR}; on a cluster a shared path or s3://...)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    parser.add_argument("--app-name", choices=[BASIC_AUTH],
                        help="MLflow's basic-auth app: every request needs a user and password "
                             "(clients set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")
    parser.add_argument("--auth-database-uri",
                        help="with --app-name basic-auth: where its users and permissions are kept (default: the "
                             "--backend-store-uri database when that is PostgreSQL, else ./basic_auth.db)")


def main(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise UserError(f"--port: must be between 1 and 65535, got {args.port}")
    auth_database = args.auth_database_uri or (
        args.backend_store_uri if tracking.is_postgres(args.backend_store_uri) else None)
    if args.auth_database_uri and args.app_name != BASIC_AUTH:
        raise UserError(f"--auth-database-uri: the users' database of --app-name {BASIC_AUTH}, which is not given")
    warning = exposure_warning(args.host, args.port, args.app_name)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    environment = tracking.server_environment()
    try:
        # A database that refuses the connection is one line here (a service manager's log),
        # not a traceback from every worker of the server.
        for uri in {args.backend_store_uri, auth_database} - {None}:
            if tracking.is_postgres(uri):
                tracking.check_database(uri)
    except tracking.TrackingError as err:
        raise UserError(str(err)) from err
    if args.app_name == BASIC_AUTH and auth_database:
        environment.update(tracking.auth_environment(".", auth_database))
    command = tracking.server_command(".", args.port, host=args.host, backend_store_uri=args.backend_store_uri,
                                      artifacts_destination=args.artifacts_destination, app_name=args.app_name)
    print(f"MLflow tracking server on http://{args.host}:{args.port}  (Ctrl-C to stop)"
          + (f"; runs in {redact(args.backend_store_uri)}" if args.backend_store_uri else "")
          + (f", users in {redact(auth_database)}" if args.app_name == BASIC_AUTH and auth_database else ""),
          flush=True)
    # The server replaces this process: a service manager or `nohup` then holds the real
    # server, and signals reach it directly (it stops its workers on SIGTERM).
    os.execve(command[0], command, environment)
