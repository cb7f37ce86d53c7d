"""The stock family (contract §3.1): on hand, and sell-through and cover per window
through the combine stage."""

from __future__ import annotations

import pytest

from tests.scenario import Events, Run, at


def test_on_hand_and_sell_through_over_windows():
    e = Events()
    lines = [
        e.adjusted(at(0), 100),  # window 08:00
        e.stowed("R1", at(10), 20),
        e.placed("O1", at(20), at(600), at(3000), qty=12),
        e.picked("O1", at(30), 12),
        e.placed("O2", at(70), at(600), at(3000), qty=9),  # window 09:00
        e.stowed("R2", at(80), 10),
        e.adjusted(at(90), -3),
        e.tick(at(185)),  # closes 10:00; the 10:00 window stays quiet
    ]
    run = Run().feed(*lines)
    kpis = {(r["kpi"], r["window_start"]): r for r in run.records("kpi")}
    first = kpis[("sell_through", at(0))]
    assert (first["numerator"], first["divisor"]) == (12, 0 + 20)  # nothing before 08:00
    second = kpis[("sell_through", at(60))]
    assert (second["numerator"], second["divisor"]) == (9, 108 + 10)
    assert second["value"] == pytest.approx(9 / 118)
    quiet = kpis[("sell_through", at(120))]  # no event in any fc: 0 of its stock sold
    assert (quiet["numerator"], quiet["divisor"], quiet["value"]) == (0, 115, 0.0)
    assert ("days_of_cover", at(120)) not in kpis  # nothing ordered
    assert run.value("cockpit_sell_through_ratio", "FC1") == 0.0  # latest closed is quiet
    assert run.value("cockpit_units_on_hand", "FC1") == 100 + 20 - 12 + 10 - 3
    cover = kpis[("days_of_cover", at(60))]
    assert cover["value"] == pytest.approx((108 + 10 - 3) / (9 * 24))


def test_sell_through_is_not_set_when_the_divisor_is_zero():
    e = Events()
    run = Run().feed(e.placed("O1", at(0), at(600), at(3000), qty=2), e.tick(at(61)))
    assert "FC1" not in run.combine.ledger.series["cockpit_sell_through_ratio"]
    ours = [r["kpi"] for r in run.records("kpi") if r["kpi"] in {"sell_through", "days_of_cover"}]
    assert ours == ["days_of_cover"]


def test_fcs_beyond_the_label_cap_fold_into_other_and_each_event_counts_the_fold():
    e = Events()
    run = Run(max_label_values=1).feed(
        e.stowed("R1", at(0), 20, fc="FC1"),
        e.stowed("R2", at(1), 7, fc="FC2"),  # a second fc: folded into other
        e.picked("O1", at(2), 3, fc="FC3"),  # a third: folded too
        e.adjusted(at(3), -2, fc="FC2"),
        e.adjusted(at(4), 5, fc="FC1"),
        e.picked("O2", at(5), 4, fc="FC1"),
    )
    assert run.value("cockpit_units_on_hand", "FC1") == 20 + 5 - 4
    assert run.value("cockpit_units_on_hand", "other") == 7 - 3 - 2
    assert run.value("cockpit_units_stowed_total", "other") == 7
    assert run.value("cockpit_units_picked_total", "other") == 3
    assert run.value("cockpit_units_adjusted_total", ("other", "down")) == 2
    assert run.value("cockpit_units_adjusted_total", ("FC1", "up")) == 5
    # every family reading an event's fc counts its fold (stock, inventory health
    # per shard event: here the stock family alone asks for the label of stock events)
    assert run.value("cockpit_label_overflow_total", "fc") == 3


def test_sell_through_of_a_negative_divisor_is_set_and_of_a_zero_one_is_not():
    """§3.1: not set only when the divisor is 0. FC1 has -10 on hand at 09:00 and
    orders 2 in [09:00, 10:00): -0.2. FC2 stows 5 and picks 5 in [08:00, 09:00),
    then has 0 on hand: no gauge at the close of 10:00, nor at that of 11:00,
    after a window without a stock event anywhere (FC1's quiet window: 0)."""
    e = Events()
    run = Run().feed(
        e.adjusted(at(10), -10),
        e.stowed("R1", at(10), 5, fc="FC2"),
        e.picked("X1", at(20), 5, fc="FC2"),
        e.placed("O1", at(70), at(600), at(3000), qty=2),
        e.tick(at(121)),  # closes 10:00
    )
    kpis = {(r["kpi"], r["fc"], r["window_start"]): r for r in run.records("kpi")}
    record = kpis[("sell_through", "FC1", at(60))]
    assert (record["numerator"], record["divisor"], record["value"]) == (2, -10, -0.2)
    assert run.combine.ledger.series["cockpit_sell_through_ratio"] == {"FC1": -0.2}
    run.feed(e.tick(at(185)))  # closes 11:00
    assert run.combine.ledger.series["cockpit_sell_through_ratio"] == {"FC1": 0.0}
    quiet = [r for r in run.records("kpi") if r["window_start"] == at(120)]
    assert [(r["kpi"], r["fc"], r["divisor"], r["value"]) for r in quiet] == [
        ("sell_through", "FC1", -10, 0.0)  # 0.0, not -0.0; FC2 holds 0: not set
    ]
    assert str(quiet[0]["value"]) == "0.0"


def test_units_ordered_count_in_the_fc_label_the_stock_events_fold_into():
    """A cap of 1: FC2 folds into `other`, for its order's units as for its stows,
    so its sell-through is 4 / 10, with no record of FC2 itself."""
    e = Events()
    run = Run(max_label_values=1).feed(
        e.stowed("R1", at(0), 10, fc="FC1"),
        e.stowed("R2", at(0), 10, fc="FC2"),
        e.placed("O1", at(10), at(600), at(3000), fc="FC2", qty=4),
        e.tick(at(61)),
    )
    ratios = {(r["kpi"], r["fc"]): r["value"] for r in run.records("kpi")}
    assert ratios[("sell_through", "other")] == 4 / 10
    assert ratios[("sell_through", "FC1")] == 0.0
    assert {fc for _kpi, fc in ratios} == {"FC1", "other"}
