"""The compiled loop of ShardEngine.process (flows/_fastengine.c) leaves the engine
exactly as the Python loop does: the same state, outputs and errors."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flows.engine as engine_module
from flows.decode import STRUCTS, Line, Reject, decode_all
from flows.engine import EngineConfig, ShardEngine
from flows.labels import LabelCap
from flows.simulator import Profile, stream
from flows.timeutil import US_PER_SECOND, format_time

compiled = pytest.importorskip(
    "flows._fastengine", reason="flows._fastengine was not compiled (no C compiler at install)"
)

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


def payloads(seed: int, count: int) -> list[bytes]:
    return [payload for _arrival, _key, payload in islice(stream(seed, START, FAULTY), count)]


def engine(max_labels: int = 4, config: EngineConfig = CONFIG) -> ShardEngine:
    return ShardEngine("0", config, LabelCap(max_labels))


def state(shard: ShardEngine) -> dict[str, Any]:
    snapshot = shard.__getstate__()
    snapshot["ledger"] = shard.ledger.series
    seen = snapshot["seen"]
    snapshot["seen"] = seen if type(seen) is dict else seen.to_dict()
    return snapshot


Step = tuple[str, Any]  # ("process", (source, items)) or ("mark", (source, max ts, idle))


@contextmanager
def loop(use_compiled: bool) -> Iterator[None]:
    """Run the engine with the compiled loop, or with the Python loop alone."""
    saved = engine_module._compiled, engine_module._forget, engine_module._id_table
    engine_module._compiled = compiled.admit if use_compiled else None
    engine_module._forget = compiled.forget if use_compiled else engine_module._forget_ids
    engine_module._id_table = compiled.IdTable if use_compiled else dict
    try:
        yield
    finally:
        engine_module._compiled, engine_module._forget, engine_module._id_table = saved


def run(
    steps: list[Step], use_compiled: bool, max_labels: int = 4, config: EngineConfig = CONFIG
) -> Iterator[Any]:
    """Feed the steps to a fresh engine; yield its state and outputs after each one."""
    with loop(use_compiled):
        shard = engine(max_labels, config)
        for step, args in steps:
            if step == "process":
                shard.process(*args)
            else:
                shard.mark(*args)
            yield state(shard), shard.drain()
        shard.finish()
        yield state(shard), shard.drain()


def assert_same_runs(steps: list[Step], max_labels: int = 4, config: EngineConfig = CONFIG) -> None:
    # Decoded events are shared by both runs: the engines only read them.
    python_run = run(steps, False, max_labels, config)
    for index, (got, expected) in enumerate(
        zip(run(steps, True, max_labels, config), python_run, strict=True)
    ):
        assert got == expected, f"after step {index} ({steps[min(index, len(steps) - 1)][0]})"


def batches(lines: list[bytes], sizes: list[int], sources: list[str]) -> list[Step]:
    steps: list[Step] = []
    position = turn = 0
    while position < len(lines):
        size = sizes[turn % len(sizes)]
        items, _ = decode_all(lines[position : position + size])
        steps.append(("process", (sources[turn % len(sources)], items)))
        position, turn = position + size, turn + 1
    return steps


@settings(max_examples=25, deadline=None)
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
def test_faulty_streams_in_any_batches_and_partitions_leave_the_same_engine(
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


@settings(max_examples=12, deadline=None)
@given(
    seed=st.integers(1, 10_000),
    size=st.integers(1, 3000),
    retention_hours=st.sampled_from([0, 3, 48]),
)
def test_orders_over_days_leave_the_same_engine(seed: int, size: int, retention_hours: int) -> None:
    """Orders placed, picked, packed, shipped (late, twice), cancelled, delivered
    (late, twice, never), their deadlines and retention, over a week."""
    lines = [payload for _a, _k, payload in islice(stream(seed, START, SPARSE), 4000)]
    config = replace(
        CONFIG, retention=retention_hours * HOUR, sources=("a",)
    )  # W moves in the loop
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
def test_every_way_an_order_ends_leaves_the_same_engine(size: int, retention_hours: int) -> None:
    config = replace(CONFIG, retention=retention_hours * HOUR, sources=("a",))
    story = order_story()
    steps: list[Step] = [
        ("process", ("a", story[i : i + size])) for i in range(0, len(story), size)
    ]
    assert_same_runs(steps, config=config)
    *_, (final, _drained) = run(steps, True, 4, config)
    series = final["ledger"]
    assert series["cockpit_orders_shipped_total"] == {("FC1", "true"): 2, ("FC3", "true"): 2}
    deliveries = {("west", "false"): 1, ("north", "true"): 1, ("east", "true"): 1}
    assert series["cockpit_deliveries_total"] == {**deliveries, ("south", "false"): 1}
    assert series["cockpit_orders_past_delivery_promise"]["south"] == 0
    assert series["cockpit_orders_cancelled_total"] == {"FC1": 1}
    assert series["cockpit_units_adjusted_total"] == {("FC1", "up"): 5, ("FC1", "down"): 3}
    if retention_hours:  # o1 and o5 are never delivered
        assert series["cockpit_state_expired_total"]["order"] == 2
    else:
        assert series["cockpit_orders_past_ship_promise"]["FC1"] == 1  # o5 never ships


def test_the_faulty_stream_exercises_what_it_should() -> None:
    steps = batches(payloads(1, 6000), [500], ["a", "b"])
    *_, (final, _drained) = run(steps, use_compiled=True)
    outputs = [output for _state, drained in run(steps, True) for output in drained]
    assert {kind for kind, _key, _record in outputs} == {"alert", "dlq", "window"}
    assert sum(kind == "window" for kind, _key, _record in outputs) > 10
    series = final["ledger"]
    for name in ("duplicate", "late"):
        assert sum(series[f"cockpit_events_{name}_total"].values()) > 0
    assert series["cockpit_state_expired_total"]["order"] > 0
    assert series["cockpit_label_overflow_total"]["page"] > 0


def count(shard: ShardEngine, outcome: str) -> int:
    """Page views accepted ("events"), "late" or "duplicate"."""
    name = "cockpit_events_total" if outcome == "events" else f"cockpit_events_{outcome}_total"
    return int(shard.ledger.series[name]["page.viewed"])


def at(minutes: float) -> int:
    return START + int(minutes * 60 * US_PER_SECOND)


def test_the_lateness_bound_is_exact() -> None:
    lateness = CONFIG.lateness
    items = [
        page_view("a", START),
        page_view("b", START - lateness),
        page_view("c", START - lateness - 1),
    ]
    shard = engine()
    shard.process("a", items)
    assert (count(shard, "events"), count(shard, "late")) == (2, 1)
    assert_same_runs([("process", ("a", items))])


def test_a_partition_behind_the_watermark_is_late_against_it() -> None:
    """W (05:00 - L, from partition a while b idled) bounds b's events even
    after b's own max ts moves: 04:59:25 is within b's lateness, not above W."""
    second = US_PER_SECOND
    idle_b = ("mark", ("b", START, True))
    ahead = ("process", ("a", [page_view("a1", at(300))]))
    behind_items = [
        page_view("b1", at(60)),
        page_view("b2", at(300) - 10 * second),
        page_view("b3", at(300) - 35 * second),
    ]
    behind = ("process", ("b", behind_items))
    shard = engine()
    shard.mark("b", START, True)
    shard.process("a", ahead[1][1])
    shard.process("b", behind_items)
    assert (count(shard, "events"), count(shard, "late")) == (2, 2)
    assert_same_runs([idle_b, ahead, behind])


def test_an_id_is_remembered_through_the_hour_at_the_horizon() -> None:
    # Seen at 00:00; W at 02:30 puts the horizon (2 h) in the hour of 00:00.
    items = [
        page_view("x", START),
        page_view("w", at(150) + CONFIG.lateness),
        page_view("x", at(151)),
    ]
    shard = engine()
    shard.mark("b", START, True)
    shard.process("a", items)
    assert count(shard, "duplicate") == 1
    assert_same_runs([("mark", ("b", START, True)), ("process", ("a", items))])


def test_an_id_past_the_horizon_is_new_again_then_remembered_again() -> None:
    # W at 03:30 puts the horizon in the hour of 01:00: "x" of 00:00 is forgotten
    # (though its hour is only dropped at the end of the batch).
    items = [
        page_view("x", START),
        page_view("w", at(210) + CONFIG.lateness),
        page_view("x", at(211)),
        page_view("x", at(212)),
    ]
    shard = engine()
    shard.mark("b", START, True)
    shard.process("a", items)
    assert (count(shard, "events"), count(shard, "duplicate")) == (3, 1)
    assert_same_runs([("mark", ("b", START, True)), ("process", ("a", items))])


def test_a_deadline_is_decided_at_the_event_that_passes_it() -> None:
    order = STRUCTS["order.placed"](
        "o", START, "o1", "FC1", "east", [Line("k", 1)], at(60), at(600)
    )
    views = [page_view(f"v{minutes}", at(minutes)) for minutes in range(0, 181, 10)]
    shard = engine()
    shard.mark("b", START, True)
    shard.process("a", [order, *views])
    (alert,) = [record for kind, _key, record in shard.drain() if kind == "alert"]
    assert alert["decided_ts"] == format_time(at(70) - CONFIG.lateness)
    assert_same_runs([("mark", ("b", START, True)), ("process", ("a", [order, *views]))])


def test_a_day_of_default_traffic_leaves_the_same_engine() -> None:
    lines = [payload for _a, _k, payload in islice(stream(7, START, Profile()), 40_000)]
    assert_same_runs(batches(lines, [1000], ["a"]))


def page_view(event_id: str, ts: int) -> Any:
    return STRUCTS["page.viewed"](event_id, ts, "s", "home", 120.0)


@pytest.mark.parametrize("odd_ts", [(1 << 62) + 1, -(1 << 62) - 1, 2**70])
def test_a_ts_beyond_its_arithmetic_hands_the_rest_of_the_batch_to_python(odd_ts: int) -> None:
    items = [page_view(f"e{i}", START + i * US_PER_SECOND) for i in range(10)]
    items.insert(4, page_view("odd", odd_ts))
    items.insert(7, page_view("e2", START))  # a duplicate after the hand-over
    assert compiled.admit(engine(), "a", items, Reject) == 4
    assert_same_runs([("process", ("a", items))])


def test_settings_beyond_its_arithmetic_leave_everything_to_python() -> None:
    shard = ShardEngine("0", replace(CONFIG, lateness=1 << 61), LabelCap(4))
    assert compiled.admit(shard, "a", [page_view("e1", START)], Reject) == 0


def test_an_error_in_a_handler_propagates_as_in_python() -> None:
    items, _ = decode_all(payloads(3, 3000))
    assert any(getattr(item, "kind", None) == "order.placed" for item in items[100:])
    outcomes = []
    for use_compiled in (True, False):
        shard = engine()
        shard._handlers["order.placed"] = _boom
        with loop(use_compiled), pytest.raises(RuntimeError, match="boom"):
            shard.process("a", items)
        outcomes.append((state(shard), shard.drain()))
    assert outcomes[0] == outcomes[1]


def _boom(_event: Any) -> None:
    raise RuntimeError("boom")


def test_nothing_is_leaked_or_freed_early() -> None:
    """References held by C: the events, their kinds and ids, the hour objects."""
    items = [page_view(f"e{i}", START + i * 1000) for i in range(2000)]
    items += [page_view(f"e{i}", START + i * 1000) for i in range(2000)]  # duplicates
    shard = engine()
    kind = type(items[0]).kind
    before = [sys.getrefcount(item) for item in items], sys.getrefcount(kind)
    shard.process("a", items)
    assert ([sys.getrefcount(item) for item in items], sys.getrefcount(kind)) == before
    assert len(shard.seen) == 2000 and type(shard.seen) is compiled.IdTable
    assert shard.ledger.series["cockpit_events_duplicate_total"]["page.viewed"] == 2000
    restored = pickle.loads(pickle.dumps(shard)).attach(CONFIG, LabelCap(4))
    restored.process("a", items[:10])
    assert restored.ledger.series["cockpit_events_duplicate_total"]["page.viewed"] == 2010


@dataclass
class Other:
    """An event of a kind the engine was given a handler for at run time."""

    kind: str
    event_id: str
    ts: int


@pytest.mark.parametrize("use_compiled", [True, False])
def test_event_fields_are_read_as_python_reads_them(use_compiled: bool) -> None:
    """The compiled loop reads fields from slots, and class attributes, it
    remembers per type: an instance dict that shadows a class attribute, a slot
    left empty, and a type changed after a batch read as Python has them."""

    @dataclass(slots=True)
    class Slotted:
        kind: str
        event_id: str
        ts: int

    class Shadowed:
        kind = "kind1"

        def __init__(self, event_id: str, ts: int) -> None:
            self.event_id, self.ts, self.kind = event_id, ts, "kind2"

    first, second, unset = (Slotted("kind1", f"e{i}", START + i) for i in range(3))
    del unset.kind
    shard = engine()
    handled: list[Any] = []
    shard._handlers.update({"kind1": handled.append, "kind2": handled.append})
    with loop(use_compiled):
        shard.process("a", [first, Shadowed("e3", START + 3)])
        with pytest.raises(AttributeError, match="kind"):
            shard.process("a", [unset])
        Slotted.kind = property(lambda _self: "kind2")  # type: ignore[assignment,method-assign]
        shard.process("a", [second])
    events = state(shard)["ledger"]["cockpit_events_total"]
    assert (events.get("kind1"), events.get("kind2"), len(handled)) == (1, 2, 3)


def test_more_kinds_in_a_batch_than_its_table_holds_hands_over_to_python() -> None:
    items = [Other(f"kind{i % 80}", f"e{i}", START + i) for i in range(400)]
    handled: dict[bool, list[Any]] = {}
    for use_compiled in (True, False):
        shard = engine()
        calls = handled[use_compiled] = []
        shard._handlers.update({f"kind{i}": calls.append for i in range(80)})
        with loop(use_compiled):
            shard.process("a", items)
        assert state(shard)["ledger"]["cockpit_events_total"]["kind79"] == 5
    assert handled[True] == handled[False] == items


def test_a_kind_without_a_handler_is_a_key_error_only_once_accepted() -> None:
    late = [page_view("e1", START + 600 * US_PER_SECOND), Other("unknown", "e2", START)]
    assert_same_runs([("process", ("a", late))])  # late: counted, never dispatched
    for use_compiled in (True, False):
        with loop(use_compiled), pytest.raises(KeyError, match="unknown"):
            engine().process("a", [Other("unknown", "e1", START)])


@pytest.mark.parametrize("use_compiled", [True, False])
def test_forgetting_an_hour_keeps_ids_seen_again_later(use_compiled: bool) -> None:
    hour, later = 5, 7
    contents = {"a": hour, "b": later, "c": hour}
    with loop(use_compiled):
        seen = engine_module._id_table(contents)
        engine_module._forget(seen, ["a", "b", "c", "gone", "a"], hour)
    assert (seen.to_dict() if use_compiled else seen) == {"b": later}


Op = tuple[str, str, int]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "del", "get", "in", "forget"]),
            st.sampled_from([f"id{i}" for i in range(40)] + ["", "é", "🙂" * 3]),
            st.integers(-3, 3),
        ),
        max_size=400,
    )
)
def test_the_id_table_behaves_as_a_dict(ops: list[Op]) -> None:
    """Collisions, growth and deletions (backward shifts) included: 40 keys churn."""
    table, model = compiled.IdTable(), {}
    for op, key, hour in ops:
        if op == "set":
            table[key] = model[key] = hour
        elif op == "del":
            if key in model:
                del table[key], model[key]
            else:
                with pytest.raises(KeyError):
                    del table[key]
        elif op == "get":
            assert table.get(key) == model.get(key)
            assert table.get(key, "none") == model.get(key, "none")
        elif op == "in":
            assert (key in table) == (key in model)
        else:
            ids = [k for k in model if model[k] == hour]
            compiled.forget(table, ids, hour)
            engine_module._forget_ids(model, ids, hour)
        assert len(table) == len(model)
    assert table.to_dict() == model
    assert sorted(table) == sorted(model)
    assert pickle.loads(pickle.dumps(table)) == model  # a snapshot holds a plain dict
    assert compiled.IdTable(model).to_dict() == model


def test_the_id_table_takes_str_ids_and_int_hours_only() -> None:
    table = compiled.IdTable()
    with pytest.raises(TypeError, match="keys are str"):
        table[1] = 1  # type: ignore[index]
    with pytest.raises(TypeError, match="hours"):
        table["a"] = "x"  # type: ignore[assignment]
    with pytest.raises(KeyError):
        table["missing"]
    assert "missing" not in table and len(table) == 0


def test_the_id_table_keeps_a_million_ids_and_gives_memory_back() -> None:
    table = compiled.IdTable()
    for i in range(1_000_000):
        table[f"ev-{i}"] = i % 30
    compiled.forget(table, [f"ev-{i}" for i in range(0, 1_000_000, 30)], 0)
    assert len(table) == 1_000_000 - 33_334
    assert table["ev-1"] == 1 and "ev-30" not in table and table.get("ev-999999") == 9
    full = sys.getsizeof(table)
    assert full > 24 * 1_000_000  # slots included
    for hour in range(1, 29):  # a burst passes: all but hour 29 expire
        compiled.forget(table, [f"ev-{i}" for i in range(hour, 1_000_000, 30)], hour)
    assert len(table) == 33_333 and sys.getsizeof(table) * 8 < full
    assert table["ev-29"] == 29 and all(f"ev-{i}" in table for i in range(29, 1_000_000, 30))
