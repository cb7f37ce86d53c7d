"""Both builds, compiled and interpreted, leave a shard in the same state with the
same outputs after every step: the same source (`flows.runtime`, `flows.entities`,
`flows.kpis`) compiled by Cython or run by Python."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import islice
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.build import compiled_modules, is_compiled
from flows.decode import STRUCTS, Line, decode_all
from flows.kpis.sku_health import SkuHealth, SkuHealthDay
from flows.runtime.outputs import Alert, DeadLetter, KpiRecord, KpiRecords, Partials, records_of
from flows.settings import EngineConfig
from flows.simulator import Profile, stream
from flows.timeutil import US_PER_SECOND
from tests.builds import Interpreted, Step, interpreted, run_steps

START = 1_795_132_800_000_000  # 2026-11-20T00:00:00Z
HOUR = 3600 * US_PER_SECOND
# Every fault of the simulator, more often than by default, in a sparse network:
# a few thousand events span a day, so deadlines, retention and id expiry come due.
FAULTY = replace(
    Profile(),
    skus=40,
    orders_per_hour=15,
    receipts_per_hour=2,
    sessions_per_hour=4,
    duplicate_share=0.05,
    disorder_share=0.1,
    late_share=0.02,
    malformed_share=0.01,
)
# Short horizons, so ids expire, entities are retained and dropped, and labels overflow.
CONFIG = EngineConfig(
    lateness=30 * US_PER_SECOND,
    dedup_horizon=2 * HOUR,
    orphan_horizon=HOUR,
    retention=3 * HOUR,
    sources=("a", "b"),
)
WORKER: list[Interpreted] = []


@pytest.fixture(scope="module", autouse=True)
def worker() -> Iterator[None]:
    with interpreted() as child:
        WORKER.append(child)
        yield
        WORKER.clear()


def test_this_process_runs_the_compiled_build() -> None:
    """Else the comparison compares the interpreted build with itself."""
    import sys

    loaded = [sys.modules[name] for name in compiled_modules() if name in sys.modules]
    if any(not is_compiled(module) for module in loaded):
        pytest.skip("the compiled build was not built here (no C compiler at install)")
    assert loaded


def payloads(seed: int, count: int) -> list[bytes]:
    return [payload for _arrival, _key, payload in islice(stream(seed, START, FAULTY), count)]


def assert_same_runs(
    steps: list[Step], max_labels: int = 4, config: EngineConfig = CONFIG
) -> dict[str, Any]:
    """Both builds after every step; the final state (one family's series merged)."""
    compiled = run_steps(steps, config, max_labels)
    other = WORKER[0].run_steps(steps, config, max_labels)
    assert len(compiled) == len(other)
    for index, ((state, outputs), (other_state, other_outputs)) in enumerate(
        zip(compiled, other, strict=True)
    ):
        where = f"after step {index} of {len(steps)}"
        assert outputs == other_outputs, where
        assert written(outputs) == written(other_outputs), where
        assert state == other_state, where
    final = compiled[-1][0]
    series: dict[str, Any] = {}
    for family in final["families"].values():
        series.update(family["series"])
    return {**final, "series": series}


def written(outputs: list[Any]) -> list[bytes]:
    """The records as a sink writes them: JSON, where 0 and 0.0 differ."""
    return [
        orjson.dumps(written.record)
        for output in outputs
        for written in records_of(output)
        if hasattr(written, "record")
    ]


def batches(lines: list[bytes], sizes: list[int], sources: list[str]) -> list[Step]:
    steps: list[Step] = []
    position = turn = 0
    while position < len(lines):
        size = sizes[turn % len(sizes)]
        items, _ = decode_all(lines[position : position + size])
        steps.append(("process", (sources[turn % len(sources)], items)))
        position, turn = position + size, turn + 1
    return steps


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(1, 10_000),
    count=st.integers(1, 6000),
    sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=4),
    sources=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3),
    marks=st.lists(
        st.tuples(
            st.integers(0, 40), st.sampled_from(["a", "b"]), st.integers(0, 30), st.booleans()
        ),
        max_size=4,
    ),
    max_labels=st.sampled_from([1, 4, 1000]),
)
def test_faulty_streams_in_any_batches_and_partitions_leave_the_same_state(
    seed: int,
    count: int,
    sizes: list[int],
    sources: list[str],
    marks: list[tuple[int, str, int, bool]],
    max_labels: int,
) -> None:
    """Duplicates, disorder, late events, rejects, several partitions (one unknown
    to the config), idle marks, id expiry, retention and label overflow."""
    steps = batches(payloads(seed, count), sizes, sources)
    for position, source, hours, idle in marks:
        steps.insert(min(position, len(steps)), ("mark", (source, START + hours * HOUR, idle)))
    assert_same_runs(steps, max_labels)


