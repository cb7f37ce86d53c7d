"""What every command shares: one-line errors and their exit statuses."""

from __future__ import annotations

import argparse
from typing import NoReturn

EXIT_USAGE = 2
EXIT_FAILURE = 1


class CliError(Exception):
    """A problem to report in one line, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)
