"""Snapshots survive an upgrade: the last release's restore into today's families
and go on as if never stopped; a version this build cannot read is refused in one
line; families added, removed or reordered since a snapshot restore cleanly."""

from __future__ import annotations

import gzip
import pickle
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest

from flows.dataflow import CombineLogic, ShardLogic, check_recovery, kept_windows, single
from flows.decode import decode_all
from flows.entities.orders import OrderBook
from flows.exposition import render
from flows.kpis import FAMILIES, inventory
from flows.kpis.conversions import Conversions
from flows.kpis.customer import Customer
from flows.kpis.deliveries import Deliveries
from flows.kpis.flow import Flow
from flows.kpis.inventory import Inventory
from flows.kpis.orders import Orders
from flows.kpis.receipts import Receipts
from flows.kpis.shifts import Shifts
from flows.kpis.sku_health import SkuHealth
from flows.kpis.stock import Stock
from flows.kpis.storefront import Storefront
from flows.kpis.upgrade import REASON_ADDED, upgrade
from flows.labels import LabelCap
from flows.runtime.outputs import Alert, DeadLetter, KpiRecord, Partials, records_of
from flows.runtime.snapshot import SnapshotError, dump_shard, load_shard
from flows.settings import HOUR, EngineConfig, Runtime, Settings
from flows.simulator import Profile, stream
from flows.sources import simulator_parts
from flows.timeutil import parse_time
from tests.builds import state
from tests.kafka_broker import free_port
from tests.processes import metrics_text, opscockpit, wait_for
from tests.reference import parse_exposition
from tests.test_properties import AS_DECIDED

RELEASE = Path(__file__).parent / "fixtures" / "release-3862025"
SPLIT, BATCH = 4000, 500  # as make_fixture.py fed that release
SETTINGS = Settings(recovery=True, retention=48 * 3600 * 10**6)
RECORD_KIND = {DeadLetter: "dlq", Alert: "alert", KpiRecord: "kpi", SkuHealth: "kpi"}


def feed(shard: ShardLogic, combine: CombineLogic, lines: list[bytes]) -> list[Any]:
    """Lines through both steps as the dataflow wires them; their records."""
    records = []
    for start in range(0, len(lines), BATCH):
        items, _ = decode_all(lines[start : start + BATCH])
        records += route(shard.on_batch([("events", "0", "input", items)])[0], combine)
    return records


def route(outputs: list[Any], combine: CombineLogic) -> list[Any]:
    partials = [output for output in outputs if type(output) is Partials]
    records = [output for output in outputs if type(output) is not Partials]
    combined = combine.on_batch(partials)[0] if partials else []
    return records + [written for output in combined for written in records_of(output)]


def as_decided(line: list[Any]) -> list[Any]:
    """A record of an earlier release as this one makes it: a per-order alert names
    the awaited step only when it is before its decided_ts (README, Semantics;
    those releases named one that had arrived early)."""
    kind, key, record = line
    for field in AS_DECIDED:
        happened = record.get(field) if kind == "alert" else None
        if happened is not None and parse_time(happened) >= parse_time(record["decided_ts"]):
            record = {**record, field: None}
    return [kind, key, record]


def as_lines(records: list[Any]) -> list[list[Any]]:
    return [
        orjson.loads(
            orjson.dumps([RECORD_KIND[type(r)], r.key, r.record], option=orjson.OPT_SORT_KEYS)
        )
        for r in records
    ]


def as_that_release(exposition: bytes, names: set[str] | None = None) -> dict[str, Any]:
    """The samples of the metrics that release had (`names`: those in its
    exposition), without the state size, which counts entries another way, and
    summed over the `reason` label where that release had none (nor a cap on it)."""
    samples = in_whole_us(parse_exposition(exposition.decode()))
    samples["cockpit_label_overflow_total"].pop((("label", "reason"),), None)
    return {
        name: without_reason(series) if name in REASON_ADDED else series
        for name, series in samples.items()
        if "state_entries" not in name and (names is None or name in names)
    }


