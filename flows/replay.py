"""`opscockpit replay`: a finite file in event time, then the final metrics."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from bytewax.run import cli_main

from flows.dataflow import Sinks, build_flow, single
from flows.exposition import Board, write_metrics_file
from flows.kpis import ALL_FAMILIES, Families
from flows.runtime.pipeline import DUPLICATE, EVENTS, LATE, REJECTED, WATERMARK
from flows.settings import Runtime, Settings
from flows.sinks import JsonLinesSink, OutputError
from flows.sources import InputError, LinesSource, Progress, file_lines
from flows.timeutil import US_PER_SECOND, format_time

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


def summary(board: Board, path: str, dlq: Path | None) -> str:
    """What a replay made of its input, in one line: each line is counted once, as
    accepted, dead-lettered (the commonest reasons named), late or a duplicate. A
    run that finished silently left a user to open the metrics file to learn that
    every line had been dead-lettered."""
    totals = board.totals()
    counts = {m: sum(totals.get(m.name, {}).values()) for m in (EVENTS, REJECTED, LATE, DUPLICATE)}
    lines = sum(counts.values())
    reasons = sorted(
        ((count, reason) for reason, count in totals.get(REJECTED.name, {}).items() if count),
        reverse=True,
    )
    rejected = f"{counts[REJECTED]:,} dead-lettered"
    if reasons:
        rejected += " (" + ", ".join(f"{reason} {count:,}" for count, reason in reasons) + ")"
    source = "stdin" if path == "-" else path
    parts = [
        f"opscockpit: replayed {_count(lines, 'line')} of {source}: {counts[EVENTS]:,} "
        f"accepted, {rejected}, {counts[LATE]:,} late, {_count(counts[DUPLICATE], 'duplicate')}"
    ]
    watermark = totals.get(WATERMARK.name, {}).get(())
    if counts[EVENTS] and watermark is not None:
        parts.append(f"event time reached {format_time(round(watermark * US_PER_SECOND))}")
    if counts[REJECTED] and dlq is None:
        parts.append("--dlq FILE keeps the dead letters")
    if lines and not counts[EVENTS]:
        parts.append("no line was an event: is this a file of TPS events, a JSON object a line?")
    return "; ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"
