"""`sweeps tracking-user`: the tracking server's user that a cluster's sweeps write with.

Run on the head node by cluster.yaml, once the server answers: as the server's admin
(MLFLOW_AUTH_ADMIN_USERNAME and _PASSWORD, which only the head holds) it creates the user
of MLFLOW_TRACKING_USERNAME and _PASSWORD (what every node holds), or sets its password.
Everything comes from the environment: a password on a command line is shown by `ps`.
"""
from __future__ import annotations

import argparse
import os

from sweeps import tracking
from sweeps.errors import UserError

HELP = ("as the tracking server's admin, create the non-admin user MLFLOW_TRACKING_USERNAME "
        "that the cluster's sweeps write with, or set its password")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default="http://127.0.0.1:5000",
                        help="the basic-auth tracking server (default http://127.0.0.1:5000, on the head)")


def main(args: argparse.Namespace) -> int:
    admin = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin"
    needed = ["MLFLOW_AUTH_ADMIN_PASSWORD", *tracking.CREDENTIALS]
    missing = [key for key in needed if not os.environ.get(key)]
    if missing:
        raise UserError(f"set {', '.join(missing)} (docs/cluster.md)")
    admin_password, username, password = (os.environ[key] for key in needed)
    try:
        # Its first start over a new store runs MLflow's migrations: minutes.
        uri = tracking.Server(args.tracking_uri).ready()
        done = tracking.set_user(uri, (admin, admin_password), username, password)
    except tracking.TrackingError as err:
        raise UserError(str(err)) from err
    print(f"MLflow user {username!r} {done} on {uri} (not an admin)")
    return 0