def in_whole_us(samples: dict[str, Any]) -> dict[str, Any]:
    """Histogram sums to the µs: those releases added floats (`1499294.5780000002`),
    today's add whole µs (`1499294.578`)."""
    for name, series in samples.items():
        if name.endswith("_seconds_sum"):
            samples[name] = {key: round(value, 6) for key, value in series.items()}
    return samples


def without_reason(series: dict[Any, float]) -> dict[Any, float]:
    summed: dict[Any, float] = {}
    for labels, value in series.items():
        key = tuple(pair for pair in labels if pair[0] != "reason")
        summed[key] = summed.get(key, 0) + value
    return summed


def of_that_release(lines: list[list[Any]]) -> list[list[Any]]:
    """The records that release made: dead letters, per-order alerts and window
    ratios (families added since start their records at the upgrade)."""
    return [
        line
        for line in lines
        if line[0] == "dlq" or "order_id" in line[2] or line[2].get("kpi") in WINDOW_RATIOS
    ]


WINDOW_RATIOS = {"sell_through", "days_of_cover"}


def test_the_last_release_snapshot_restores_and_goes_on_as_if_never_stopped() -> None:
    """That release's snapshot after 4,000 lines, restored, then the other 2,000:
    the same exposition and records as that release, and as today's engine
    uninterrupted, for every KPI that release had."""
    lines = (RELEASE / "events.jsonl").read_bytes().splitlines()
    layout = single("input")
    runtime = Runtime(SETTINGS)
    shard = ShardLogic(runtime, layout, (RELEASE / "shards.snapshot").read_bytes())
    combine = CombineLogic(runtime, layout, (RELEASE / "windows.snapshot").read_bytes())
    restored = feed(shard, combine, lines[SPLIT:]) + route(shard.on_eof()[0], combine)

    whole_runtime = Runtime(SETTINGS)
    whole_shard = ShardLogic(whole_runtime, layout, None)
    whole_combine = CombineLogic(whole_runtime, layout, None)
    whole = feed(whole_shard, whole_combine, lines)
    whole += route(whole_shard.on_eof()[0], whole_combine)

    release = [orjson.loads(line) for line in (RELEASE / "expected-outputs.jsonl").open("rb")]
    restored_lines = of_that_release(as_lines(restored))
    assert of_that_release(as_lines(whole)) == release
    assert restored_lines == release[len(release) - len(restored_lines) :]
    assert len(restored_lines) > 50
    expected = as_that_release((RELEASE / "expected.prom").read_bytes())
    assert as_that_release(render(runtime.board), set(expected)) == expected
    assert as_that_release(render(whole_runtime.board), set(expected)) == expected


def test_the_upgraded_state_holds_what_that_release_held() -> None:
    data = (RELEASE / "shards.snapshot").read_bytes()
    saved = upgrade(data)
    legacy_timers = len(saved["body"]["runtime"]["timers"])
    shard = load_shard(data, EngineConfig(), LabelCap(1000), FAMILIES, upgrade)
    book = shard.family("orders_entity")
    assert saved["format"] == "opscockpit.shard" and len(book.orders) > 100
    assert len(book.orphans) > 0 and len(shard.family("receipts").receipts) > 0
    assert len(shard.timers) == legacy_timers
    awaiting = sum(shard.ledger.series["cockpit_orders_awaiting_shipment"].values())
    assert awaiting == sum(order.stage() != 0 for order in book.orders.values())
    # That release set an order's retention timer only once both its promises had
    # passed; today's sets it when the order is placed: each upgraded order gets one.
    # The flow family, new since, sets one per receipt awaiting stow (it knew no
    # pick or pack times, so no stage time waits).
    retained = load_shard(
        data, EngineConfig(retention=3600 * 10**6), LabelCap(1000), FAMILIES, upgrade
    )
    awaiting_stow = sum(r.awaiting for r in shard.family("receipts").receipts.values())
    assert len(retained.timers) == legacy_timers + len(book.orders) + awaiting_stow


