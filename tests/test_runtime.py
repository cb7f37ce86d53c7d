"""The runtime (contract §2): duplicates, lateness, the watermark, rejects, labels
and snapshots, through one shard with every family."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from flows.decode import decode
from flows.kpis import FAMILIES
from flows.kpis.upgrade import upgrade
from flows.labels import LabelCap
from flows.runtime.outputs import Alert, KpiRecord, KpiRecords
from flows.runtime.snapshot import dump_shard, load_shard
from flows.settings import EngineConfig
from flows.timeutil import format_time
from tests.scenario import Events, Run, at, us


def test_duplicates_and_late_events_are_counted_and_ignored():
    e = Events()
    placed = e.placed("O1", at(10), at(600), at(3000), event_id="dup")
    run = Run().feed(
        placed,
        placed,
        e.tick(at(20)),
        e.adjusted(at(18, seconds=59), 5),
        e.adjusted(at(19, seconds=1), 7),
    )
    assert run.value("cockpit_events_duplicate_total", "order.placed") == 1
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    assert run.value("cockpit_units_on_hand", "FC1") == 7
    assert run.value("cockpit_events_total", "order.placed") == 1
    assert run.value("cockpit_watermark_timestamp_seconds") == run.shard.watermark / 1e6
    run.finish()
    assert run.shard.watermark == run.shard.max_ts["input"]


def test_a_deadline_fires_at_the_event_that_takes_w_exactly_past_it():
    """W passing S by one microsecond decides the breach at that event, not at the
    next one or at the batch's end: its `decided_ts` is that W. (W first enters S's
    minute, so that its timer waits among the ready ones, by its own time.)"""
    e = Events()
    ship_by = at(10, seconds=30)
    run = Run().feed(
        e.placed("O1", at(0), ship_by, at(3000)),
        e.tick(at(11, seconds=10)),  # W = 08:10:10 (lateness 60 s)
        e.tick(at(11, seconds=30, us=1)),  # W = S + 1 µs
        e.tick(at(20)),
    )
    alerts = run.records("alert")
    assert [(a["alert"], a["decided_ts"]) for a in alerts] == [
        ("ship_sla_breach", format_time(us(ship_by) + 1))
    ]


def test_a_deadline_already_passed_when_its_order_comes_fires_at_that_event():
    """An order placed at W whose ship-by lies 1 µs before W is breached at once:
    its `decided_ts` is that W, not the W of the next event of the batch."""
    e = Events()
    run = Run().feed(
        e.tick(at(20)),  # W = 08:19:00
        e.placed("O1", at(19), at(19, us=-1), at(3000)),
        e.tick(at(25)),
    )
    alerts = run.records("alert")
    assert [(a["alert"], a["decided_ts"]) for a in alerts] == [
        ("ship_sla_breach", format_time(us(at(19))))
    ]


def test_a_partition_back_from_idle_is_late_below_w_not_only_below_its_own_max():
    """Contract §2: from Kafka an event is late below its own partition's
    watermark *or below W*, which is ahead of it after the partition idled."""
    config = EngineConfig(sources=("a", "b"))
    e = Events()
    run = Run(config)
    run.shard.process("a", [decode(e.tick(at(10)))])
    run.shard.mark("a", us(at(10)), idle=True)
    run.shard.process("b", [decode(e.tick(at(100)))])
    assert run.shard.watermark == us(at(99))  # a idle: b alone
    # Within a's own lateness (its max is 08:10) but below W (09:39): late.
    run.shard.process("a", [decode(e.adjusted(at(50), 3))])
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    # One at 09:39:30 is accepted and moves a's max, whose own watermark (09:38:30)
    # is still below W: the next, at 09:38:45, is late against W.
    ahead, between = e.adjusted(at(99, seconds=30), 5), e.adjusted(at(98, seconds=45), 7)
    run.shard.process("a", [decode(ahead), decode(between)])
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 2
    assert run.value("cockpit_units_on_hand", "FC1") == 5


def test_an_event_at_w_is_accepted_and_one_a_microsecond_below_is_late():
    """Late is `ts < W` (contract §2): an event exactly at W is accepted."""
    e = Events()
    run = Run().feed(
        e.tick(at(20)), e.adjusted(at(19), 5), e.adjusted(at(19, us=-1), 7)
    )  # W = 08:19:00
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    assert run.value("cockpit_units_on_hand", "FC1") == 5


def test_a_late_event_sent_again_is_a_duplicate():
    e = Events()
    late = e.adjusted(at(0), 5)
    run = Run().feed(e.tick(at(10)), late, late)
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1


def test_ids_are_remembered_until_the_horizon():
    e = Events()
    first = e.adjusted(at(0), 5)
    run = Run().feed(first, e.tick(at(24 * 60 + 60)), first)  # W = 08:59 next day
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1
    run.feed(e.tick(at(24 * 60 + 61)), first)  # W = 09:00: the 08:00 hour is forgotten
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1


def test_an_id_is_remembered_across_batches_for_24_hours_of_event_time():
    """Contract §2: ids are remembered for at least 24 h of event time. An id seen
    at 08:59 is still known in a later batch at W = 08:30 the next day (23 h 31 min
    on): a duplicate, which the duplicate check finds before the lateness one."""
    e = Events()
    first = e.adjusted(at(59), 5)
    run = Run().feed(first).feed(e.tick(at(24 * 60 + 31))).feed(first)
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 0


def test_a_late_event_within_24_hours_of_w_is_remembered():
    """A late event's id is remembered too: one at 09:45, 23 h 45 min before
    W = 09:30 the next day, sent twice is late once and a duplicate once."""
    e = Events()
    late = e.adjusted(at(105), 5)
    run = Run().feed(e.tick(at(24 * 60 + 91)), late, late)
    assert run.value("cockpit_events_late_total", "inventory.adjusted") == 1
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1


def test_rejects_go_to_the_dead_letter_output_with_reason():
    run = Run().feed(b"not json", b'{"type": "nope"}', b'{"type": "order.shipped"}', b"\xff")
    reasons = [r["reason"] for r in run.records("dlq")]
    assert reasons == ["invalid_json", "unknown_type", "invalid_event", "invalid_json"]
    assert run.value("cockpit_events_rejected_total", "invalid_json") == 2
    assert run.records("dlq")[3]["payload_encoding"] == "base64"
    # Contract §2: the original payload, as text or base64 when not UTF-8, and an error.
    payloads = [(r["payload"], r["payload_encoding"]) for r in run.records("dlq")]
    assert payloads == [
        ("not json", "utf-8"),
        ('{"type": "nope"}', "utf-8"),
        ('{"type": "order.shipped"}', "utf-8"),
        ("/w==", "base64"),
    ]
    assert all(r["error"] for r in run.records("dlq"))


def test_watermark_is_the_minimum_over_partitions_that_are_not_idle():
    config = EngineConfig(sources=("a", "b"))
    e = Events()
    run = Run(config)
    run.shard.process(
        "a", [decode(e.placed("O1", at(0), at(10), at(3000))), decode(e.tick(at(100)))]
    )
    assert run.shard.watermark < 0  # b has not reported
    run.shard.mark("b", us(at(50)), idle=False)
    assert run.shard.watermark == us(at(49))
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 1
    run.shard.mark("b", us(at(50)), idle=True)  # b idle: only a counts
    assert run.shard.watermark == us(at(99))
    run.shard.mark("a", us(at(100)), idle=True)  # all idle: drained, W = max ts
    assert run.shard.watermark == us(at(100))


def test_a_partition_that_idled_holds_w_again_once_it_reads_or_says_it_is_active():
    """Contract §2: W is the minimum over the partitions that are *not idle*. An idle
    partition that delivers an event, or whose reader reports it active, counts
    again: W (never going back) waits for it instead of following the other."""
    config = EngineConfig(sources=("a", "b"))
    e = Events()
    run = Run(config)
    run.shard.process("a", [decode(e.tick(at(100)))])
    run.shard.mark("b", us(at(0)), idle=True)
    assert run.shard.watermark == us(at(99))
    run.shard.process("b", [decode(e.tick(at(99, seconds=30)))])  # b active again
    run.shard.process("a", [decode(e.tick(at(200)))])
    assert run.shard.watermark == us(at(99))  # held by b (its max - 60 s is below)
    run.shard.mark("b", us(at(99, seconds=30)), idle=True)
    assert run.shard.watermark == us(at(199))
    run.shard.mark("b", us(at(99, seconds=30)), idle=False)  # its reader has a backlog
    run.shard.process("a", [decode(e.tick(at(300)))])
    assert run.shard.watermark == us(at(199))


def test_a_stale_progress_report_does_not_take_a_partition_back():
    """A partition's largest ts only grows: a report below what the shard knows
    holds neither W nor that partition's lateness back."""
    config = EngineConfig(sources=("a", "b"))
    e = Events()
    run = Run(config)
    run.shard.mark("b", us(at(80)), idle=False)
    run.shard.mark("b", us(at(20)), idle=False)  # stale
    run.shard.process("a", [decode(e.tick(at(100)))])
    assert run.shard.watermark == us(at(79))
    assert run.shard.max_ts["b"] == us(at(80))


