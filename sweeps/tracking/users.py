"""The tracking server's users (MLflow's basic-auth app): the user a cluster's sweeps write with.

The server's admin creates it and sets its password; it is never an admin itself, so a node
that holds its password can create experiments and write to the ones it created (every
sweep's: MLflow makes the creator their manager) and read the others, but not manage users
or permissions (docs/cluster.md).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from sweeps.errors import UserError
from sweeps.tracking.client import CREDENTIALS, server_call


@contextlib.contextmanager
def _credentials(username: str, password: str) -> Iterator[None]:
    """MLflow's auth client sends the credentials it finds in the environment, only there."""
    saved = {key: os.environ.get(key) for key in CREDENTIALS}
    os.environ.update(zip(CREDENTIALS, (username, password)))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@server_call
def set_user(uri: str, admin: tuple[str, str], username: str, password: str) -> str:
    """As ADMIN (user, password), create USERNAME with PASSWORD on the basic-auth server at
    URI, or set the password of the USERNAME there; return "created" or "updated". UserError
    if USERNAME is an admin: the nodes' password must not open the server's administration."""
    from mlflow.exceptions import RestException
    from mlflow.server import get_app_client
    with _credentials(*admin):
        client = get_app_client("basic-auth", tracking_uri=uri)
        try:
            user = client.get_user(username)
        except RestException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            client.create_user(username, password)
            return "created"
        if user.is_admin:
            raise UserError(f"MLflow user {username!r} is an admin on {uri}: give the nodes a user of their own")
        client.update_user_password(username, password)
        return "updated"