FAMILIES_V1 = Path(__file__).parent / "fixtures" / "families-v1"
V1_SPLIT = 5003  # as its make_fixture.py fed that release
V1_SETTINGS = Settings(recovery=True, retention=6 * 3600 * 10**6, lateness=30 * 60 * 10**6)
HAND_WRITTEN = "ORD-FIXTURE-1"  # out of the order book at the snapshot, shipment not final


# Counters new since the fixtures' releases: they start at 0 where a snapshot restores.
NEW_COUNTERS = {"cockpit_recommendations_decided_total"}
# Inventory health's series of an fc, at 0 from its first close on since
# 2026-12-06 (version 1 wrote each once it moved).
ZERO_FROM_THE_FIRST_CLOSE = {
    metric.name
    for metric in (*inventory.STATE_GAUGES, inventory.BY_AGE, inventory.STOCKOUTS, inventory.SPIKES)
}


def without_state_size(exposition: bytes) -> dict[str, Any]:
    """Its samples but the state size (version 1 kept two timers a shipment),
    the series of inventory health at 0 and the counters new since."""
    samples = in_whole_us(parse_exposition(exposition.decode()))
    for name in NEW_COUNTERS:
        samples.pop(name, None)
    for name in ZERO_FROM_THE_FIRST_CLOSE & samples.keys():
        samples[name] = {key: value for key, value in samples[name].items() if value}
    return {
        name: series for name, series in samples.items() if series and "state_entries" not in name
    }


def without_quiet_windows(lines: list[list[Any]], expected: list[list[Any]]) -> list[list[Any]]:
    """`lines` without the sell-through records of windows `expected` has none of,
    each checked to be a window in which nothing was sold."""
    active = {line[2]["window_start"] for line in expected if line[2].get("kpi") == "sell_through"}
    quiet = [
        line[2].get("kpi") == "sell_through" and line[2]["window_start"] not in active
        for line in lines
    ]
    assert all(line[2]["numerator"] == 0 for line, q in zip(lines, quiet, strict=True) if q)
    return [line for line, q in zip(lines, quiet, strict=True) if not q]


def test_a_version_1_snapshot_restores_and_goes_on_as_if_never_stopped() -> None:
    """The families at state version 1 (commit 570a3df), snapshotted with
    shipments not final yet, one of an order already out of the book: restored,
    then the rest of the stream, every record and series as that release made
    them; and today's families uninterrupted make them too (records name the
    event that decided them: each part is fed in batches from its start)."""
    lines = gzip.decompress((FAMILIES_V1 / "events.jsonl.gz").read_bytes()).splitlines()
    expected_lines = gzip.decompress((FAMILIES_V1 / "expected-outputs.jsonl.gz").read_bytes())
    expected = [as_decided(orjson.loads(line)) for line in expected_lines.splitlines()]
    exposition = without_state_size((FAMILIES_V1 / "expected.prom").read_bytes())
    layout = single("input")
    runtime = Runtime(V1_SETTINGS)
    shard = ShardLogic(runtime, layout, (FAMILIES_V1 / "shards.snapshot").read_bytes())
    combine = CombineLogic(runtime, layout, (FAMILIES_V1 / "combine.snapshot").read_bytes())
    restored = as_lines(feed(shard, combine, lines[V1_SPLIT:]) + route(shard.on_eof()[0], combine))
    whole_runtime = Runtime(V1_SETTINGS)
    whole_shard = ShardLogic(whole_runtime, layout, None)
    whole_combine = CombineLogic(whole_runtime, layout, None)
    whole = feed(whole_shard, whole_combine, lines[:V1_SPLIT])  # batched as that release was
    at_split = parse_exposition(render(whole_runtime.board).decode())
    whole += feed(whole_shard, whole_combine, lines[V1_SPLIT:])
    whole += route(whole_shard.on_eof()[0], whole_combine)

    # Since 2026-12-06 an order that left state before W reached its shipment (here
    # one expired by the 6 h retention, 4 units) is in no return ratio's units
    # shipped, as it is in no `cockpit_orders_shipped_total`; version 1 counted it.
    gone_first = ["kpi", "return_ratio|FC-ATL1|2026-11-20T16:00:00Z"]
    (changed,) = [line for line in expected if line[:2] == gone_first]
    assert changed[2]["divisor"] == 19.0
    changed[2].update(divisor=15.0, value=2 / 15)
    # Since 2026-12-08 a window with no order or stock move anywhere has sell-through
    # records too (0 of each fc's stock sold); version 1 made none.
    whole_lines = as_lines(whole)
    assert without_quiet_windows(whole_lines, expected) == expected
    assert len(whole_lines) > len(expected)
    restored = without_quiet_windows(restored, expected)
    assert restored == expected[len(expected) - len(restored) :] and len(restored) > 150
    assert without_state_size(render(runtime.board)) == exposition
    assert without_state_size(render(whole_runtime.board)) == exposition
    # A counter new since counts from the restore on: what the whole run counted after.
    now = parse_exposition(render(runtime.board).decode())
    whole_now = parse_exposition(render(whole_runtime.board).decode())
    for name in NEW_COUNTERS:
        after = {k: v - at_split[name].get(k, 0) for k, v in whole_now[name].items()}
        assert now[name] == {k: v for k, v in after.items() if v} and now[name], name


