"""`opscockpit replay` end to end, against the independent batch reference."""

from __future__ import annotations

import functools
import json
import random
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from flows import dataflow
from flows.kpis import ALL_FAMILIES
from flows.kpis.inventory import Inventory, ItemHealth
from flows.metrics import BY_NAME
from flows.replay import replay as replay_in_process
from flows.settings import Settings
from flows.simulator import Profile, write_lines
from flows.timeutil import RFC3339_PATTERN
from tests import reference_health
from tests.processes import opscockpit
from tests.reference import compare, expected_dead_letters, parse_exposition, run
from tests.scenario import Events, Run

# The §3.2-3.5 metrics and records the engine has (the reference has them all).
BUILT_HEALTH_METRICS = [m for m in reference_health.METRICS if m in BY_NAME]
BUILT_RECORD_KINDS = {
    "sku_health",
    "stockout",
    "demand_spike",
    "cancellation_ratio",
    "return_ratio",
    "click_through_ratio",
    "shift",
    "bottleneck",
}
STOCK = {"sell_through", "days_of_cover"}  # records of the core reference (tests/reference.py)


def replay(events: Path, *options: str) -> dict[str, Any]:
    """Replay a file with every output; return metrics, dead letters, alerts and KPIs."""
    root = events.parent
    result = opscockpit(
        "replay",
        str(events),
        "--metrics-file",
        str(root / "m.prom"),
        "--dlq",
        str(root / "dlq.jsonl"),
        "--alerts",
        str(root / "alerts.jsonl"),
        "--kpis",
        str(root / "kpis.jsonl"),
        *options,
    )
    assert result.returncode == 0
    return {
        "metrics": parse_exposition((root / "m.prom").read_text()),
        **{
            name: [json.loads(x) for x in (root / f"{name}.jsonl").read_text().splitlines()]
            for name in ("dlq", "alerts", "kpis")
        },
    }


@functools.cache
def replayed_day(events: Path, *options: str) -> dict[str, Any]:
    """`replay` of the simulated day, once per set of options (two tests read the
    default one)."""
    return replay(events, *options)


@pytest.fixture(scope="module")
def simulated_day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "day.jsonl"
    # A smaller network than the default so the slow reference stays quick, but a
    # whole day, with every fault the simulator knows.
    opscockpit("simulate", "--out", str(path), "--hours", "26", "--seed", "11", "--scale", "0.3")
    return path


@pytest.mark.parametrize(
    "options",
    [[], ["--lateness", "5m", "--window", "30m", "--max-label-values", "3"]],
    ids=["defaults", "other settings"],
)
def test_a_simulated_day_matches_the_reference_on_every_metric(simulated_day, options):
    got = replayed_day(simulated_day, *options)
    lines = simulated_day.read_bytes().splitlines()
    expected = (
        run(lines, lateness_s=300, window_s=1800, max_label_values=3) if options else run(lines)
    )
    assert compare(expected.metrics, got["metrics"]) == []
    settings = {"lateness": 300, "window": 1800, "max_label_values": 3} if options else {}
    health = reference_health.compute(lines, settings)
    built = {"metrics": BUILT_HEALTH_METRICS}
    assert reference_health.compare(health.samples, got["metrics"], **built) == []
    kinds = {"kinds": BUILT_RECORD_KINDS}
    assert reference_health.compare_records(health.records, got["kpis"], **kinds) == []
    assert reference_health.compare_records(health.alerts, got["alerts"], **kinds) == []
    assert reference_health.compare_records(expected.records, got["kpis"], kinds=STOCK) == []
    # The scenario is rich enough to mean something.
    for name in (
        "cockpit_ship_sla_breaches_total",
        "cockpit_late_deliveries_total",
        "cockpit_events_duplicate_total",
        "cockpit_events_late_total",
        "cockpit_events_rejected_total",
        "cockpit_dock_to_stock_seconds_count",
    ):
        assert sum(expected.metrics[name].values()) > 0, name
    for name in ("cockpit_orders_cancelled_total", "cockpit_recommendations_conversions_total"):
        assert sum(health.samples[name].values()) > 0, name
    for kind in STOCK:  # every window of the day has both, for several fcs
        records = [r for r in expected.records if r["kpi"] == kind]
        assert len({r["window_start"] for r in records}) >= 24, kind
        assert len({r["fc"] for r in records}) >= 3, kind
    alert_kinds = {"stockout", "demand_spike", "bottleneck"}
    assert {r["kpi"] for r in health.records} >= BUILT_RECORD_KINDS - alert_kinds
    assert {r["alert"] for r in got["alerts"]} >= {"bottleneck"}  # the simulated slow packing
    assert sum(health.samples["cockpit_pack_to_ship_seconds_count"].values()) > 0
    assert [(r["line"], r["reason"]) for r in got["dlq"]] == expected.dead_letters
    alerts = [(r["alert"], r["order_id"]) for r in got["alerts"] if "order_id" in r]
    assert len(alerts) == len(set(alerts))  # one per breached order and late delivery
    assert set(alerts) == expected.alerts


