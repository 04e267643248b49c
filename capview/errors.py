"""Errors that reach the user. Each carries the process exit code the CLI uses."""

from __future__ import annotations

# Exit codes (README "Exit codes" must match).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_UNREACHABLE = 4


class CapviewError(Exception):
    """A failure with a one-line message meant for the user."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(CapviewError):
    """deploy.yaml is wrong. The message names file:line:column and the key path."""

    exit_code = EXIT_USAGE


class UsageError(CapviewError):
    exit_code = EXIT_USAGE


class LockHeld(CapviewError):
    exit_code = EXIT_LOCKED


class HostUnreachable(CapviewError):
    """Connecting or authenticating failed, or a preflight check failed."""

    exit_code = EXIT_UNREACHABLE


class RemoteError(CapviewError):
    """A remote script exited non-zero."""

    def __init__(self, message: str, *, exit_status: int | None = None, stderr: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_status = exit_status
        self.stderr = stderr
