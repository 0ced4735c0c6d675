"""Errors stprof reports as one line, each with its documented exit status.

The exit statuses follow the convention of wrappers such as env(1) and
timeout(1): 2 for bad usage or unreadable input, 125 when stprof itself
cannot work here, 126 when the command cannot be run, 127 when it is not
found.  Every other status of ``stprof run`` is the command's own.
"""

from __future__ import annotations

import os
import re

EXIT_USAGE = 2
EXIT_REGRESSION = 1
EXIT_UNAVAILABLE = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


class StprofError(Exception):
    """An error shown to the user as ``stprof: <message>`` and an exit status."""

    exit_status = EXIT_UNAVAILABLE

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def one_line(self) -> str:
        if self.fix:
            return single_line(f"{self.message} ({self.fix})")
        return single_line(self.message)


class UsageError(StprofError):
    exit_status = EXIT_USAGE


class InputError(StprofError):
    """A file stprof was asked to read is missing, truncated or foreign."""

    exit_status = EXIT_USAGE


class CollectorUnavailable(StprofError):
    """The chosen collector cannot run on this machine (root, bcc, headers...)."""

    exit_status = EXIT_UNAVAILABLE


class CommandNotFound(StprofError):
    exit_status = EXIT_NOT_FOUND


class CommandNotExecutable(StprofError):
    exit_status = EXIT_NOT_EXECUTABLE


class TracingError(StprofError):
    """Tracing failed after it started (probe attach, ptrace refused...)."""

    exit_status = EXIT_UNAVAILABLE


# A name made only of these is shown as it is; any other is quoted.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_@%+=:,./~-]+")


def shown(name: str | os.PathLike[str]) -> str:
    """A user-given name or path as a message shows it: plain names as they
    are, anything else quoted as a Python string literal, so that a space
    is visible and a newline or control character is an escape (one line)."""
    text = os.fspath(name)
    return text if _PLAIN_NAME.fullmatch(text) else repr(text)


# What str.splitlines() breaks a line at.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def single_line(text: str) -> str:
    """The last guard of the one-line rule: line breaks left in a message
    (a name not passed through :func:`shown`) become visible escapes."""
    if _LINE_BREAKS.isdisjoint(text):
        return text
    return "".join(repr(char)[1:-1] if char in _LINE_BREAKS else char for char in text)
