"""The conversions family (contract §3.4): a recommendation click converts when a
cart add of the same session and sku follows within conversion_minutes; decided
once W passes that horizon, counted in the click's widget. Values by hand."""

from __future__ import annotations

from fractions import Fraction

from flows.kpisettings import KpiSettings
from flows.settings import EngineConfig
from tests.scenario import Events, Run, at

CONVERSIONS = "cockpit_recommendations_conversions_total"
DECIDED = "cockpit_recommendations_decided_total"


def sessions(run: Run) -> int:
    """Sessions the conversions family holds."""
    return run.value("cockpit_state_entries", "sessions")  # type: ignore[no-any-return]


def test_clicks_convert_within_30_minutes_decided_when_w_passes_them():
    e = Events()
    run = Run().feed(
        e.cart(at(-1), "D"),  # before its click: converts nothing
        e.clicked(at(0), sku="A"),
        e.clicked(at(0), sku="B"),
        e.clicked(at(0), sku="D"),
        e.clicked(at(5), "w2", sku="C"),
        e.clicked(at(10), sku="C"),
        e.cart(at(20), "C"),  # one cart converts both C clicks
        e.cart(at(20), "A", session="s2"),  # another session's
        e.cart(at(30), "A"),  # exactly 30 min after the A click: converts
        e.cart(at(30, ms=1), "B"),  # 30 min and 1 ms after the B click: does not
        e.tick(at(31)),  # W = 08:30: the 08:00 clicks are not decided yet
    )
    assert run.series(CONVERSIONS) == {}
    run.feed(e.tick(at(31, us=1)))  # W passes 08:30
    assert run.series(CONVERSIONS) == {"w1": 1}  # A; B and D touch the series at 0
    assert run.series(DECIDED) == {"w1": 3}  # the conversion ratio's divisor: 1/3
    assert sessions(run) == 1  # s2's cart can serve no click any more: s2 left
    run.feed(
        e.cart(at(40, seconds=30), "E"),
        e.clicked(at(40), "w2", sku="E"),  # earlier than the cart, arrives after it
        e.tick(at(72)),  # W = 09:11
    )
    assert run.series(CONVERSIONS) == {"w1": 2, "w2": 2}
    assert run.series(DECIDED) == {"w1": 4, "w2": 2}
    assert sessions(run) == 0
    run.feed(
        e.cart(at(79), "G"),
        e.cart(at(80), "F"),
        e.tick(at(81)),  # W = 09:20: G's cart can serve no click any more, F's still can
        e.clicked(at(80), "w2", sku="F"),  # at W, not late: the cart's ts, arriving after it
        e.clicked(at(85), "w2", sku="H"),
        e.cart(at(85), "H"),  # the click's ts, arriving after it: converts
        e.tick(at(117)),  # W = 09:56
    )
    assert run.series(CONVERSIONS) == {"w1": 2, "w2": 4}
    assert run.series(DECIDED) == {"w1": 4, "w2": 4}
    assert sessions(run) == 0


def test_conversion_minutes_setting_with_a_horizon_between_microseconds():
    # 1/7 min is 8,571,428.57 µs: a cart 8,571,428 µs after the click converts, one
    # a microsecond later does not; the click is decided once W reaches c + 8,571,429 µs.
    horizon = 8_571_428
    config = EngineConfig(kpi=KpiSettings(conversion_minutes=Fraction(1, 7)))
    e = Events()
    run = Run(config).feed(
        e.clicked(at(0), sku="A"),
        e.clicked(at(0), "w2", sku="B"),
        e.cart(at(0, us=horizon), "A"),
        e.cart(at(0, us=horizon + 1), "B"),
        e.tick(at(1, us=horizon)),  # W = c + 8,571,428 µs
    )
    assert run.series(CONVERSIONS) == {}
    run.feed(e.tick(at(1, us=horizon + 1)))
    assert run.series(CONVERSIONS) == {"w1": 1, "w2": 0}


def test_widget_labels_fold_as_the_storefront_counts_them():
    e = Events()
    run = Run(max_label_values=1).feed(
        e.clicked(at(0), "w1", sku="A"),
        e.clicked(at(0), "w2", sku="A"),  # a second widget: folded into other
        e.cart(at(1), "A"),
        e.tick(at(32)),
    )
    assert run.series(CONVERSIONS) == {"w1": 1, "other": 1}
    assert run.value("cockpit_label_overflow_total", "widget") == 1  # once, by the storefront


def test_a_cart_that_came_first_converts_a_click_up_to_the_horizon_of_its_sku():
    """conversion_minutes 1/2 (30 s): carts at 08:00:30 (sku A) and 08:00:30.000001
    (sku C), then clicks at 08:00 arriving after them (W = 07:59:30, not late).
    A's cart is exactly 30 s after its click: converts; C's is 1 µs beyond: does
    not; B has no cart of its sku (a cart of another sku converts nothing)."""
    config = EngineConfig(kpi=KpiSettings(conversion_minutes=Fraction(1, 2)))
    e = Events()
    run = Run(config).feed(
        e.cart(at(0, seconds=30), "A"),
        e.cart(at(0, seconds=30, us=1), "C"),
        e.clicked(at(0), sku="A"),
        e.clicked(at(0), "w2", sku="B"),
        e.clicked(at(0), "w3", sku="C"),
        e.tick(at(3)),
    )
    assert run.series(CONVERSIONS) == {"w1": 1, "w2": 0, "w3": 0}
    assert run.series(DECIDED) == {"w1": 1, "w2": 1, "w3": 1}


def test_a_click_restored_from_a_snapshot_keeps_its_conversion():
    """The cart converts the click before the snapshot; decided after the restore."""
    e = Events()
    run = Run().feed(e.clicked(at(0), sku="A"), e.cart(at(5), "A"))
    run = run.restored().feed(e.tick(at(32)))
    assert run.series(CONVERSIONS) == {"w1": 1}