# Few events a day and every way an order can end, so that deadlines, deliveries
# and the end of orders come due in a few thousand events.
SPARSE = replace(
    FAULTY,
    orders_per_hour=6,
    sessions_per_hour=0.5,
    receipts_per_hour=0.5,
    cancel_before_promise_share=0.1,
    cancel_after_promise_share=0.1,
    never_ship_share=0.1,
    late_ship_share=0.2,
    late_delivery_share=0.2,
    lost_share=0.05,
    failed_attempt_share=0.1,
    second_delivered_share=0.1,
)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(1, 10_000),
    size=st.integers(1, 3000),
    retention_hours=st.sampled_from([0, 3, 48]),
)
def test_orders_over_days_leave_the_same_state(seed: int, size: int, retention_hours: int) -> None:
    """Orders placed, picked, packed, shipped (late, twice), cancelled, delivered
    (late, twice, never), their deadlines and retention, over a week."""
    lines = [payload for _a, _k, payload in islice(stream(seed, START, SPARSE), 4000)]
    config = replace(CONFIG, retention=retention_hours * HOUR, sources=("a",))
    assert_same_runs(batches(lines, [size], ["a"]), config=config)


def second(seconds: float) -> int:
    return START + int(seconds * US_PER_SECOND)


def order_story() -> list[Any]:
    """One order of each kind of ending, with events in the order they would be
    hard to get right: orphans, repeats, earlier corrections, late deliveries."""
    placed, shipped = STRUCTS["order.placed"], STRUCTS["order.shipped"]
    cancelled, delivery = STRUCTS["order.cancelled"], STRUCTS["delivery.updated"]
    picked, packed = STRUCTS["inventory.picked"], STRUCTS["inventory.packed"]
    adjusted, clicked = STRUCTS["inventory.adjusted"], STRUCTS["recommendation.clicked"]
    lines = [Line("k", 2), Line("m", 3)]
    story = [
        shipped("e1", second(20), "o1", "FC1", None),  # before its order: held
        picked("e2", second(5), "o1", "FC1", "k", 2),
        placed("e3", second(0), "o1", "FC1", "east", lines, second(3600), second(7200)),
        placed("e4", second(21), "o1", "FC2", "west", lines, second(1), second(2)),  # ignored
        placed("e5", second(30), "o2", "FC2", "west", lines, second(100), second(200)),
        shipped("e6", second(90), "o2", "FC2", None),
        shipped("e7", second(80), "o2", "FC1", None),  # earlier: it decides
        shipped("e8", second(95), "o2", "FC2", None),
        delivery("e9", second(210), "o2", "delivered", None),  # late, counted at the deadline
        page_view("e10", second(300)),
        placed("e11", second(400), "o3", "FC1", "east", lines, second(500), second(450)),
        cancelled("e12", second(410), "o3", None),
        delivery("e13", second(420), "o3", "delivered", None),
        placed("e14", second(430), "o4", "FC3", "north", lines, second(900), second(1200)),
        delivery("e15", second(440), "o4", "delivered", None),
        picked("e16", second(445), "o4", "FC3", "k", 2),
        picked("e17", second(446), "o4", "FC3", "m", 3),
        packed("e18", second(450), "o4", "FC3"),
        delivery("e19", second(435), "o4", "delivered", None),  # earlier: it decides
        delivery("e20", second(460), "o4", "delivered", None),
        shipped("e21", second(470), "o4", "FC3", None),
        adjusted("e22", second(480), "FC1", "k", 5, None),
        adjusted("e23", second(481), "FC1", "k", -3, None),
        adjusted("e24", second(482), "FC2", "k", 0, None),
        clicked("e25", second(483), "s", "w1", "k"),
        delivery("e26", second(484), "o4", "failed_attempt", None),
        placed("e27", second(490), "o5", "FC1", "east", lines, second(600), second(700)),
        placed("e28", second(495), "o6", "FC3", "south", lines, second(600), second(700)),
        shipped("e29", second(496), "o6", "FC3", None),
    ]
    views = [page_view(f"v{hour}", second(hour * 3600)) for hour in range(1, 60, 6)]
    past_promise = delivery("e30", second(3610), "o6", "delivered", None)  # leaves the gauge
    return [*story, views[0], past_promise, *views[1:]]


