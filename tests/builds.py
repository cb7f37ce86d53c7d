"""Run the same steps through a shard of each build, to compare them.

The compiled build runs in the test process; the interpreted one (the same
sources, `OPSCOCKPIT_PURE_PYTHON=1`) in a child process started once, which
reads pickled requests on stdin and answers on stdout:

    python -m tests.builds
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from flows.build import PURE_ENV
from flows.kpis import FAMILIES
from flows.labels import LabelCap
from flows.runtime.core import Shard
from flows.runtime.snapshot import dump_shard
from flows.settings import EngineConfig

Step = tuple[str, Any]  # ("process", (source, items)) or ("mark", (source, max ts, idle))
CHECKPOINTS = 16  # full states compared per run, besides the outputs of every step


class _PlainRecords(pickle.Unpickler):
    """Records (orders, receipts) as (kind, fields) tuples, to compare them."""

    def find_class(self, module: str, name: str) -> Any:
        if name.startswith("restore_"):
            return lambda *fields: (name, fields)
        return super().find_class(module, name)


def state(shard: Shard) -> dict[str, Any]:
    """Everything a shard holds, as plain data (the id table as a sorted list)."""
    header = pickle.loads(dump_shard(shard))
    saved: dict[str, Any] = _PlainRecords(io.BytesIO(header["body"])).load()
    saved["runtime"]["seen"] = sorted(dict(saved["runtime"]["seen"]).items())
    return saved


def run_steps(steps: list[Step], config: EngineConfig, max_labels: int) -> list[Any]:
    """The outputs of each step, then the end of input; the state at checkpoints."""
    shard = Shard("0", config, LabelCap(max_labels), FAMILIES)
    every = max(1, len(steps) // CHECKPOINTS)
    results = []
    for index, (step, args) in enumerate(steps):
        if step == "process":
            shard.process(*args)
        else:
            shard.mark(*args)
        checkpoint = state(shard) if index % every == 0 else None
        results.append((checkpoint, shard.drain()))
    shard.finish()
    results.append((state(shard), shard.drain()))
    return results


class Interpreted:
    """The interpreted build in a child process."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def run_steps(self, steps: list[Step], config: EngineConfig, max_labels: int) -> list[Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        _send(self.process.stdin, (steps, config, max_labels))
        answer = _receive(self.process.stdout)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]


@contextmanager
def interpreted() -> Iterator[Interpreted]:
    """Start the interpreted build's worker; stop it at the end."""
    env = {**os.environ, PURE_ENV: "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.builds"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        yield Interpreted(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def _send(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the interpreted build's worker stopped")
    (size,) = struct.unpack("<Q", header)
    return pickle.loads(stream.read(size))


def main() -> None:
    from flows.build import compiled_modules, is_compiled

    loaded = [sys.modules[name] for name in compiled_modules() if name in sys.modules]
    assert not any(is_compiled(module) for module in loaded), "the worker must be interpreted"
    while True:
        try:
            steps, config, max_labels = _receive(sys.stdin.buffer)
        except EOFError:
            return
        try:
            answer: Any = run_steps(steps, config, max_labels)
        except Exception as exc:  # the caller sees it, as in its own build
            answer = exc
        _send(sys.stdout.buffer, answer)


if __name__ == "__main__":
    main()