# Three fcs in other time zones, one with its own shifts (starts that are no window
# close); the others keep the default UTC calendar.
ZONES = {
    "FC-ATL1": {"time_zone": "Europe/Berlin"},
    "FC-DAL1": {"time_zone": "America/New_York"},
    "FC-RNO1": {"time_zone": "Asia/Kolkata", "shifts": {"day": "07:10", "swing": "15:45"}},
}
ZONES_TOML = """
[fc."FC-ATL1"]
time_zone = "Europe/Berlin"
[fc."FC-DAL1"]
time_zone = "America/New_York"
[fc."FC-RNO1"]
time_zone = "Asia/Kolkata"
[fc."FC-RNO1".shifts]
day = "07:10"
swing = "15:45"
"""
SHIFT_METRICS = [m for m in BUILT_HEALTH_METRICS if m.startswith("cockpit_shift_")]


def test_fcs_in_other_time_zones_match_the_reference(tmp_path):
    """Through `replay --config`, over Berlin's fall back (a 9-hour night)."""
    events = tmp_path / "autumn.jsonl"
    start = ("--start", "2026-10-24T12:00:00Z")
    opscockpit(
        "simulate", "--out", str(events), "--hours", "24", "--seed", "12", "--scale", "0.3", *start
    )
    config = tmp_path / "zones.toml"
    config.write_text(ZONES_TOML)
    got = replay(events, "--config", str(config))
    health = reference_health.compute(events.read_bytes().splitlines(), {"fc": ZONES})
    assert reference_health.compare(health.samples, got["metrics"], metrics=SHIFT_METRICS) == []
    shifts = {"kinds": {"shift"}}
    assert reference_health.compare_records(health.records, got["kpis"], **shifts) == []
    records = [r for r in got["kpis"] if r["kpi"] == "shift"]
    assert {r["hours"] for r in records if r["fc"] == "FC-ATL1" and r["shift"] == "night"} == {9}
    assert {r["shift"] for r in records if r["fc"] == "FC-RNO1"} == {"day", "swing"}


MIB = 1 << 20  # --max-event-bytes by default


def test_a_file_of_malformed_lines_finishes_and_dead_letters_every_one(tmp_path):
    rng = random.Random(5)
    good = orjson.dumps(
        {"event_id": "ok", "type": "cart.added", "ts": 0, "session_id": "s", "sku": "A", "qty": 1}
    )
    bad = [
        b"{",
        b"[]",
        b"null",
        b"\xff\xfe",
        good[:-1],
        b'{"type": "order.lost"}',
        b'{"event_id": 1, "type": "cart.added", "ts": 0}',
        good.replace(b'"ts":0', b'"ts":-5'),
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b"x" * 2_000_000,
        b"\x00",
        b"NaN",
        b"",
    ]
    lines = [rng.choice(bad) for _ in range(3000)]
    events = tmp_path / "bad.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    got = replay(events, "--quiet")
    assert len(got["dlq"]) == len(lines)
    assert [(r["line"], r["reason"]) for r in got["dlq"]] == expected_dead_letters(lines)
    for record, line in zip(got["dlq"], lines, strict=True):
        assert record["error"]
        # Whole, but for a line over --max-event-bytes (1 MiB): its start, and its size.
        kept = line if len(line) <= MIB else line[:MIB]
        assert record.get("payload_bytes", len(line)) == len(line)
        assert record.get("payload_truncated", False) is (kept != line)
        if record["payload_encoding"] == "utf-8":
            assert record["payload"].encode() == kept
    rejected = got["metrics"]["cockpit_events_rejected_total"]
    assert sum(rejected.values()) == len(lines)
    assert not any(got["metrics"].get("cockpit_events_total", {}).values())


