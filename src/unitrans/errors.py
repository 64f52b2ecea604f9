"""User-facing errors.

A user mistake (bad file, bad option) raises a `UnitransError`; the CLI prints its one-line message as
`unitrans: error: ...` and exits with code 2. Library callers catch it like any exception. Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


class UnitransError(Exception):
    """A problem the user can fix; its message is one line and says what was expected."""

    exit_code = 2


class InputError(UnitransError):
    """Malformed input at a known place: renders as `FILE:LINE: message`."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")
