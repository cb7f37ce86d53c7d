"""The storefront family (contract §3.4, §4): page loads per page and search
latency as histograms, zero-result searches, cart units, and recommendation
impressions and clicks per widget, each counted as its event is accepted (no
wait for W). Values by hand.

A histogram's series, as the ledger keeps it: a count per bucket (not
cumulated; `le`, so a value equal to a bound is in that bound's bucket), the
+Inf count, then the sum in whole µs, each observation rounded half up (README,
Semantics: Time). Buckets 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8 s."""

from __future__ import annotations

from typing import Any

from tests.scenario import Events, Run, at

PAGE_LOAD = "cockpit_page_load_seconds"
SEARCH = "cockpit_search_latency_seconds"
ZERO_RESULTS = "cockpit_searches_zero_results_total"
CART_UNITS = "cockpit_cart_units_added_total"
SHOWN = "cockpit_recommendations_shown_total"
CLICKED = "cockpit_recommendations_clicked_total"
OVERFLOW = "cockpit_label_overflow_total"
BUCKETS = 8  # 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8 s; index 8 is +Inf


def histogram(observations: list[tuple[int, int]]) -> list[int]:
    """The series of (bucket index, whole µs) observations, by hand."""
    counts = [0] * (BUCKETS + 2)
    for bucket, whole_us in observations:
        counts[bucket] += 1
        counts[-1] += whole_us
    return counts


def page(e: Events, ts: str, name: str, load_ms: float, event_id: str | None = None) -> bytes:
    return e("page.viewed", ts, event_id, session_id="s1", page=name, load_ms=load_ms)


def search(
    e: Events, ts: str, latency_ms: float, results: Any, event_id: str | None = None
) -> bytes:
    return e(
        "search.performed",
        ts,
        event_id,
        session_id="s1",
        query="boots",
        results=results,
        latency_ms=latency_ms,
    )


def cart(e: Events, ts: str, qty: Any, event_id: str | None = None, sku: str = "S1") -> bytes:
    return e("cart.added", ts, event_id, session_id="s1", sku=sku, qty=qty)


# (load_ms, bucket index, µs added to the sum)
PAGE_LOADS = [
    (0, 0, 0),
    (50, 0, 50_000),  # exactly 0.05 s: in le=0.05
    (50.001, 1, 50_001),
    (100, 1, 100_000),
    (100.5, 2, 100_500),
    (250, 2, 250_000),
    (500, 3, 500_000),
    (1000, 4, 1_000_000),
    (1000.001, 5, 1_000_001),
    (2000, 5, 2_000_000),
    (4000, 6, 4_000_000),
    (8000, 7, 8_000_000),
    (8000.001, 8, 8_000_001),  # beyond 8 s: +Inf only
    (60_000, 8, 60_000_000),
]


def test_page_loads_fall_in_their_le_buckets_per_page_and_sum_whole_microseconds():
    e = Events()
    run = Run().feed(*(page(e, at(1), "product", ms) for ms, _bucket, _us in PAGE_LOADS))
    # Beyond three decimals a page load rounds to the µs, half up; all in le=0.05.
    run.feed(
        page(e, at(2), "cart", 12.3456),  # 12,345.6 µs: 12,346
        page(e, at(2), "cart", 12.3454),  # 12,345.4 µs: 12,345
        page(e, at(2), "cart", 0.0004),  # 0.4 µs: 0
        page(e, at(2), "cart", 0.0006),  # 0.6 µs: 1
    )
    product = run.value(PAGE_LOAD, "product")
    assert product == histogram([(bucket, us) for _ms, bucket, us in PAGE_LOADS])
    assert product == [2, 2, 2, 1, 1, 2, 1, 1, 2, 85_050_503]
    assert run.value(PAGE_LOAD, "cart") == [4, 0, 0, 0, 0, 0, 0, 0, 0, 12_346 + 12_345 + 0 + 1]
    assert set(run.series(PAGE_LOAD)) == {"product", "cart"}
    assert run.value(SEARCH) == 0  # no search: no series


def test_search_latency_and_zero_result_searches():
    e = Events()
    run = Run().feed(
        search(e, at(1), 40, 0),  # le=0.05, zero results
        search(e, at(1), 100, 3),  # exactly 0.1 s: le=0.1
        search(e, at(1), 100.0004, 0),  # 100,000.4 µs: le=0.25, sums 100,000
        search(e, at(1), 3000, 12),  # le=4
        search(e, at(1), 9000, 0),  # +Inf
        search(e, at(1), 20, 0.0),  # 0.0 is the integer 0 (README): zero results
    )
    assert run.value(SEARCH) == histogram(
        [(0, 40_000), (1, 100_000), (2, 100_000), (6, 3_000_000), (8, 9_000_000), (0, 20_000)]
    )
    assert run.value(SEARCH) == [2, 1, 1, 0, 0, 0, 1, 0, 1, 12_260_000]
    assert run.value(ZERO_RESULTS) == 4
    assert run.value(PAGE_LOAD, "search") == 0  # a search is no page load


def test_cart_units_add_each_events_qty():
    e = Events()
    run = Run().feed(cart(e, at(1), 1), cart(e, at(2), 3, sku="S2"), cart(e, at(3), 5))
    assert run.value(CART_UNITS) == 9
    run.feed(cart(e, at(4), 2.0))  # a zero fraction counts as an integer
    assert run.value(CART_UNITS) == 11


