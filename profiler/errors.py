"""Errors stprof reports as one line, each with its documented exit status.

The exit statuses follow the convention of wrappers such as env(1) and
timeout(1): 2 for bad usage or unreadable input, 125 when stprof itself
cannot work here, 126 when the command cannot be run, 127 when it is not
found.  Every other status of ``stprof run`` is the command's own.
"""

from __future__ import annotations

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
            return f"{self.message} ({self.fix})"
        return self.message


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