def test_a_version_1_snapshot_upgrades_its_shipment_timers_to_the_entitys() -> None:
    data = (FAMILIES_V1 / "shards.snapshot").read_bytes()
    before = pickle.loads(pickle.loads(data)["body"])
    slots = {name: index for index, name in enumerate(before["family_order"])}
    watermark = before["runtime"]["watermark"]

    def shipment_timers(timers: list[Any], family: str, tag: int) -> dict[str, int]:
        return {k: when for when, slot, k, _ in timers if slot == slots[family] << 4 | tag}

    old = before["runtime"]["timers"]
    theirs = shipment_timers(old, "customer", 1)
    assert shipment_timers(old, "orders", 1) == theirs and HAND_WRITTEN in theirs
    shard = load_shard(data, EngineConfig(), LabelCap(1000), FAMILIES, upgrade)
    book = shard.family("orders_entity")
    timers = [(t.when, t.slot, t.key, t.ref) for t in shard.timers.export()]
    # At version 3 they wait for W to pass the shipment (a tie at its ts may come).
    assert shipment_timers(timers, "orders_entity", 2) == {k: w + 1 for k, w in theirs.items()}
    assert shipment_timers(timers, "orders", 1) == shipment_timers(timers, "customer", 1) == {}
    assert HAND_WRITTEN not in book.orders and len(theirs) == 8
    for order in book.orders.values():
        assert order.final == (order.shipped <= watermark)
    assert sum(order.final for order in book.orders.values()) > 300
    assert len(shard.timers) == len(old) - len(theirs)
    header = upgrade(data)
    assert {name: header["versions"][name] for name in ("orders_entity", "orders", "customer")} == {
        "orders_entity": 3,
        "orders": 2,
        "customer": 3,
    }


def restored_series(data: bytes) -> dict[str, Any]:
    shard = load_shard(data, EngineConfig(), LabelCap(1000), FAMILIES, upgrade)
    return shard.ledger.series  # type: ignore[no-any-return]


def recovery_copy(fixture: Path, tmp_path: Path) -> Path:
    """A fixture's recovery directory, copied, its gzipped files unpacked."""
    directory = tmp_path / "recovery"
    shutil.copytree(fixture / "recovery", directory)
    for packed in directory.glob("*.gz"):
        packed.with_suffix("").write_bytes(gzip.decompress(packed.read_bytes()))
        packed.unlink()
    return directory


