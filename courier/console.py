"""Where core code reports progress: never print() in core."""

from __future__ import annotations

import sys
from typing import Protocol


class Console(Protocol):
    def status(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...


class NoopConsole:
    def status(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass


class TerminalConsole:
    """Progress lines on stderr when it is a terminal; warnings always."""

    def __init__(self, quiet: bool = False):
        self.live = sys.stderr.isatty() and not quiet

    def status(self, message: str) -> None:
        if self.live:
            sys.stderr.write(f"\r\033[K{message}")
            sys.stderr.flush()

    def warn(self, message: str) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"warning: {message}\n")

    def done(self) -> None:
        if self.live:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