def test_a_restored_shard_counts_no_partition_idle_until_its_reader_says_so():
    """Both partitions were idle (drained) when the snapshot was taken. After the
    restart b reports first, with a backlog far ahead: W must wait for a, whose
    reader has not caught up yet, or a's backlog would all be late."""
    config = EngineConfig(sources=("a", "b"))
    e = Events()
    run = Run(config)
    run.shard.process("a", [decode(e.tick(at(100)))])
    run.shard.mark("b", us(at(100)), idle=True)
    run.shard.mark("a", us(at(100)), idle=True)
    assert run.shard.watermark == us(at(100))
    again = run.restored()
    again.shard.mark("b", us(at(600)), idle=False)
    assert again.shard.watermark == us(at(100))  # held by a, as restored
    again.shard.process("a", [decode(e.tick(at(101)))])
    assert again.value("cockpit_events_late_total", "page.viewed") == 0
    again.shard.mark("a", us(at(101)), idle=True)  # a caught up and idle again
    assert again.shard.watermark == us(at(599))


def test_a_restored_shard_ends_a_finite_input_at_its_largest_accepted_ts():
    """Contract §2: at the end of a finite input W becomes the largest accepted ts,
    also when that event came before the snapshot: a ship-by 30 s before it passes."""
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(99, seconds=30), at(3000)), e.tick(at(100)))
    assert run.value("cockpit_ship_sla_breaches_total", "FC1") == 0  # W = 09:39
    again = run.restored().finish()
    assert again.shard.watermark == us(at(100))
    assert again.value("cockpit_ship_sla_breaches_total", "FC1") == 1


