"""Benchmarks of the replay path: throughput against the parsing floor, peak memory
and state size, scrape cost at the label cap, and bounded memory over a long run."""

from __future__ import annotations

import gc
import http.client
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from tests.bench import data
from tests.bench.child import ENTRIES_MARK
from tests.bench.common import (
    KIB,
    BenchFailure,
    Figure,
    Finished,
    Spread,
    at_least,
    at_most,
    board_events_seen,
    events_seen,
    log,
    mib,
    ms,
    nbytes,
    opscockpit_measured,
    pct,
    points,
    rate,
    run_to_completion,
)

# Replay / floor, best to best in one run (issue 15), per mix, and its "done" bar.
FLOOR_TARGETS = {"default": 0.55, "order-heavy": 0.45}
FLOOR_DONE = {"default": 0.40, "order-heavy": 0.40}
OPEN_ORDER_TARGET = KIB  # bytes per open order (issue 5)
ITEM_TARGET = 2 * KIB  # bytes per inventory item with 28 days of history (issue 16)
# Inventory health may cost the order-heavy replay at most a tenth of its ratio (issue 16).
INVENTORY_DROP = 0.10
FLAT_TOLERANCE = 0.10  # flat: the later half never exceeds the earlier half's peak by more


def floor_pass(path: Path) -> tuple[int, float]:
    """Read every line and orjson.loads it: (lines, seconds)."""
    loads, error = orjson.loads, orjson.JSONDecodeError
    started = time.perf_counter()
    lines = 0
    with path.open("rb") as handle:
        for line in handle:
            try:  # noqa: SIM105 (contextlib.suppress would cost more than the parse)
                loads(line)
            except error:
                pass
            lines += 1
    return lines, time.perf_counter() - started


def replay_pass(path: Path, lines: int, without: str | None = None) -> float:
    """flows.replay.replay(Settings(), path) in this process, with every family or
    `without` one: seconds; checks the counts."""
    from flows.kpis import ALL_FAMILIES
    from flows.replay import replay
    from flows.settings import Settings

    families = ALL_FAMILIES if without is None else ALL_FAMILIES.without(without)
    gc.collect()
    started = time.perf_counter()
    board = replay(Settings(), str(path), families=families)
    elapsed = time.perf_counter() - started
    seen = board_events_seen(board.totals())
    if seen != lines:
        raise BenchFailure(f"replay of {path.name} counted {seen:,} events for {lines:,} lines")
    return elapsed


def replay_subprocess(path: Path, *extra: str, sample_every: float | None = None) -> Finished:
    """`opscockpit replay FILE --quiet` as a child: its peak RSS; checks the counts."""
    metrics = path.with_name(path.name + ".prom")
    finished = run_to_completion(
        opscockpit_measured("replay", str(path), "--quiet", "--metrics-file", str(metrics), *extra),
        sample_every=sample_every,
    )
    if finished.returncode != 0:
        raise BenchFailure(f"opscockpit replay {path.name} failed: {finished.stderr[-2000:]}")
    seen = events_seen(metrics.read_text())
    metrics.unlink()
    lines = data.line_count(path)
    if seen != lines:
        raise BenchFailure(f"replay of {path.name} counted {seen:,} events for {lines:,} lines")
    return finished


def mixes(ctx: dict[str, Any]) -> dict[str, Path]:
    """The inputs users have: the simulator's default mix (three events in four are
    storefront counters) and an order-heavy one (what warehouses stream)."""
    quick = ctx["quick"]
    return {
        "default": data.simulated(24 if quick else 72),
        "order-heavy": data.order_heavy(30 if quick else 120),
    }


