"""The wall display's windowed figures and its bounded memory, on a board whose
counters the test sets, with a clock the test moves."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.cockpit.rules import NETWORK
from flows.exposition import Board
from flows.ledger import Ledger
from flows.metrics import BY_NAME, METRICS
from flows.settings import Settings
from flows.web.api import Api
from flows.web.figures import BY_ID, FIGURES, bucket_quantile, seconds
from flows.web.history import CHECKPOINTS, History
from tests.web import quantile


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def setup() -> tuple[Board, Ledger, Clock, History]:
    board, ledger, clock = Board(), Ledger(METRICS), Clock()
    board.publish("test", ledger)
    board.ready.set()
    return board, ledger, clock, History(board, clock)


def compliance(history: History) -> tuple[float | None, float | None]:
    view = history.view()
    figure = BY_ID["ship_sla_compliance"]
    return figure.source.read(view).value, view.start(figure.source.window)


def test_ratios_count_from_the_samples_an_hour_ago():
    _board, ledger, clock, history = setup()
    shipped, breaches = (
        ledger["cockpit_orders_shipped_total"],
        ledger["cockpit_ship_sla_breaches_total"],
    )
    shipped[("FC1", "true")] = 10
    start = clock.now
    history.sample()
    assert compliance(history) == (1.0, None)  # younger than the window: since the start
    for _ in range(6):  # a sample every 10 minutes
        clock.now += 600
        if clock.now - start == 1800:
            shipped[("FC1", "true")], breaches["FC1"] = 20, 5
        history.sample()
    clock.now = start + 3700
    assert compliance(history) == (10 / 15, start)  # since the checkpoint an hour ago
    clock.now = start + 3600 + 1900
    history.sample()
    assert compliance(history) == (None, start + 1800)  # nothing was due in the last hour


def test_conversion_divides_by_the_clicks_decided_as_conversions_are():
    """Clicks are decided conversion_minutes after they happen: in a run's first
    half hour there is no figure yet, not 0%; then conversions over decided clicks."""
    _board, ledger, clock, history = setup()
    clicked, decided, converted = (
        ledger["cockpit_recommendations_clicked_total"],
        ledger["cockpit_recommendations_decided_total"],
        ledger["cockpit_recommendations_conversions_total"],
    )
    clicked["w1"] = 0
    history.sample()
    clock.now += 600
    clicked["w1"] = 40  # clicked, none decided yet
    figure = BY_ID["conversion"]
    assert figure.source.read(history.view()).value is None
    clock.now += 1800
    decided["w1"], converted["w1"] = 10, 3
    reading = figure.source.read(history.view())
    assert (reading.value, reading.by) == (0.3, {("w1",): 0.3})


def test_quantiles_take_the_bucket_increases_of_the_window():
    _board, ledger, clock, history = setup()
    loads = ledger["cockpit_page_load_seconds"]
    bins = len(BY_NAME["cockpit_page_load_seconds"].buckets) + 1
    loads["home"] = [0.0] * (bins - 1) + [100.0, 9.9e9]  # 100 slow loads (+Inf bucket)
    history.sample()
    assert BY_ID["page_load_p90"].source.read(history.view()).value == 8.0
    clock.now += 400  # past the 5-minute window
    loads["home"] = [100.0] + [0.0] * (bins - 2) + [100.0, 9.9e9]  # 100 fast ones since
    reading = BY_ID["page_load_p90"].source.read(history.view())
    assert reading.value == pytest.approx(0.045)  # 90 % of the way into the first bucket
    assert reading.by == {("home",): reading.value}


def statuses(board: Board, history: History, name: str) -> tuple[str, list[str]]:
    """A figure's status in the API's summary, and those of its rows."""
    summary = Api(board, history, Settings(), {}).answer("summary", "")
    figure = next(f for f in summary["figures"] if f["id"] == name)
    return figure["status"], [row["status"] for row in figure["by"]]


def test_a_figure_whose_alert_fires_per_fc_is_coloured_by_its_worst_fc():
    """40 receipts await stow at each of 3 fcs: 120 in all is over the critical 100,
    yet the rule, per fc, fires nowhere; at 60 in one fc it warns. A ratio per fc
    (no total) is coloured the same way."""
    board, ledger, _clock, history = setup()
    stow, cancelled = ledger["cockpit_receipts_awaiting_stow"], ledger["cockpit_cancellation_ratio"]
    for fc in ("FC1", "FC2", "FC3"):
        stow[fc] = 40
    assert statuses(board, history, "receipts_awaiting_stow") == ("ok", ["ok"] * 3)
    stow["FC2"] = 60
    worst = statuses(board, history, "receipts_awaiting_stow")
    assert worst == ("warning", ["ok", "warning", "ok"])
    assert statuses(board, history, "cancellation_ratio") == ("none", [])
    cancelled["FC1"], cancelled["FC2"] = 0.01, 0.03
    assert statuses(board, history, "cancellation_ratio") == ("critical", ["ok", "critical"])


def test_every_figure_is_coloured_at_the_level_its_alert_fires():
    """A figure with a breakdown has an alert per fc (region): `fc:...` or `by (fc)`;
    one without, a network-wide alert."""
    for figure in FIGURES:
        if figure.alert is not None:
            level = figure.source.labels[0] if figure.source.labels else NETWORK
            value = figure.alert.value
            assert value.startswith(f"{level}:") or f" by ({level}) " in value, figure.id


def test_memory_stays_bounded_however_long_it_runs():
    _board, ledger, clock, history = setup()
    for step in range(8 * 720):  # 8 hours of samples every 5 s: longer than any window
        clock.now += 5
        ledger["cockpit_events_total"]["order.placed"] = step
        history.sample()
    assert len(history.trend) == history.trend.maxlen == 721
    assert all(len(points) <= CHECKPOINTS + 2 for points in history.checkpoints.values())
    assert len(history.points(clock.now - 60)) == 12
    assert history.latest() == {"t": clock.now, "values": history.trend[-1][1]}
    view = history.view()  # every window still reaches back its length, and 5% more at most
    for window in history.checkpoints:
        length = seconds(window)
        start = view.start(window)
        assert start is not None, window
        assert clock.now - length * (1 + 1 / CHECKPOINTS) <= start <= clock.now - length, window


@given(
    counts=st.lists(st.integers(min_value=0, max_value=50), min_size=9, max_size=9),
    q=st.sampled_from([0.5, 0.9, 0.99]),
)
def test_bucket_quantile_is_prometheus_histogram_quantile(counts, q):
    bounds = BY_NAME["cockpit_page_load_seconds"].buckets
    cumulative = [float(sum(counts[: i + 1])) for i in range(len(counts))]
    ours = bucket_quantile(q, bounds, cumulative)
    theirs = quantile(q, list(zip((*bounds, math.inf), cumulative, strict=True)))
    assert ours == theirs or math.isclose(ours or 0, theirs or 0, rel_tol=1e-12)


def test_a_counter_never_counted_is_0_once_events_are_accepted():
    """A counter whose labels are an open set (fc, region) has no series until its
    first increment. Once the job has accepted events, "SLA breaches: no data yet"
    read as broken where the truth is 0; before any event it is no data. A ratio
    with nothing in its divisor stays no data."""
    board, ledger, _clock, history = setup()
    names = ("ship_sla_breaches", "late_delivery_count", "ship_sla_compliance", "late_deliveries")

    def values() -> list[float | None]:
        view = history.view()
        return [BY_ID[name].source.read(view).value for name in names]

    accepted = ledger["cockpit_events_total"]
    assert accepted["order.placed"] == 0  # a series of each event type, from the start
    assert values() == [None] * 4
    accepted["order.placed"] = 3
    assert values() == [0.0, 0.0, None, None]
    ledger["cockpit_ship_sla_breaches_total"]["FC1"] = 2
    reading = BY_ID["ship_sla_breaches"].source.read(history.view())
    assert (reading.value, reading.by) == (2.0, {("FC1",): 2.0})
    summary = Api(board, history, Settings(), {}).answer("summary", "")
    late = next(f for f in summary["figures"] if f["id"] == "late_delivery_count")
    assert (late["value"], late["by"], late["status"]) == (0.0, [], "none")