def test_the_combine_stage_keeps_each_shards_w_across_a_snapshot():
    """The least W over shards is the `decided_ts` of window KPIs: a restored
    combine stage knows each shard's W, not only how far it closed windows."""
    e = Events()
    run = Run(shards=("0", "1"))
    run.feed(e.tick(at(100)), shard="0").feed(e.tick(at(130)), shard="1")
    again = run.restored()
    assert again.combine.progress == {"0": us(at(60)), "1": us(at(120))}
    assert again.combine.watermarks == {"0": us(at(99)), "1": us(at(129))}


def test_the_combine_stage_hands_each_run_of_kpi_records_on_as_one_batch():
    """Records keep their order; alerts between them stay outputs of their own."""
    run = Run()
    ratio = [KpiRecord(f"k{i}", {"kpi": "k"}) for i in range(3)]
    alert = Alert("a", {"alert": "a"})
    run.combine.out = [ratio[0], ratio[1], alert, ratio[2]]
    drained = run.combine.drain()
    assert drained == [KpiRecords(ratio[:2]), alert, KpiRecords(ratio[2:])]
    assert run.combine.drain() == []


# --- labels and state


def test_label_values_fold_into_other_beyond_the_cap():
    e = Events()
    run = Run(max_label_values=2).feed(*(e.adjusted(at(i), 1, fc=f"FC{i}") for i in range(4)))
    assert run.series("cockpit_units_on_hand") == {"FC0": 1, "FC1": 1, "other": 2}
    assert run.value("cockpit_label_overflow_total", "fc") == 2