def bench_floor(ctx: dict[str, Any]) -> list[Figure]:
    """1. Floor (read + orjson.loads) vs replay, in-process, interleaved, per mix;
    replay peak RSS."""
    runs = 5  # best of five: a pass on this shared host can lose a third to a neighbour
    from flows.cli import tune_gc

    tune_gc()  # as `opscockpit` does in main(): the replay is measured as the CLI runs it
    figures: list[Figure] = []
    for mix, path in mixes(ctx).items():
        lines = data.line_count(path)
        floor_passes(path, 1)  # warm the page cache
        floors, replays, bare = [], [], []  # bare: without inventory health (order-heavy)
        for run in range(runs):
            counted, seconds = floor_pass(path)
            if counted != lines:
                raise BenchFailure(f"read {counted:,} lines of {path.name}, expected {lines:,}")
            floors.append(lines / seconds)
            seconds = replay_pass(path, lines)
            replays.append(lines / seconds)
            log(f"{mix}: floor {rate(floors[-1])}, replay {rate(replays[-1])} ({run + 1}/{runs})")
            if mix == "order-heavy":
                bare.append(lines / replay_pass(path, lines, without="inventory"))
        floor, replay = Spread(floors), Spread(replays)
        ratio = replay.best / floor.best
        ratios = [r / f for r, f in zip(replays, floors, strict=True)]
        finished = replay_subprocess(path)
        ctx.setdefault("floor_rates", {})[mix] = floor.best
        ctx["raw"].setdefault("floor_vs_replay", {})[mix] = {
            "file": path.name,
            "lines": lines,
            "floor_events_per_s": floor.raw(),
            "replay_events_per_s": replay.raw(),
            "ratio_of_bests": ratio,
            "ratio_per_run": ratios,
            "replay_without_inventory_events_per_s": bare,
            "replay_subprocess_wall_s": finished.wall_s,
            "replay_subprocess_peak_rss_bytes": finished.peak_rss,
        }
        target, done = FLOOR_TARGETS[mix], FLOOR_DONE[mix]
        status, distance = at_least(ratio, target, points)
        bench = f"1 floor vs replay, {mix} mix ({lines:,} events)"
        figures += [
            Figure(bench, "floor: read + orjson.loads", floor.describe(rate)),
            Figure(bench, "replay in-process", replay.describe(rate)),
            Figure(
                bench,
                "replay / floor (bests)",
                # A run's floor and replay are timed one after the other: on a noisy
                # host their ratio is steadier than that of bests from other moments.
                f"{pct(ratio)} (per run {', '.join(pct(r) for r in ratios)}; "
                f"their median {pct(Spread(ratios).median)})",
                f">= {pct(target)}",
                status,
                distance,
            ),
            Figure(
                bench,
                "replay / floor, 'done' bar",
                pct(ratio),
                f">= {pct(done)}",
                "met" if ratio >= done else "not met",
            ),
            *inventory_cost(bench, floor, replays, bare, ratio),
            Figure(
                bench,
                "replay peak RSS (subprocess)",
                f"{mib(finished.peak_rss)} (wall {finished.wall_s:.1f} s, "
                f"{rate(lines / finished.wall_s)} incl. start-up)",
            ),
        ]
    ctx["floor_rate"] = ctx["floor_rates"]["default"]
    return figures


def inventory_cost(
    bench: str, floor: Spread, replays: list[float], bare: list[float], ratio: float
) -> list[Figure]:
    """Replay / floor without the inventory health family, and how much of that
    ratio the family takes (issue 16: at most a tenth): of the bests, and per run
    (each run's replays with and without it timed one after the other)."""
    if not bare:
        return []
    without = Spread(bare).best / floor.best
    drop = 1 - ratio / without
    paired = Spread([1 - full / lean for full, lean in zip(replays, bare, strict=True)])
    status, distance = at_most(drop, INVENTORY_DROP, pct)
    return [
        Figure(bench, "replay / floor without inventory health (bests)", pct(without)),
        Figure(
            bench,
            "inventory health's drop of replay / floor",
            f"{pct(drop)} ({pct(without)} -> {pct(ratio)}); per run: median {pct(paired.median)}",
            f"<= {pct(INVENTORY_DROP)}",
            status,
            distance,
        ),
    ]


# What the floor and a replay execute, for counting their instructions (run from the
# repository root, as `make bench` is).
FLOOR_CODE = """
import sys
from pathlib import Path
from tests.bench.replay_bench import floor_pass
floor_pass(Path(sys.argv[1]))
"""
REPLAY_CODE = """
import sys
from flows.cli import tune_gc
from flows.replay import replay
from flows.settings import Settings
tune_gc()
replay(Settings(), sys.argv[1])
"""


