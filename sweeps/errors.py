"""What every layer may use to report: UserError for a mistake in the user's input, and
`redact` for any text shown, logged or recorded that may hold a credential."""
from __future__ import annotations

import re


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2 (see sweeps.cli)."""


URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")
SECRET_NAME = r"(?<![\w.])[A-Za-z0-9_]*(?:PASSWORD|TOKEN|SECRET)[A-Za-z0-9_]*"
"""A variable or key named for a secret, in any case; not a dotted config key's last part."""
SECRET_ASSIGNMENT = re.compile(rf"(?i)({SECRET_NAME})=(?:'[^']*'|\"[^\"]*\"|\S+)")
"""An environment-style assignment of a secret: MLFLOW_TRACKING_PASSWORD=..., ray_auth_token=..."""
SECRET_ENTRY = re.compile(rf"""(?i)((["']){SECRET_NAME}\2\s*:\s*)(?P<value>"(?:[^"\\]|\\.)*"|'[^']*')""")
"""A quoted entry of a secret in JSON or a Python mapping: "MLFLOW_TRACKING_PASSWORD": "..." """


def redact(text: str) -> str:
    """TEXT with the password of every URL (`http://user:***@host`) and the value of every
    secret assignment (`MLFLOW_TRACKING_PASSWORD=***`) or quoted entry (`"db_password": "***"`)
    replaced by ***."""
    text = URL.sub(lambda match: _without_password(match.group()), text)
    return SECRET_ASSIGNMENT.sub(r"\1=***", SECRET_ENTRY.sub(_without_value, text))


def _without_value(entry: re.Match) -> str:
    quote = entry.group("value")[0]
    return f"{entry.group(1)}{quote}***{quote}"


def _without_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    # Up to the last '@': a password may hold '@', '/' or ':' that its writer did not escape.
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
