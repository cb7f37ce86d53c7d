"""What every command shares: one-line errors and their exit statuses."""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A problem to report in one line, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# argparse's own pattern for a negative number, and a number with a unit after it.
NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d*\.?\d+[a-zA-Z]+$")


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line, and a negative duration (`--lateness -5s`)
    is read as a value, as a negative number is, so that it gets its own error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_VALUE

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)
