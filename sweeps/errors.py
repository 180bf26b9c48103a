"""What every layer may use to report: UserError for a mistake in the user's input, and
`redact` for any text shown, logged or recorded that may hold a credential."""
from __future__ import annotations

import re


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2 (see sweeps.cli)."""


URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
SECRET_ASSIGNMENT = re.compile(r"\b([A-Z0-9_]*(?:PASSWORD|TOKEN|SECRET)[A-Z0-9_]*)=(?:'[^']*'|\"[^\"]*\"|\S+)")
"""An environment-style assignment of a secret: MLFLOW_TRACKING_PASSWORD=..., RAY_AUTH_TOKEN=..."""


def redact(text: str) -> str:
    """TEXT with the password of every URL (`http://user:***@host`) and the value of every
    secret assignment (`MLFLOW_TRACKING_PASSWORD=***`) replaced by ***."""
    return SECRET_ASSIGNMENT.sub(r"\1=***", URL.sub(lambda match: _without_password(match.group()), text))


def _without_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    # Up to the last '@': a password may hold '@', '/' or ':' that its writer did not escape.
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