@pytest.mark.parametrize("fixture", [RELEASE, FAMILIES_V1], ids=["3862025", "families-v1"])
def test_an_earlier_release_recovery_directory_resumes_with_its_counters(
    fixture: Path, tmp_path: Path
) -> None:
    """A recovery directory `opscockpit run` of an earlier release wrote (the one
    before families, and the families at state version 1): today's `opscockpit
    run` resumes from it, counters where the snapshot left them. Without history to
    replay (`--backfill 0s`; the resumed simulation keeps its own start), a run that
    ignored the directory would count no more than a few live orders by then."""
    directory = recovery_copy(fixture, tmp_path)
    with sqlite3.connect(directory / "part-0.sqlite3") as db:
        (blob,) = db.execute(
            "SELECT ser_change FROM snaps WHERE step_id = 'opscockpit.shards' "
            "ORDER BY snap_epoch DESC LIMIT 1"
        ).fetchone()
    snapshot_events = restored_series(pickle.loads(blob))["cockpit_events_total"]
    assert sum(snapshot_events.values()) > 10_000
    port = free_port()
    command = [
        *(sys.executable, "-m", "flows", "run", "--recovery-dir", str(directory)),
        *("--backfill", "0s", "--scale", "0.05", "--seed", "5"),
        *("--metrics-port", str(port), "--snapshot-interval", "1s"),
    ]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        text = wait_for(lambda: scrape(port), 60, "a scrape of the resumed run")
        events = parse_exposition(text)["cockpit_events_total"]
        for labels, count in snapshot_events.items():
            assert events[(("type", labels),)] >= count, labels
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def scrape(port: int) -> str | None:
    """/metrics once served and ready (503 before), else None."""
    try:
        return metrics_text(port)
    except OSError:
        return None


def tampered(directory: Path, version: int) -> None:
    """The shard snapshots of a recovery directory, claiming another runtime version."""
    with sqlite3.connect(directory / "part-0.sqlite3") as db:
        data = pickle.dumps({"format": "opscockpit.shard", "version": version, "versions": {}})
        db.execute(
            "UPDATE snaps SET ser_change = ? WHERE step_id = 'opscockpit.shards'",
            (pickle.dumps(data),),
        )


def test_a_recovery_directory_of_other_output_topics_is_refused_in_one_line(tmp_path) -> None:
    """bytewax panics on a recovered output part the new dataflow does not have: a
    restart with another --alerts-topic stopped with ~90 lines of traceback."""
    directory = tmp_path / "recovery"
    shutil.copytree(RELEASE / "recovery", directory)
    with closing(sqlite3.connect(directory / "part-0.sqlite3")) as db, db:
        db.execute(
            "INSERT INTO snaps (step_id, state_key, snap_epoch) "
            "VALUES ('opscockpit.alerts_out', 'old.alerts', 1)"
        )
    check_recovery(directory, HOUR, {"opscockpit.alerts_out": ["old.alerts"]})
    with pytest.raises(SnapshotError) as refused:
        check_recovery(directory, HOUR, {"opscockpit.alerts_out": ["cockpit.alerts"]})
    assert str(refused.value) == (
        "it wrote alerts to old.alerts, and this run writes them to cockpit.alerts: give the "
        "same output options, or another --recovery-dir"
    )


def refusal(*args: str) -> str:
    """What `run ARGS` says as it refuses to start (status 1)."""
    result = opscockpit("run", *args, check=False, timeout=60)
    assert result.returncode == 1
    return result.stderr.decode()


def test_a_recovery_directory_of_other_input_partitions_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    """An earlier release's `run --workers 2` read the simulator as one partition; this
    one reads it as a partition per worker, and bytewax panicked on the part it no
    longer has. (The release's directory, of one worker, stands in for it.)"""
    directory = tmp_path / "recovery"
    shutil.copytree(RELEASE / "recovery", directory)
    check_recovery(directory, HOUR, {"opscockpit.input": simulator_parts("simulator", 1)})
    (directory / "opscockpit-workers").write_text("2\n")
    assert refusal("--workers", "2", "--recovery-dir", str(directory)) == (
        f"opscockpit: error: cannot resume from {directory}: it read simulator, and this run "
        "reads simulator:0, simulator:1: resume with the input it read, or start from "
        "another --recovery-dir\n"
    )


