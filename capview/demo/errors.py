"""The demo's one error type: every sandbox problem is one line."""

from capview.errors import CapviewError


class DemoError(CapviewError):
    """The sandbox cannot be used; the message is one line."""
