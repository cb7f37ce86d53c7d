"""The wall display's windowed figures and its bounded memory, on a board whose
counters the test sets, with a clock the test moves."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.exposition import Board
from flows.ledger import Ledger
from flows.metrics import BY_NAME, METRICS
from flows.web.figures import BY_ID, bucket_quantile
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