# Per edge, in local times with an offset: placed, ship and delivery promises, a
# pick and a stow, the shipment and a last event that closes the window and day
# holding the first ones; and the time at that edge those records carry.
EDGE_OF_TIME = {
    "the last days": (
        ["9999-12-29T22:" + m + ":00" for m in ("10", "20", "50", "15", "40")]
        + ["9999-12-30T23:59:59.999999"],
        "+01:00",
        "9999-12-30T00:00:00Z",
    ),
    "the first days": (
        ["0001-01-02T01:" + m + ":00" for m in ("10", "20", "50", "15", "40")]
        + ["0001-01-03T02:59:00"],
        "+01:00",
        "0001-01-02T00:00:00Z",
    ),
}


@pytest.mark.parametrize("edge", EDGE_OF_TIME)
def test_times_at_the_ends_of_the_event_times_replay_into_rfc3339_records(tmp_path, edge):
    """Event times lie in [0001-01-02, 9999-12-31) UTC (README, Time): the windows,
    days and shift instances holding the first and last of them begin and end
    within years 0001-9999, which RFC 3339 writes (§5)."""
    clocks, offset, edge_time = EDGE_OF_TIME[edge]
    placed, ship_by, deliver_by, moved, shipped, last = (f"{c}{offset}" for c in clocks)
    e = Events()
    lines = [
        e.placed("o1", placed, ship_by, deliver_by),
        e.picked("o1", moved),
        e.stowed("r1", moved, 5),
        e.shipped("o1", shipped),
        e.cart(last),
    ]
    events = tmp_path / "edge.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    got = replay(events, "--quiet")
    assert got["dlq"] == []
    assert {r["kpi"] for r in got["kpis"]} >= {"sku_health", "sell_through", "shift"}
    times = {r[name] for r in got["kpis"] for name in ("window_start", "window_end")}
    assert edge_time in times
    assert all(re.fullmatch(RFC3339_PATTERN, t) for t in times), times
    assert [r["alert"] for r in got["alerts"]][:1] == ["ship_sla_breach"]


@pytest.mark.parametrize(
    "ts",
    [
        "9999-12-31T00:00:00Z",
        "9999-12-30T23:30:00-01:00",
        "9999-12-31T23:59:59.999999Z",
        "0001-01-01T23:59:59.999999Z",
        "0001-01-02T00:30:00+01:00",
        253402214400000,
    ],
)
def test_a_time_whose_day_rfc3339_cannot_write_is_dead_lettered(tmp_path, ts):
    """A valid RFC 3339 time, or epoch milliseconds, past the event times: a window
    or day holding it would begin or end beyond years 0001-9999."""
    e = Events()
    events = tmp_path / "beyond.jsonl"
    events.write_bytes(e.cart("2026-11-21T10:00:00Z") + b"\n" + e.cart(ts) + b"\n")
    got = replay(events, "--quiet")
    [dead] = got["dlq"]
    assert dead["reason"] == "invalid_event"
    assert "0001-01-02" in dead["error"] or "epoch milliseconds" in dead["error"], dead["error"]


# Every §3.2-3.5 setting away from its default, a default calendar of three shifts in
# Chicago, and two fcs with their own zone (one with its own shifts).
THREE_WEEKS_TOML = """
demand_days = 5
lead_time_days = 4
excess_days = 30
safety_days = 14
service_level = 0.9
spike_days = 3
spike_min_units = 4
spike_factor = 2.5
bottleneck_windows = 2
bottleneck_min = 10
conversion_minutes = 20
window = "2h"
time_zone = "America/Chicago"

[shifts]
day = "07:00"
evening = "15:30"
night = "23:00"

[fc."FC-ATL1"]
lead_time_days = 2.5
time_zone = "Europe/Berlin"

[fc."FC-RNO1"]
time_zone = "Asia/Kolkata"
[fc."FC-RNO1".shifts]
one = "06:45"
two = "18:15"
"""


