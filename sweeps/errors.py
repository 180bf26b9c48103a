"""The one exception every layer may raise for a mistake in the user's input."""


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit status 2 (see sweeps.cli)."""
