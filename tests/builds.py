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
from flows.kpis import COMBINERS, FAMILIES
from flows.labels import LabelCap
from flows.runtime.combine import CombineStage
from flows.runtime.core import Shard
from flows.runtime.outputs import Partials
from flows.runtime.snapshot import dump_combine, dump_shard
from flows.settings import EngineConfig

Step = tuple[str, Any]  # ("process", (source, items)) or ("mark", (source, max ts, idle))
CHECKPOINTS = 16  # full states compared per run, besides the outputs of every step


class _PlainRecords(pickle.Unpickler):
    """Records (orders, receipts) as (kind, fields) tuples, to compare them."""

    def find_class(self, module: str, name: str) -> Any:
        if name.startswith("restore_"):
            return lambda *fields: (name, fields)
        return super().find_class(module, name)


def plain(snapshot: bytes) -> dict[str, Any]:
    """A snapshot's body as plain data."""
    header = pickle.loads(snapshot)
    return _PlainRecords(io.BytesIO(header["body"])).load()  # type: ignore[no-any-return]


def state(shard: Shard, stage: CombineStage | None = None) -> dict[str, Any]:
    """Everything a shard (and the combine stage) holds, as plain data (the id
    table as a sorted list, each hour's ids sorted: the compiled table keeps no
    order)."""
    saved = plain(dump_shard(shard))
    runtime = saved["runtime"]
    runtime["seen"] = sorted(dict(runtime["seen"]).items())
    runtime["seen_hours"] = {hour: sorted(ids) for hour, ids in runtime["seen_hours"].items()}
    if stage is not None:
        saved["combine"] = plain(dump_combine(stage))
        saved["combine_series"] = stage.ledger.series
    return saved


def run_steps(steps: list[Step], config: EngineConfig, max_labels: int) -> list[Any]:
    """The outputs of each step (the combine stage's too), then the end of input;
    the state at checkpoints."""
    labels = LabelCap(max_labels)
    shard = Shard("0", config, labels, FAMILIES)
    stage = CombineStage(("0",), config.window, COMBINERS, labels, config.kpi)
    every = max(1, len(steps) // CHECKPOINTS)
    results = []
    for index, (step, args) in enumerate(steps):
        if step == "process":
            shard.process(*args)
        else:
            shard.mark(*args)
        checkpoint = state(shard, stage) if index % every == 0 else None
        results.append((checkpoint, combined(shard, stage)))
    shard.finish()
    outputs = combined(shard, stage)
    results.append((state(shard, stage), outputs))
    return results


def combined(shard: Shard, stage: CombineStage) -> list[Any]:
    """A step's outputs: the shard's, its partials through the combine stage, and
    the combine stage's."""
    outputs = shard.drain()
    for output in outputs:
        if type(output) is Partials:
            stage.add(output)
    return outputs + stage.drain()


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