def test_a_label_value_longer_than_its_limit_folds_into_other_whatever_the_cap():
    """A value of a megabyte would be repeated in every series of its label, and a
    scrape refused whole by Prometheus' label_value_length_limit: it folds, counted;
    a per-order alert still names the fc as the event spells it."""
    e = Events()
    longest, too_long = "F" * 256, "F" * 257
    run = Run().feed(
        e.placed("O1", at(0), at(5), at(600), fc=longest),
        e.placed("O2", at(0), at(5), at(600), fc=too_long),
        e.tick(at(7)),
    )
    assert run.series("cockpit_orders_placed_total") == {longest: 1, "other": 1}
    assert run.value("cockpit_label_overflow_total", "fc") == 1
    breaches = {r["order_id"]: r["fc"] for r in run.records("alert")}
    assert breaches == {"O1": longest, "O2": too_long}


def test_an_empty_label_value_shows_as_unknown():
    """Prometheus reads `fc=""` as no fc label at all: the series would lose the
    label a dashboard sums by. "" shows as `unknown`, as an absent reason does, and
    takes its own place under the cap; an alert names the fc as the event spells it."""
    e = Events()
    run = Run(max_label_values=2).feed(
        e.placed("O1", at(0), at(5), at(600), fc=""),
        e.placed("O2", at(0), at(5), at(600), fc="FC1"),
        e.placed("O3", at(0), at(5), at(600), fc="FC2"),
        e.tick(at(7)),
    )
    assert run.series("cockpit_orders_placed_total") == {"unknown": 1, "FC1": 1, "other": 1}
    assert {r["order_id"]: r["fc"] for r in run.records("alert")}["O1"] == ""


def test_engine_state_survives_pickling_with_its_labels():
    e = Events()
    run = Run(max_label_values=1).feed(
        e.placed("O1", at(0), at(60), at(3000)), e.adjusted(at(1), 5, fc="FC2")
    )
    labels = LabelCap(1)
    restored = load_shard(dump_shard(run.shard), run.config, labels, FAMILIES, upgrade)
    assert labels.export() == {"fc": ["FC1"], "region": ["east"]}
    restored.process("input", [decode(e.tick(at(62)))])
    assert restored.ledger["cockpit_ship_sla_breaches_total"] == {"FC1": 1}
    assert restored.ledger["cockpit_units_on_hand"] == {"other": 5}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - EPOCH) // timedelta(
    microseconds=1
)


@settings(max_examples=2000, deadline=None)
@given(
    st.one_of(
        st.integers(FIRST_US, LAST_US),
        st.integers(-(10**12), 10**12),
        st.sampled_from([FIRST_US, LAST_US, 0, -1, 59_999_999, 60_000_000, -60_000_001]),
    )
)
def test_record_times_are_the_rfc3339_text_datetime_gives(us: int) -> None:
    """format_time keeps each minute's text: the same text as datetime's, with the
    fraction only where there is one."""
    assert format_time(us) == (EPOCH + timedelta(microseconds=us)).isoformat()[:-6] + "Z"


