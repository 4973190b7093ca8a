"""Errors that carry a one-line, user-facing message."""

from __future__ import annotations


class WafleetError(Exception):
    """Base class; ``str(err)`` is the one line shown to the user."""

    exit_code = 1


class ConfigError(WafleetError):
    """Invalid configuration or usage: exit code 2."""

    exit_code = 2


class UsageError(WafleetError):
    """Bad command-line input (unknown tenant, invalid file ...): exit code 2."""

    exit_code = 2


class NotFoundError(WafleetError):
    exit_code = 2
