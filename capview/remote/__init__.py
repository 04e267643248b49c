"""Running POSIX sh scripts on hosts. No UI imports here (a test enforces it)."""

from capview.remote.transport import RunResult, Transport, ScriptPreamble

__all__ = ["RunResult", "Transport", "ScriptPreamble"]
