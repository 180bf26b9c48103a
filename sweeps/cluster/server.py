"""The tracking server a cluster's sweeps share: when it may run without authentication.

`sweeps server` runs the same server a local sweep starts for itself
(tracking.server_command), in the foreground for as long as the cluster is up. It binds to
127.0.0.1 unless --host says otherwise: every trial writes through it, so whoever reaches
its port can read, change and delete every sweep. Exposed beyond this machine it should
run MLflow's basic-auth app, whose admin password and session key come from the
environment (MLFLOW_AUTH_ADMIN_PASSWORD, MLFLOW_FLASK_SERVER_SECRET_KEY; see docs/cluster.md).
"""
from __future__ import annotations

import ipaddress
import socket

from sweeps.errors import UserError

BASIC_AUTH = "basic-auth"


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


def exposure_warning(host: str, port: int, app_name: str | None) -> str | None:
    """What to tell the user who exposes the server beyond this machine without authentication."""
    if is_loopback(host) or app_name == BASIC_AUTH:
        return None
    return (f"warning: --host {host} exposes the tracking server beyond this machine without "
            f"authentication: anyone who reaches port {port} can read, change and delete every "
            f"sweep. Add --app-name {BASIC_AUTH} (see docs/cluster.md).")