CYCLE_US = (datetime(2400, 1, 1, tzinfo=UTC) - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(
    microseconds=1
)


@settings(max_examples=500, deadline=None)
@given(st.integers(FIRST_US, LAST_US), st.integers(-30, 30).filter(bool))
def test_record_times_beyond_year_9999_or_before_year_1_repeat_the_400_year_calendar(
    us: int, cycles: int
) -> None:
    """A window or day holding a valid time can end past 9999-12-31 (or a valid time
    with an offset lie before 0001-01-01 in UTC): its text is that of the same
    instant 400·n years away with the year moved, signed or of five digits."""
    year, rest = format_time(us).split("-", 1)
    shifted = int(year) + 400 * cycles
    digits = f"{shifted:04d}" if shifted >= 0 else f"-{-shifted:04d}"
    assert format_time(us + cycles * CYCLE_US) == f"{digits}-{rest}"


def test_record_times_at_the_edges_of_datetime() -> None:
    assert format_time(LAST_US + 1) == "10000-01-01T00:00:00Z"
    assert format_time(FIRST_US - 1) == "0000-12-31T23:59:59.999999Z"
    assert format_time(FIRST_US - CYCLE_US - 60_000_000) == "-0400-12-31T23:59:00Z"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            # a timer: (slot, minutes ahead of W, µs within the minute)
            st.tuples(st.integers(0, 40), st.integers(-3, 30), st.integers(0, 59_999_999)),
            st.integers(0, 25),  # W moves on by this many minutes and due timers fire
        ),
        max_size=120,
    )
)
def test_timers_come_out_in_when_slot_key_order_however_they_were_set(steps) -> None:
    """The timer wheel (buckets, late heap, the bucket each slot used last) against
    a plain sorted list: the same timers, in the same order, at the same W."""
    from flows.runtime.consts import TIMER_BUCKET
    from flows.runtime.core import Timer, Timers

    timers, pending, fired, expected = Timers(), [], [], []
    watermark = 10 * TIMER_BUCKET
    for number, step in enumerate(steps):
        if isinstance(step, tuple):
            slot, ahead, within = step
            when = watermark + ahead * TIMER_BUCKET + within
            timers.push(Timer(when, slot, f"k{number:04d}"))
            pending.append((when, slot, f"k{number:04d}"))
            continue
        watermark += step * TIMER_BUCKET
        while (timer := timers.due(watermark)) is not None:
            fired.append((timer.when, timer.slot, timer.key))
        due = sorted(t for t in pending if t[0] <= watermark)
        pending = [t for t in pending if t[0] > watermark]
        expected += due
        assert fired == expected
    assert len(timers) == len(pending)
    assert sorted((t.when, t.slot, t.key) for t in timers.export()) == sorted(pending)


def test_timers_at_one_time_come_out_by_slot_across_the_late_heap_and_a_far_bucket() -> None:
    """A timer set for exactly the end of the bucket W last reached waits in the
    next bucket, with the timers already there, so that timers at one time still
    come out by slot whichever was set first."""
    from flows.runtime.consts import TIMER_BUCKET
    from flows.runtime.core import Timer, Timers

    timers = Timers()
    timers.push(Timer(TIMER_BUCKET, 1, "k"))  # in the bucket after the first
    timers.push(Timer(5, 0, "k"))
    first = timers.due(10)  # W reaches the first bucket: it ends at TIMER_BUCKET
    assert first is not None and (first.when, first.slot) == (5, 0)
    timers.push(Timer(TIMER_BUCKET, 5, "k"))
    fired = []
    while (timer := timers.due(TIMER_BUCKET)) is not None:
        fired.append((timer.when, timer.slot))
    assert fired == [(TIMER_BUCKET, 1), (TIMER_BUCKET, 5)]