def test_an_unseen_three_week_scenario_with_its_config_matches_the_reference(tmp_path):
    """Issues 16 and 17's bar: weeks of a small network (a seed no other test uses),
    replayed with its config, equal the references on every metric, the sku_health,
    shift, sell-through and cover records and every stockout, spike and bottleneck
    alert."""
    events, config = tmp_path / "weeks.jsonl", tmp_path / "weeks.toml"
    start = 1_795_132_800_000_000  # 2026-11-20T00:00:00Z
    profile = replace(Profile().scaled(0.015), skus=400)
    with events.open("wb") as handle:
        write_lines(handle, 20261202, start, start + 21 * 86_400 * 10**6, profile)
    config.write_text(THREE_WEEKS_TOML)
    got = replay(events, "--config", str(config))
    settings = {**tomllib.loads(THREE_WEEKS_TOML), "window": 7200}
    health = reference_health.compute(events.read_bytes().splitlines(), settings)
    built = {"metrics": BUILT_HEALTH_METRICS}
    assert reference_health.compare(health.samples, got["metrics"], **built) == []
    kinds = {"kinds": BUILT_RECORD_KINDS}
    assert reference_health.compare_records(health.records, got["kpis"], **kinds) == []
    core = run(events.read_bytes().splitlines(), window_s=7200)
    assert compare(core.metrics, got["metrics"]) == []
    assert reference_health.compare_records(core.records, got["kpis"], kinds=STOCK) == []
    assert reference_health.compare_records(health.alerts, got["alerts"], **kinds) == []
    made = {r.get("kpi") for r in got["kpis"]} | {r.get("alert") for r in got["alerts"]}
    assert made >= BUILT_RECORD_KINDS
    assert {r["shift"] for r in got["kpis"] if r["kpi"] == "shift"} == {
        "day",
        "evening",
        "night",
        "one",
        "two",
    }


def test_a_replay_without_a_family_writes_everything_else_the_same(simulated_day, tmp_path):
    """Families are independent: `make bench` measures what inventory health costs
    by leaving it out, so the rest must not change when it does."""
    written: dict[str, dict[str, Any]] = {}
    for name, families in {"all": ALL_FAMILIES, "bare": ALL_FAMILIES.without("inventory")}.items():
        out = tmp_path / name
        out.mkdir()
        files = {kind: out / f"{kind}.jsonl" for kind in ("dlq", "alerts", "kpis")}
        replay_in_process(
            Settings(), str(simulated_day), metrics_file=out / "m.prom", families=families, **files
        )
        written[name] = {
            "metrics": parse_exposition((out / "m.prom").read_text()),
            **{
                kind: [json.loads(x) for x in path.read_text().splitlines()]
                for kind, path in files.items()
            },
        }
    own = {m.name for m in (*Inventory.METRICS, *ItemHealth.METRICS)}
    assert own == set(written["all"]["metrics"]) - set(written["bare"]["metrics"])
    assert written["bare"]["metrics"] == {
        name: samples for name, samples in written["all"]["metrics"].items() if name not in own
    }
    own_records = {"sku_health", "stockout", "demand_spike"}
    for kind in ("dlq", "alerts", "kpis"):
        others = [
            r for r in written["all"][kind] if r.get("kpi", r.get("alert")) not in own_records
        ]
        assert written["bare"][kind] == others
    assert len(written["all"]["kpis"]) > len(written["bare"]["kpis"])
    assert {r["alert"] for r in written["all"]["alerts"]} >= {"stockout", "demand_spike"}


def test_without_a_taker_of_kpi_records_none_is_made_and_the_rest_stays(
    simulated_day, tmp_path, monkeypatch
):
    """A replay without --kpis tells the combine steps that nothing takes KPI
    records (`CombineContext.records`): they make none, and its metrics, alerts and
    dead letters are those of a replay with --kpis."""
    asked: list[bool] = []
    stage = dataflow.CombineStage
    monkeypatch.setattr(
        dataflow, "CombineStage", lambda *args: asked.append(args[-1]) or stage(*args)
    )
    written: dict[str, dict[str, Any]] = {}
    for name in ("taken", "untaken"):
        out = tmp_path / name
        out.mkdir()
        files = {kind: out / f"{kind}.jsonl" for kind in ("dlq", "alerts")}
        kpis = out / "kpis.jsonl" if name == "taken" else None
        replay_in_process(
            Settings(), str(simulated_day), metrics_file=out / "m.prom", kpis=kpis, **files
        )
        written[name] = {kind: path.read_bytes() for kind, path in files.items()}
        written[name]["metrics"] = (out / "m.prom").read_bytes()
    assert asked == [True, False]
    assert written["untaken"] == written["taken"]
    lines = simulated_day.read_bytes().splitlines(keepends=True)
    runs = {taken: Run(takes_records=taken) for taken in (True, False)}
    for scenario in runs.values():
        for start in range(0, len(lines), 1000):
            scenario.feed(*lines[start : start + 1000])
        scenario.finish()
    made = {r["kpi"] for r in runs[True].records("kpi")}
    assert made >= {"sku_health", "sell_through", "days_of_cover", "shift", "return_ratio"}
    assert runs[False].records("kpi") == []
    assert runs[False].records("alert") == runs[True].records("alert")
    assert runs[False].combine.ledger.series == runs[True].combine.ledger.series
