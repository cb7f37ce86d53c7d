"""What every command shares: one-line errors and their exit statuses."""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_FAILURE = 1
DEFAULT_TOPIC = "tps.events"  # the input topic of `run` and `simulate`


def say(line: str) -> None:
    """Write a line to stderr in one write. `print` writes the text and its newline
    apart, and the processes of a local cluster share one stderr: one's line ran
    into another's (a test waiting for each process's startup line saw one)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class CliError(Exception):
    """A problem to report in one line, with the exit status to use."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


# argparse's own pattern for a negative number, and a number with a unit after it.
NEGATIVE_VALUE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d*\.?\d+[a-zA-Z]+$")


class Once(argparse.Action):
    """A file option given at most once: a second --config would silently replace
    the first, where a user may expect the two to merge."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option: str | None = None,
    ) -> None:
        first = getattr(namespace, self.dest)
        if first is not None:
            parser.error(f"{option} given twice ({first}, {values}): give one file")
        setattr(namespace, self.dest, values)


def named(text: str) -> str:
    """An argparse type: a file name or `-`, not empty (Path("") is the working
    directory, and was refused as one)."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return text


def path(text: str) -> Path:
    """An argparse type: a path, not empty."""
    return Path(named(text))


class Parser(argparse.ArgumentParser):
    """argparse, but errors are one line, a negative duration (`--lateness -5s`)
    is read as a value, as a negative number is, so that it gets its own error, and
    an option is taken only by its whole name (`--metrics` was `--metrics-file`, and
    a later option could have changed what a script's abbreviation meant)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})
        self._negative_number_matcher = NEGATIVE_VALUE

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{self.prog}: {message} (see --help)", EXIT_USAGE)


def writable(path: Path | None, what: str = "", *, replaced: bool = False) -> None:
    """Checked before any work: a replay writes its metrics only at the end. A file
    is opened to append, which changes nothing in it (a pipe or a device is not
    opened: its reader would see the end); one `replaced` (written to a new file,
    then renamed) needs a directory that takes new files."""
    if path is None:
        return
    named = f"{what} {path}" if what else str(path)
    if path.is_dir():
        raise CliError(f"cannot write {named}: is a directory")
    if not path.parent.is_dir():
        raise CliError(f"cannot write {named}: no directory {path.parent}")
    target = replaced_at(path)
    if target is None:
        if not os.access(path, os.W_OK):
            raise CliError(f"cannot write {named}: permission denied")
        return
    try:
        existed = target.exists()
        target.open("ab").close()
        if not existed:
            target.unlink()
    except OSError as exc:
        raise CliError(f"cannot write {named}: {exc.strerror or exc}") from None
    if replaced and not os.access(target.parent, os.W_OK | os.X_OK):
        raise CliError(f"cannot write {named}: cannot create files in {target.parent}")


def distinct(outputs: dict[str, Path | None], inputs: dict[str, Path | None]) -> None:
    """Two outputs into one file would write over each other's records, and an
    output into a file read (the input, the config) would empty it before it is
    read (however named: a link, another path). A pipe or a device takes every
    writer."""
    read = {same: option for option, path in inputs.items() if (same := _file(path)) is not None}
    seen: dict[object, str] = {}
    for option, path in outputs.items():
        same = _file(path)
        if same is None:
            continue
        if same in read:
            raise CliError(f"{option} names {read[same]}, {path}: it would be written over")
        if same in seen:
            raise CliError(f"{seen[same]} and {option} name the same file {path}")
        seen[same] = option


def _file(path: Path | None) -> object:
    """What identifies the regular file at `path` (its device and inode, or where it
    would be made); None for no path, a pipe or a device."""
    if path is None or str(path) == "-":
        return None
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return os.path.realpath(path)
    except OSError:
        return None  # unreadable: the open says why
    return (found.st_dev, found.st_ino) if stat.S_ISREG(found.st_mode) else None


def replaced_at(path: Path) -> Path | None:
    """Where a new file written over `path` goes: through a link, to its target; None
    for a pipe or a device, written as it is (renaming over one would replace it
    with a file)."""
    if path.exists() and not path.is_file():
        return None
    return path.resolve() if path.is_symlink() else path