def test_a_refusal_names_every_input_partition_this_run_does_not_read(tmp_path: Path) -> None:
    """It named one of them (`it read simulator:0`) as if that were all it read."""
    directory = tmp_path / "recovery"
    shutil.copytree(RELEASE / "recovery", directory)
    with closing(sqlite3.connect(directory / "part-0.sqlite3")) as db, db:
        for part in ("simulator:1", "simulator:0"):
            db.execute(
                "INSERT INTO snaps (step_id, state_key, snap_epoch) "
                f"VALUES ('opscockpit.input', '{part}', 1)"
            )
    with pytest.raises(SnapshotError) as refused:
        check_recovery(directory, HOUR, {"opscockpit.input": ["simulator"]})
    assert str(refused.value).startswith(
        "it read simulator:0, simulator:1, and this run reads simulator: "
    )


def test_a_restart_keeps_the_window_stage_where_its_recovery_directory_holds_it(
    tmp_path: Path,
) -> None:
    """A cluster places the window stage on worker 0 by the key it gives it; state an
    earlier release kept under `all`, wherever that landed, stays there."""
    assert kept_windows(None) is None
    assert kept_windows(tmp_path) is None
    directory = tmp_path / "recovery"
    shutil.copytree(RELEASE / "recovery", directory)
    assert kept_windows(directory) == "all"
    with closing(sqlite3.connect(directory / "part-0.sqlite3")) as db, db:
        db.execute("UPDATE snaps SET state_key = 'all~7' WHERE step_id = 'opscockpit.windows'")
    assert kept_windows(directory) == "all~7"