def instructions(code: str, path: Path) -> int:
    """CPU instructions `python -c code path` executes, counted by valgrind's callgrind."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    result = subprocess.run(
        [*command, sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    counted = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or counted is None:
        raise BenchFailure(f"valgrind on {path.name} failed: {result.stderr[-2000:]}")
    return int(counted.group(1))


def bench_instructions(ctx: dict[str, Any]) -> list[Figure]:
    """1b. Floor vs replay in instructions per event, per mix: a count, the same on
    every run (wall-clock times on a shared machine vary by a third between runs)."""
    bench = "1b instructions per event"
    if shutil.which("valgrind") is None:
        return [Figure(bench, "floor and replay", "not measured: valgrind is not installed")]
    files = {"default": data.simulated(6), "order-heavy": data.order_heavy(6)}
    runs = []
    for path in files.values():
        first = path.with_name(path.name + ".first")
        with path.open("rb") as handle:
            first.write_bytes(handle.readline())
        runs += [(code, file) for code in (FLOOR_CODE, REPLAY_CODE) for file in (path, first)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # valgrind runs one thread
        counts = list(pool.map(lambda run: instructions(*run), runs))
    figures = []
    for index, (mix, path) in enumerate(files.items()):
        lines = data.line_count(path)
        floor, floor_start, replay, replay_start = counts[4 * index : 4 * index + 4]
        # Minus a one-line run: start-up and imports are not per event.
        per_floor = (floor - floor_start) / (lines - 1)
        per_replay = (replay - replay_start) / (lines - 1)
        ctx["raw"].setdefault("instructions", {})[mix] = {
            "file": path.name,
            "lines": lines,
            "floor_per_event": per_floor,
            "replay_per_event": per_replay,
        }
        log(f"{mix}: instructions per event: floor {per_floor:,.0f}, replay {per_replay:,.0f}")
        figure = f"{mix} mix, {lines:,} events, callgrind"
        figures += [
            Figure(bench, f"floor ({figure})", f"{per_floor:,.0f}"),
            Figure(bench, f"replay ({figure})", f"{per_replay:,.0f}"),
            Figure(
                bench,
                f"floor / replay instructions, {mix} mix",
                f"{pct(per_floor / per_replay)} (throughput ratios come out lower: the "
                "replay waits on memory far more than the floor)",
            ),
        ]
    return figures


def floor_passes(path: Path, runs: int) -> float:
    """Best floor rate of `runs` passes (for benchmarks run without bench_floor)."""
    best = 0.0
    for _ in range(runs):
        lines, seconds = floor_pass(path)
        best = max(best, lines / seconds)
    return best


def bench_state(ctx: dict[str, Any]) -> list[Figure]:
    """4. Peak RSS holding open orders / receipts awaiting stow / inventory items with
    28 days of history, minus a stateless baseline of as many events."""
    orders, receipts = (200_000, 20_000) if ctx["quick"] else (1_000_000, 100_000)
    items = 20_000 if ctx["quick"] else 100_000
    figures, raw = [], {}
    bench = "4 state size"
    for kind, count, make, target in (
        ("open order", orders, data.open_orders, OPEN_ORDER_TARGET),
        ("receipt awaiting stow", receipts, data.open_receipts, None),
        ("tracked item (28 days of orders, 3 lots)", items, data.tracked_items, ITEM_TARGET),
    ):
        stateful = make(count)
        baseline = data.page_views(data.line_count(stateful))
        peaks: dict[str, list[int]] = {"stateful": [], "baseline": []}
        for _ in range(2):  # interleaved, the lower peak of each counts
            peaks["baseline"].append(replay_subprocess(baseline).peak_rss)
            peaks["stateful"].append(replay_subprocess(stateful).peak_rss)
        with_state, without = min(peaks["stateful"]), min(peaks["baseline"])
        per_entry = (with_state - without) / count
        log(f"{kind}: {mib(with_state)} vs baseline {mib(without)}: {per_entry:,.0f} B each")
        raw[kind] = {
            "entries": count,
            "peak_rss_bytes": peaks["stateful"],
            "baseline_peak_rss_bytes": peaks["baseline"],
            "bytes_per_entry": per_entry,
        }
        shown = f"{per_entry:,.0f} B ({count:,}: {mib(with_state)} vs baseline {mib(without)})"
        if target is None:
            figures.append(Figure(bench, f"bytes per {kind}", shown))
        else:
            status, distance = at_most(per_entry, target, nbytes)
            limit = f"<= {target:,} B"
            figures.append(Figure(bench, f"bytes per {kind}", shown, limit, status, distance))
    ctx["raw"]["state_size"] = raw
    return figures


def bench_scrape(ctx: dict[str, Any]) -> list[Figure]:
    """5. Render cost of a board with 1,000 values of every capped label."""
    from flows.exposition import render
    from flows.replay import replay
    from flows.settings import Settings

    values = 1000
    path = data.label_cap(values)
    board = replay(Settings(max_label_values=values), str(path))
    totals = board.totals()
    seen = board_events_seen(totals)
    if seen != data.line_count(path):
        raise BenchFailure(f"label-cap replay counted {seen} events")
    overflow = sum(totals.get("cockpit_label_overflow_total", {}).values())
    distinct = {
        "fc": len(totals["cockpit_units_ordered_total"]),
        "region": len(totals["cockpit_late_deliveries_total"]),
        "page": len(totals["cockpit_page_load_seconds"]),
        "widget": len(totals["cockpit_recommendations_shown_total"]),
    }
    if overflow or any(count != values for count in distinct.values()):
        raise BenchFailure(f"label-cap board: {distinct}, {overflow} folded uses")
    timings, text = [], b""
    for _ in range(5):
        gc.collect()
        started = time.perf_counter()
        text = render(board)
        timings.append(time.perf_counter() - started)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    families = len(re.findall(rb"^# TYPE ", text, re.MULTILINE))
    best = Spread(timings, higher_is_better=False)
    scrapes = Spread(kept_alive(board, ("/metrics",), 5), higher_is_better=False)
    polls = Spread(kept_alive(board, PAGE_POLL, 50), higher_is_better=False)
    ctx["raw"]["scrape"] = {
        "label_values": distinct,
        "render_seconds": best.raw(),
        "scrape_seconds": scrapes.raw(),
        "page_poll_seconds": polls.raw(),
        "exposition_bytes": len(text),
        "series_lines": series,
        "families": families,
    }
    bench = "5 scrape at the label cap"
    return [
        Figure(bench, "render(board), 1,000 values per label", best.describe(ms)),
        Figure(
            bench,
            "exposition size",
            f"{len(text) / KIB:,.0f} KiB, {series:,} series lines in {families} families",
        ),
        Figure(bench, "render cost per series", f"{best.best / series * 1e6:.1f} us"),
        Figure(bench, "GET /metrics over one kept-alive connection", scrapes.describe(ms)),
        Figure(
            bench,
            "the page's poll (summary, alerts, items) over one kept-alive connection",
            polls.describe(ms),
        ),
    ]


# The three requests the wall display sends every 2 s (flows/web/static/cockpit.js).
PAGE_POLL = (
    "/api/v1/summary",
    "/api/v1/alerts?limit=8",
    "/api/v1/items?state=out_of_stock&state=at_risk&limit=8",
)


def kept_alive(board: Any, paths: tuple[str, ...], rounds: int) -> list[float]:
    """Seconds of each round of `paths`, requested in turn over one connection kept
    alive to the board served in this process, gzip accepted (as a display's
    browser or Prometheus does)."""
    from flows.web.server import serve
    from tests.kafka_broker import free_port

    port = free_port()
    server = serve(board, "127.0.0.1", port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        seconds, sockets = [], set()
        for _ in range(rounds):
            started = time.perf_counter()
            for path in paths:
                conn.request("GET", path, headers={"Accept-Encoding": "gzip"})
                response = conn.getresponse()
                response.read()
                sockets.add(id(conn.sock))
                if response.status != 200:
                    raise BenchFailure(f"GET {path}: {response.status}")
            seconds.append(time.perf_counter() - started)
        if len(sockets) != 1:
            raise BenchFailure(f"{len(sockets)} connections for one kept alive")
        return seconds
    finally:
        conn.close()
        server.shutdown()


SHARES = (0.10, 0.25, 0.50, 0.75, 1.00)
SAMPLE_EVERY = 0.25  # seconds: the quick long run takes ~5 s


def nearest(series: list[tuple[float, Any]], moment: float) -> Any:
    """The value of a (seconds, value) series sampled closest to `moment`."""
    return min(series, key=lambda sample: abs(sample[0] - moment))[1]


def bench_longrun(ctx: dict[str, Any]) -> list[Figure]:
    """6. RSS and state entries over a long replay with --retention 2d, sampled every
    SAMPLE_EVERY seconds and compared by the share of the input read (the quick run
    reads 3M events in a few seconds, a second of them start-up)."""
    long = ctx["long"] or not ctx["quick"]
    hours = 720 if long else 216
    path = data.simulated(hours)
    lines = data.line_count(path)
    progress: list[tuple[float, int]] = [(0.0, 0)]  # (seconds, events read)
    entries: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()

    def on_line(line: str) -> None:
        if line.startswith(ENTRIES_MARK):
            now = time.monotonic() - started
            sample = orjson.loads(line.split(" ", 1)[1])
            progress.append((now, sample["events"]))
            entries.append((now, sample["entries"]))

    log(f"long replay of {lines:,} events with --retention 2d")
    metrics = path.with_name(path.name + ".prom")
    finished = run_to_completion(
        opscockpit_measured(
            "replay",
            str(path),
            "--retention",
            "2d",
            "--metrics-file",
            str(metrics),
            entries_every=SAMPLE_EVERY,
        ),
        sample_every=SAMPLE_EVERY,
        on_stderr_line=on_line,
    )
    if finished.returncode != 0:
        raise BenchFailure(f"long replay failed: {finished.stderr[-2000:]}")
    text = metrics.read_text()
    metrics.unlink()
    seen = events_seen(text)
    if seen != lines:
        raise BenchFailure(f"long replay counted {seen:,} events for {lines:,} lines")
    expired = {
        kind: float(value)
        for kind, value in re.findall(
            r'^cockpit_state_expired_total\{kind="(\w+)"\} (\S+)$', text, re.MULTILINE
        )
    }
    samples = finished.samples
    if not samples or not entries:
        raise BenchFailure("no RSS or state samples from the long replay")
    # Each sample at the share of the input read by then (start-up reads none).
    read = [(nearest(progress, t) / lines, value) for t, value in samples]
    held_read = [(nearest(progress, t) / lines, values) for t, values in entries]
    rss = {share: nearest(read, share) for share in SHARES}
    held = {share: nearest(held_read, share) for share in SHARES}
    peak = max(value for _t, value in samples)
    early = [value for share, value in read if 0.10 <= share <= 0.5]
    late = [value for share, value in read if share > 0.5]
    if not early or not late:
        raise BenchFailure(f"too few samples of the long replay: {len(samples)}")
    first_half, second_half = max(early), max(late)
    growth = second_half / first_half - 1
    totals = [(share, sum(values.values())) for share, values in held_read]
    entries_growth = (
        max(total for share, total in totals if share > 0.5)
        / max(total for share, total in totals if 0.10 <= share <= 0.5)
        - 1
    )
    ctx["raw"]["long_run"] = {
        "file": path.name,
        "lines": lines,
        "wall_s": finished.wall_s,
        "peak_rss_bytes_vmhwm": finished.peak_rss,
        "rss_samples": samples,
        "state_entries_samples": entries,
        "progress": progress,
        "rss_at_share": {str(share): value for share, value in rss.items()},
        "rss_growth_second_half_vs_first_half": growth,
        "entries_growth_second_half_vs_first_half": entries_growth,
        "expired": expired,
    }
    size = "10M" if long else "3M: --quick"
    bench = f"6 long run ({size}): {lines:,} events, --retention 2d"

    def held_text(values: dict[str, float]) -> str:
        return "/".join(f"{values.get(kind, 0) / 1000:,.0f}k" for kind in ("orders", "dedup_ids"))

    return [
        Figure(
            bench,
            "RSS at share of the input read",
            ", ".join(f"{int(share * 100)}%: {mib(rss[share])}" for share in SHARES),
        ),
        Figure(
            bench,
            "max RSS, 2nd half of the input vs 1st half (10-50%)",
            f"{pct(growth)}: {mib(min(late))}-{mib(second_half)} vs "
            f"{mib(min(early))}-{mib(first_half)} (min-max); "
            f"max sampled {mib(peak)}, VmHWM {mib(finished.peak_rss)}",
            f"flat: <= {pct(FLAT_TOLERANCE)}",
            "met" if growth <= FLAT_TOLERANCE else "not met",
        ),
        Figure(
            bench,
            "state entries, 2nd half vs 1st half",
            f"{pct(entries_growth)}; orders/dedup ids at "
            + ", ".join(f"{int(share * 100)}%: {held_text(held[share])}" for share in SHARES),
            f"flat: <= {pct(FLAT_TOLERANCE)}",
            "met" if entries_growth <= FLAT_TOLERANCE else "not met",
        ),
        Figure(
            bench,
            "replay throughput; expired by retention",
            f"{rate(lines / finished.wall_s)} ({finished.wall_s:.0f} s incl. start-up); "
            + (", ".join(f"{kind} {value:,.0f}" for kind, value in expired.items()) or "none"),
        ),
    ]