def test_a_histogram_counts_a_value_at_a_bound_in_that_bound_and_keeps_the_exact_sum() -> None:
    """Bounds are compared as doubles: a value equal to a bound is in its bucket
    (`le`), one above every bound only in +Inf; the sum adds whole µs, exactly (a
    Python int in the series, written in seconds by the exposition)."""
    from flows.runtime.core import Histogram

    series: dict[object, list[int]] = {"FC3": [1, 0, 0, 0, 300_000]}  # as restored
    histogram = Histogram(series, (60, 300, 900))
    for value in (60.0, 60.000001, 0.1, 900.0, 1e9, 0.2):
        histogram.observe("FC1", value)
    histogram.observe(("FC2", "x"), 301)
    assert "FC1" not in series  # counted in C till the batch's end
    histogram.flush()
    first_us = 60_000_000 + 60_000_001 + 100_000 + 900_000_000 + 10**15 + 200_000
    assert series["FC1"] == [3, 1, 1, 1, first_us]
    assert series[("FC2", "x")] == [0, 0, 1, 0, 301_000_000]
    histogram.observe("FC1", 0.7)
    histogram.observe("FC3", 1e9)
    histogram.flush()
    assert series["FC1"] == [4, 1, 1, 1, first_us + 700_000]
    assert series["FC3"] == [1, 0, 0, 1, 300_000 + 10**15]
    histogram.flush()  # nothing observed since: nothing changes
    assert series["FC1"][0] == 4


def test_a_histogram_sum_is_the_same_in_any_order_and_never_overflows() -> None:
    """Floats added in another order differ in their last bits (0.1 + 0.2 + 0.3 is
    not 0.3 + 0.2 + 0.1); whole µs do not. A fraction of a µs rounds half up; an
    absurd value (valid input) counts as 2^52 µs, and however many there are, the
    sum neither wraps nor depends on their order."""
    from flows.runtime.core import Histogram

    values = [0.1, 0.2, 0.3, -1e-6, 123.4567894, 5e-7, 2.5e-7]
    assert 0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1
    sums = []
    for ordered in (values, values[::-1]):
        series: dict[object, list[float]] = {}
        histogram = Histogram(series, (1.0,))
        for value in ordered:
            histogram.observe("p", value)
        histogram.flush()
        sums.append(series["p"][-1])
    assert sums[0] == sums[1] == 100_000 + 200_000 + 300_000 - 1 + 123_456_789 + 1 + 0
    absurd = [1e300] * 5000 + [-5.0, -1e300]  # 5,000 in one flush: spilled as they go
    for ordered in (absurd, absurd[::-1]):
        series = {}
        histogram = Histogram(series, (1.0,))
        for value in ordered:
            histogram.observe("p", value)
        histogram.flush()
        assert series["p"] == [2, 5000, 4999 * (1 << 52) - 5_000_000]


def test_a_shard_has_one_histogram_per_metric() -> None:
    """A metric's histogram asked for twice is the same one: its cells carry the
    series' sums, so a second writer's flush would overwrite the first's."""
    from flows.kpis.orders import CYCLE
    from flows.runtime.core import Shard

    shard = Shard("0", EngineConfig(), LabelCap(1000), FAMILIES)
    first, second = shard.histogram(CYCLE), shard.histogram(CYCLE)
    assert first is second
    first.observe("FC9", 0.5)
    second.observe("FC9", 7.25)
    first.flush()
    assert shard.series(CYCLE)["FC9"][-1] == 7_750_000  # whole µs
    assert sum(shard.series(CYCLE)["FC9"][:-1]) == 2


def test_an_empty_id_is_an_id_like_any_other():
    """The contract asks for string ids and sets no length (README, Checks): an empty
    `event_id` is remembered, and an empty `order_id` is an order that ships."""
    e = Events()
    run = Run().feed(
        e.placed("", at(0), at(600), at(3000), event_id=""),
        e.adjusted(at(1), 5, event_id=""),
        e.shipped("", at(2)),
    )
    run.finish()
    assert run.value("cockpit_events_total", "order.placed") == 1
    assert run.value("cockpit_events_duplicate_total", "inventory.adjusted") == 1
    assert run.value("cockpit_orders_shipped_total", ("FC1", "true")) == 1