@pytest.mark.parametrize("size", [1, 3, 100])
@pytest.mark.parametrize("retention_hours", [0, 3])
def test_every_way_an_order_ends_leaves_the_same_state_in_both_builds(
    size: int, retention_hours: int
) -> None:
    config = replace(CONFIG, retention=retention_hours * HOUR, sources=("a",))
    story = order_story()
    steps: list[Step] = [
        ("process", ("a", story[i : i + size])) for i in range(0, len(story), size)
    ]
    final = assert_same_runs(steps, config=config)
    series = final["series"]
    assert series["cockpit_orders_shipped_total"] == {("FC1", "true"): 2, ("FC3", "true"): 2}
    deliveries = {("west", "false"): 1, ("north", "true"): 1, ("east", "true"): 1}
    assert series["cockpit_deliveries_total"] == {**deliveries, ("south", "false"): 1}
    assert series["cockpit_orders_past_delivery_promise"]["south"] == 0
    assert series["cockpit_orders_cancelled_total"] == {("FC1", "unknown"): 1}
    assert series["cockpit_units_adjusted_total"] == {("FC1", "up"): 5, ("FC1", "down"): 3}
    if retention_hours:  # o1 and o5 are never delivered
        assert series["cockpit_state_expired_total"]["order"] == 2
    else:
        assert series["cockpit_orders_past_ship_promise"]["FC1"] == 1  # o5 never ships


def test_the_faulty_stream_exercises_what_it_should() -> None:
    steps = batches(payloads(2, 6000), [500], ["a", "b"])
    results = run_steps(steps, CONFIG, 4)
    outputs = [output for _state, drained in results for output in drained]
    assert {type(output) for output in outputs} == {
        DeadLetter,
        Partials,
        Alert,
        KpiRecords,  # the window ratios a combine step made at once
        SkuHealthDay,
    }
    outputs = [written for output in outputs for written in records_of(output)]
    records = (Alert, KpiRecord, SkuHealth)
    kinds = {
        output.record.get("kpi") or output.record.get("alert")
        for output in outputs
        if type(output) in records
    }
    assert {"sku_health", "stockout", "sell_through", "shift", "ship_sla_breach"} <= kinds
    assert sum(type(output) is Partials for output in outputs) > 10
    final = results[-1][0]
    runtime = final["runtime"]["series"]
    for name in ("duplicate", "late"):
        assert sum(runtime[f"cockpit_events_{name}_total"].values()) > 0
    expired = final["families"]["orders_entity"]["series"]["cockpit_state_expired_total"]
    assert expired["order"] > 0
    assert runtime["cockpit_label_overflow_total"]["page"] > 0


def test_a_day_of_default_traffic_leaves_the_same_state() -> None:
    lines = [payload for _a, _k, payload in islice(stream(7, START, Profile()), 40_000)]
    assert_same_runs(batches(lines, [1000], ["a"]))


def page_view(event_id: str, ts: int) -> Any:
    return STRUCTS["page.viewed"](event_id, ts, "s", "home", 120.0)