def test_impressions_and_clicks_per_widget():
    """Clicks count whether or not their widget showed anything: the two counters
    are independent (click-through is their ratio, per closed window)."""
    e = Events()
    run = Run().feed(
        e.shown(at(1), "w1"),
        e.shown(at(1), "w1", sku="S2"),
        e.shown(at(2), "w1", session="s2"),
        e.shown(at(2), "w2"),
        e.clicked(at(3), "w1"),
        e.clicked(at(3), "w2"),
        e.clicked(at(4), "w2", session="s2"),
        e.clicked(at(4), "w3"),  # never shown
    )
    assert run.series(SHOWN) == {"w1": 3, "w2": 1}
    assert run.series(CLICKED) == {"w1": 1, "w2": 2, "w3": 1}
    assert run.value(OVERFLOW, "widget") == 0


def test_widget_and_page_labels_fold_into_other_beyond_the_cap():
    """A cap of 2 per label: the first two widgets (pages) used keep their series;
    each later use of a third value, or of the literal value `other` once the cap is
    full, shows as `other` and counts once as folded. Impressions and clicks share
    the widget label's cap."""
    e = Events()
    run = Run(max_label_values=2).feed(
        e.shown(at(1), "w1"),
        e.shown(at(1), "w2"),
        e.shown(at(1), "w3"),  # folded (1)
        e.shown(at(1), "other"),  # folded (2): the literal value, the cap full
        e.shown(at(1), "w1"),
        e.clicked(at(2), "w3"),  # folded (3)
        e.clicked(at(2), "w2"),
        e.clicked(at(2), "w4"),  # folded (4)
        page(e, at(3), "home", 60),  # le=0.1
        page(e, at(3), "search", 300),  # le=0.5
        page(e, at(3), "deals", 20),  # folded (page 1), le=0.05
        page(e, at(3), "account", 5000),  # folded (page 2), le=8
    )
    assert run.series(SHOWN) == {"w1": 2, "w2": 1, "other": 2}
    assert run.series(CLICKED) == {"w2": 1, "other": 2}
    assert run.value(OVERFLOW, "widget") == 4
    assert run.series(PAGE_LOAD) == {
        "home": histogram([(1, 60_000)]),
        "search": histogram([(3, 300_000)]),
        "other": histogram([(0, 20_000), (7, 5_000_000)]),
    }
    assert run.value(OVERFLOW, "page") == 2


def test_a_widget_longer_than_256_characters_folds_whatever_the_cap():
    e = Events()
    run = Run().feed(
        e.shown(at(1), "w" * 256),  # 256: kept
        e.shown(at(1), "w" * 257),  # 257: folded (1)
        e.clicked(at(2), "w" * 257),  # folded (2)
    )
    assert run.series(SHOWN) == {"w" * 256: 1, "other": 1}
    assert run.series(CLICKED) == {"other": 1}
    assert run.value(OVERFLOW, "widget") == 2


def test_late_and_duplicate_events_count_nothing():
    """W = 08:10 - 60 s = 08:09 after the first batch. A repeated event_id is a
    duplicate, whatever its ts and fields; an event with ts < W is late, one at
    W is not. The id of a late event is remembered too: sent again in time, it is
    a duplicate."""
    e = Events()
    run = Run().feed(
        page(e, at(10), "product", 100, "p1"),  # le=0.1
        search(e, at(10), 40, 0, "q1"),  # le=0.05
        cart(e, at(10), 2, "c1"),
        e("recommendation.shown", at(10), "r1", session_id="s1", widget="w1", sku="S1"),
        e("recommendation.clicked", at(10), "k1", session_id="s1", widget="w1", sku="S1"),
    )
    run.feed(
        # duplicates, in time, with other values
        page(e, at(10), "product", 7000, "p1"),
        search(e, at(10), 9000, 0, "q1"),
        cart(e, at(10), 50, "c1"),
        e("recommendation.shown", at(10), "r1", session_id="s1", widget="w2", sku="S1"),
        e("recommendation.clicked", at(10), "k1", session_id="s1", widget="w2", sku="S1"),
        # late: ts < W (a µs before it, then a minute before)
        page(e, at(9, us=-1), "product", 3000, "late-p"),
        search(e, at(8), 3000, 0),
        cart(e, at(8), 7),
        e.shown(at(8), "w3"),
        e.clicked(at(8), "w3"),
        # at W: accepted
        page(e, at(9), "product", 200),  # le=0.25
    )
    run.feed(page(e, at(10), "product", 400, "late-p"))  # the late event's id again
    assert run.value(PAGE_LOAD, "product") == histogram([(1, 100_000), (2, 200_000)])
    assert run.value(SEARCH) == histogram([(0, 40_000)])
    assert run.value(ZERO_RESULTS) == 1
    assert run.value(CART_UNITS) == 2
    assert run.series(SHOWN) == {"w1": 1}
    assert run.series(CLICKED) == {"w1": 1}
    duplicates = {
        "page.viewed": 2,
        "search.performed": 1,
        "cart.added": 1,
        "recommendation.shown": 1,
        "recommendation.clicked": 1,
    }
    for kind, count in duplicates.items():
        assert run.value("cockpit_events_duplicate_total", kind) == count, kind
        assert run.value("cockpit_events_late_total", kind) == 1, kind