def test_a_recovery_directory_at_another_version_is_refused_in_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    shutil.copytree(RELEASE / "recovery", directory)
    tampered(directory, 99)
    with pytest.raises(SnapshotError, match="version 99, and this opscockpit reads version 2"):
        check_recovery(directory, HOUR)
    result = subprocess.run(
        [sys.executable, "-m", "flows", "run", "--recovery-dir", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert re.match(
        rf"opscockpit: error: cannot resume from {re.escape(str(directory))}: the recovery "
        "state of the runtime 'opscockpit.shard' is at version 99, and this opscockpit "
        "reads version 2",
        result.stderr,
    )


def with_snapshots(directory: Path, shard: bytes, combine: bytes) -> None:
    """A recovery directory's snapshots replaced, as bytewax keeps them."""
    with closing(sqlite3.connect(directory / "part-0.sqlite3")) as db, db:
        for step, data in (("shards", shard), ("windows", combine)):
            db.execute(
                "UPDATE snaps SET ser_change = ? WHERE step_id = ?",
                (pickle.dumps(data), f"opscockpit.{step}"),
            )


def files_of(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


def test_a_recovery_directory_of_another_window_is_refused_in_one_line(tmp_path: Path) -> None:
    """Windows, closes and days are on the grid of --window: state kept on another
    one restored into misaligned windows and never closed a day again."""
    directory = tmp_path / "recovery"
    shutil.copytree(RELEASE / "recovery", directory)
    check_recovery(directory, 2 * HOUR)  # that release recorded no window: taken as this run's
    combine = CombineLogic(Runtime(SETTINGS), single("input"), None).snapshot()
    assert combine is not None
    with_snapshots(directory, dump_shard(shard_of(FAMILIES)), combine)
    check_recovery(directory, HOUR)
    with pytest.raises(SnapshotError) as refused:
        check_recovery(directory, HOUR // 2)
    assert str(refused.value) == (
        "its windows are 1h long, and this run's --window is 30m: run with --window 1h, "
        "or start from an empty --recovery-dir"
    )
    for window in (["--window", "2h"], ["--window", "90m", "--processes", "2"]):
        (directory / "opscockpit-workers").write_text(f"{window.count('--processes') + 1}\n")
        files = files_of(directory)
        assert refusal("--recovery-dir", str(directory), *window) == (
            f"opscockpit: error: cannot resume from {directory}: its windows are 1h long, and "
            f"this run's --window is {window[1]}: run with --window 1h, or start from an "
            "empty --recovery-dir\n"
        )
        assert files_of(directory) == files, "nothing changed"


def test_a_snapshot_on_another_window_is_refused_by_each_step() -> None:
    layout, settings = single("input"), SETTINGS.with_(window=2 * HOUR)
    with pytest.raises(SnapshotError, match="its windows are 1h long"):
        ShardLogic(Runtime(settings), layout, dump_shard(shard_of(FAMILIES)))
    combine = CombineLogic(Runtime(SETTINGS), layout, None).snapshot()
    with pytest.raises(SnapshotError, match="this run's --window is 2h"):
        CombineLogic(Runtime(settings), layout, combine)


def test_a_family_at_another_version_is_refused_naming_it() -> None:
    run_shard = shard_of(FAMILIES)
    header = pickle.loads(dump_shard(run_shard))
    header["versions"]["deliveries"] = 7
    with pytest.raises(SnapshotError, match="part 'deliveries' is at version 7, and this"):
        load_shard(pickle.dumps(header), EngineConfig(), LabelCap(1000), FAMILIES, upgrade)


START = 1_795_132_800_000_000  # 2026-11-20T00:00:00Z
CONFIG = EngineConfig(retention=6 * 3600 * 10**6)


def steps(count: int, seed: int = 4) -> list[list[Any]]:
    profile = Profile(orders_per_hour=40, sessions_per_hour=10, receipts_per_hour=4, skus=50)
    lines = [payload for _a, _k, payload in islice(stream(seed, START, profile), count)]
    return [decode_all(lines[i : i + 400])[0] for i in range(0, len(lines), 400)]


def shard_of(families: tuple[Any, ...], batches: list[list[Any]] | None = None) -> Any:
    from flows.runtime.core import Shard

    shard = Shard("0", CONFIG, LabelCap(1000), families)
    for items in batches or []:
        shard.process("input", items)
    return shard


REORDERED = (
    Conversions,
    Storefront,
    Shifts,
    Stock,
    Inventory,
    Customer,
    Flow,
    Receipts,
    Deliveries,
    OrderBook,
    Orders,
)


def test_the_reordered_families_are_every_family() -> None:
    assert sorted(f.__name__ for f in REORDERED) == sorted(f.__name__ for f in FAMILIES)


@pytest.mark.parametrize(
    ("before", "after"),
    [(FAMILIES, REORDERED), (REORDERED, FAMILIES)],
    ids=["reordered", "back"],
)
def test_families_in_another_order_restore_their_timers_and_order_flags(before, after) -> None:
    """Timers name their family by its place, and orders keep each watcher's
    flags at an offset: both move to where the restoring build keeps them."""
    batches = steps(6000)
    first, rest = batches[:8], batches[8:]
    restored = load_shard(
        dump_shard(shard_of(before, first)), CONFIG, LabelCap(1000), after, upgrade
    )
    for items in rest:
        restored.process("input", items)
    restored.finish()
    whole = shard_of(after, batches)
    whole.finish()
    assert state(restored) == state(whole)


def test_a_family_new_since_the_snapshot_starts_empty_and_a_gone_one_is_dropped() -> None:
    without_storefront = tuple(f for f in FAMILIES if f is not Storefront)
    batches = steps(3000)
    saved = dump_shard(shard_of(without_storefront, batches[:4]))
    restored = load_shard(saved, CONFIG, LabelCap(1000), FAMILIES, upgrade)
    assert restored.ledger.series["cockpit_page_load_seconds"] == {}
    for items in batches[4:]:
        restored.process("input", items)
    assert restored.ledger.series["cockpit_page_load_seconds"]
    # Every other family went on from its restored state: as if never stopped.
    whole = shard_of(FAMILIES, batches)
    others = {name for name in whole.ledger.series} - {m.name for m in Storefront.METRICS}
    assert {n: restored.ledger.series[n] for n in others} == {
        n: whole.ledger.series[n] for n in others
    }
    back = load_shard(dump_shard(restored), CONFIG, LabelCap(1000), without_storefront, upgrade)
    assert "cockpit_page_load_seconds" not in back.ledger.series
    assert state(back)["families"] == {
        name: entry
        for name, entry in state(restored)["families"].items()
        if name != Storefront.NAME
    }
