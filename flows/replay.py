"""`opscockpit replay`: a finite file in event time, then the final metrics."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from bytewax.run import cli_main

from flows.dataflow import Sinks, build_flow, single
from flows.exposition import Board, write_metrics_file
from flows.kpis import ALL_FAMILIES, Families
from flows.settings import Runtime, Settings
from flows.sinks import JsonLinesSink, OutputError
from flows.sources import InputError, LinesSource, Progress, file_lines

SOURCE_NAME = "input"


def replay(
    settings: Settings,
    path: str,
    *,
    metrics_file: Path | None = None,
    dlq: Path | None = None,
    alerts: Path | None = None,
    kpis: Path | None = None,
    progress: bool = False,
    families: Families = ALL_FAMILIES,
    stop: threading.Event | None = None,
) -> Board:
    """Process every line of `path` (or stdin for `-`) with `families`;
    return the final metrics board. OutputError: an output could not be written;
    InputError: the input could not be read. Once `stop` is set the input ends
    where it is: the outputs keep what was processed, and no metrics file is
    written (its figures would be of part of the input)."""
    runtime = Runtime(settings)
    source = LinesSource(
        SOURCE_NAME,
        path,
        file_lines(path),
        settings.batch_size,
        settings.max_event_bytes,
        Progress(runtime.clock) if progress else None,
        stop,
    )
    sinks = Sinks(
        dead_letters=JsonLinesSink(dlq) if dlq else None,
        alerts=JsonLinesSink(alerts) if alerts else None,
        kpis=JsonLinesSink(kpis) if kpis else None,
    )
    flow = build_flow(runtime, source, single(SOURCE_NAME), sinks, families)
    # A replay keeps no recovery state, so epochs only pace snapshots: make them rare.
    cli_main(flow, workers_per_process=1, epoch_interval=timedelta(hours=1))
    runtime.board.ready.set()  # all input processed, even if there was none
    for sink in (sinks.dead_letters, sinks.alerts, sinks.kpis):
        if isinstance(sink, JsonLinesSink):
            sink.close()
            sink.check()
    if source.failure is not None:
        raise InputError(source.failure)
    if stop is not None and stop.is_set():
        return runtime.board
    if metrics_file is not None:
        try:
            write_metrics_file(runtime.board, metrics_file)
        except OSError as exc:
            raise OutputError(f"cannot write {metrics_file}: {exc.strerror or exc}") from None
    return runtime.board
