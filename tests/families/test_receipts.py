"""The receipts family (contract §3.1): dock-to-stock and the stow backlog."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flows.settings import EngineConfig
from tests.scenario import Events, Run, at


@pytest.mark.parametrize(
    ("stows", "completed_s"),
    [
        ([(20, 4), (50, 6)], 50),  # partial stows reaching the received quantity
        ([(50, 6), (20, 4)], 50),  # arriving out of order, within the lateness
        ([(20, 4), (30, 7)], 30),  # over-stow
        ([(60, 10), (20, 10)], 20),  # an earlier stow alone completes it
        ([(20, 3), (30, 3), (40, 4)], 40),
    ],
)
def test_dock_to_stock(stows, completed_s):
    e = Events()
    lines = [e.received("R1", at(0), 10)] + [e.stowed("R1", at(seconds=s), q) for s, q in stows]
    run = Run().feed(*lines).finish()
    counts = run.value("cockpit_dock_to_stock_seconds", "FC1")
    assert counts[-1] == completed_s * 10**6  # the sum of observations, in whole µs
    assert sum(counts[:-1]) == 1
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0


def test_receipt_awaits_stow_until_complete_and_is_observed_once_final():
    e = Events()
    run = Run().feed(e.received("R1", at(0), 10), e.stowed("R1", at(5), 4))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 1
    run.feed(e.stowed("R1", at(20), 6))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    assert run.value("cockpit_dock_to_stock_seconds", "FC1") == 0  # W = 19:00 < 20:00
    run.feed(e.tick(at(21)))
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == 1200 * 10**6
    # Stows received before the dock scan wait for it.
    run.feed(e.stowed("R2", at(22), 5), e.received("R2", at(21, seconds=30), 5), e.tick(at(30)))
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == (1200 + 30) * 10**6


def test_a_receipt_id_used_again_is_kept_for_its_own_retention_not_the_first_ones():
    """R1 completes at 00:30 and leaves state; R1 received again at 01:00 is a new
    receipt, dropped by a 2 h retention at 03:00, not at the first one's 02:00:
    its stow at 02:30 completes it."""
    e = Events()
    run = Run(replace(EngineConfig(), retention=2 * 3600 * 10**6))
    run.feed(e.received("R1", at(0), 5), e.stowed("R1", at(30), 5), e.tick(at(31)))
    run.feed(e.received("R1", at(60), 5), e.tick(at(121)), e.stowed("R1", at(150), 5))
    run.feed(e.tick(at(200))).finish()
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == (1800 + 5400) * 10**6
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    assert not any(run.series("cockpit_state_expired_total").values())


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_a_receipt_completed_by_stows_that_came_first_is_the_same_in_any_batches(batch):
    """Stows of 10 before their receipt: the receipt completes at once (W is past the
    stow). A later stow of 1 and a second receipt of the id then find it gone, in a
    batch of one as in one batch of all four."""
    e = Events()
    lines = [
        e.stowed("R4", at(0), 10),
        e.received("R4", at(5), 10),
        e.stowed("R4", at(seconds=4 * 60 + 30), 1),
        e.received("R4", at(60), 1),
    ]
    run = Run()
    for start in range(0, len(lines), batch):
        run.feed(*lines[start : start + batch])
    run.finish()
    dock_to_stock = run.value("cockpit_dock_to_stock_seconds", "FC1")
    assert dock_to_stock[-1] == (-5 * 60 - 60 * 60 + 270) * 10**6
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0


@pytest.mark.parametrize("earlier_first", [True, False])
def test_each_held_stow_is_dropped_at_its_own_horizon_in_any_arrival_order(earlier_first):
    """Two stows of a receipt not received yet, 6 µs apart, in either order (both
    within the lateness): once W passes the earlier one's ts + 24 h it is dropped,
    whichever came first; the later one waits for its receipt."""
    e = Events()
    early, late = e.stowed("RX", at(600, us=-3), 2), e.stowed("RX", at(600, us=3), 1)
    run = Run(replace(EngineConfig(), lateness=300 * 10**6))
    run.feed(*((early, late) if earlier_first else (late, early)))
    run.feed(e.tick(at(605, days=1)), e.received("RX", at(600, days=1), 3)).finish()
    assert run.value("cockpit_orphan_events_total", "inventory.stowed") == 1
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 1


def test_a_receipt_completed_after_its_retention_deadline_is_not_expired() -> None:
    """R1 is received at 08:00 with a 1 h retention; its stow at 09:00:30, within
    the lateness, completes it (no longer awaiting) before W passes 09:00. The
    retention only drops a receipt still awaiting stow: R1 is observed once,
    3630 s, when W reaches its stow, the gauge never goes below 0."""
    e = Events()
    run = Run(replace(EngineConfig(), retention=3600 * 10**6))
    run.feed(e.received("R1", at(0), 5), e.stowed("R1", at(60, seconds=30), 5))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0  # W = 08:59:30
    run.feed(e.tick(at(62)))  # W = 09:01: the retention deadline, then the stow
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    counts = run.value("cockpit_dock_to_stock_seconds", "FC1")
    assert sum(counts[:-1]) == 1 and counts[-1] == 3630 * 10**6
    assert not any(run.series("cockpit_state_expired_total").values())


def test_a_receipt_is_kept_while_w_is_at_its_retention_deadline() -> None:
    """R1 completes at 00:10 and leaves state; R1 received again at 00:30 has, with a
    1 h retention, the deadline 01:30. The first one's timer fires as W reaches
    01:30 exactly: a deadline has passed only once W is past it (contract §2), so a
    stow at 01:30, which may still come, completes the new receipt."""
    e = Events()
    run = Run(replace(EngineConfig(), retention=3600 * 10**6))
    run.feed(e.received("R1", at(0), 5), e.stowed("R1", at(10), 5), e.tick(at(11)))
    run.feed(e.received("R1", at(30), 5), e.tick(at(91)))  # W = 01:30
    run.feed(e.stowed("R1", at(90), 5), e.tick(at(100))).finish()
    assert run.value("cockpit_dock_to_stock_seconds", "FC1")[-1] == (600 + 3600) * 10**6
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    assert not any(run.series("cockpit_state_expired_total").values())


def test_a_second_dock_scan_of_a_receipt_counts_only_its_units_received() -> None:
    """R1 (10 units) is scanned again at 08:05 with 5: the first scan defines the
    receipt, so its stow of 10 at 08:20 completes it, 1200 s after 08:00; both
    scans count in the units received."""
    e = Events()
    run = Run().feed(
        e.received("R1", at(0), 10),
        e.received("R1", at(5), 5),
        e.stowed("R1", at(20), 10),
        e.tick(at(21)),
    )
    counts = run.value("cockpit_dock_to_stock_seconds", "FC1")
    assert sum(counts[:-1]) == 1 and counts[-1] == 1200 * 10**6
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    assert run.value("cockpit_units_received_total", "FC1") == 15


def test_the_retention_drops_a_receipt_still_awaiting_stow() -> None:
    """R1 is received at 08:00 and only partly stowed; with a 1 h retention it
    leaves state once W passes 09:00: no longer awaiting stow, counted expired."""
    e = Events()
    run = Run(replace(EngineConfig(), retention=3600 * 10**6))
    run.feed(e.received("R1", at(0), 5), e.stowed("R1", at(10), 2), e.tick(at(61)))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 1  # W = 09:00
    run.feed(e.tick(at(61, us=1)))
    assert run.value("cockpit_receipts_awaiting_stow", "FC1") == 0
    assert run.value("cockpit_state_expired_total", "receipt") == 1
    assert run.value("cockpit_state_entries", "receipts") == 0


def test_stows_of_a_receipt_never_received_leave_state_at_their_horizon() -> None:
    e = Events()
    run = Run().feed(e.stowed("RX", at(0), 2), e.tick(at(1)))
    assert run.value("cockpit_state_entries", "receipts") == 1
    run.feed(e.tick(at(1, days=1, us=1)))  # W passes 08:00 + 24 h
    assert run.value("cockpit_orphan_events_total", "inventory.stowed") == 1
    assert run.value("cockpit_state_entries", "receipts") == 0
