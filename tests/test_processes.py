"""`wait_for` itself: progress pushes its deadline out, a stall fails it after the
timeout, and a livelock that keeps changing its progress fails at the hard cap."""

from __future__ import annotations

import itertools
import time

import pytest

from tests.processes import HARD_CAP, WaitFailed, wait_for

EVERY = 0.01


def test_a_condition_already_true_returns_its_value_without_waiting() -> None:
    started = time.monotonic()
    assert wait_for(lambda: "done", 0.2, "x", progress=lambda: 0) == "done"
    assert time.monotonic() - started < 0.1


def test_progress_pushes_the_deadline_out() -> None:
    """Each poll sees progress: the wait outlasts its timeout three times over."""
    counter = itertools.count()
    started = time.monotonic()

    def done() -> float | None:
        elapsed = time.monotonic() - started
        return elapsed if elapsed > 0.6 else None

    waited = wait_for(done, 0.2, "x", every=EVERY, progress=lambda: next(counter))
    assert waited is not None and waited > 0.6


def test_no_progress_fails_after_the_timeout_since_the_last_change() -> None:
    """Progress for 0.3 s, then none: the failure comes 0.2 s after the last change,
    naming what it waited for and the last progress seen."""
    started = time.monotonic()

    def progress() -> int:
        return min(int((time.monotonic() - started) * 100), 30)  # 0..30, then stuck

    with pytest.raises(WaitFailed) as failed:
        wait_for(lambda: False, 0.2, "the thing", every=EVERY, progress=progress)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 0.2 * HARD_CAP
    assert str(failed.value) == "no progress for 0.2s waiting for the thing (last progress: 30)"


def test_a_livelock_fails_at_the_hard_cap() -> None:
    counter = itertools.count()
    started = time.monotonic()
    with pytest.raises(WaitFailed, match=r"^hard cap of 0\.5s reached waiting for the thing"):
        wait_for(lambda: False, 0.05, "the thing", every=EVERY, progress=lambda: next(counter))
    assert time.monotonic() - started >= 0.05 * HARD_CAP


def test_without_progress_the_timeout_is_fixed() -> None:
    started = time.monotonic()
    with pytest.raises(WaitFailed, match=r"^timed out after 0\.1s waiting for the thing$"):
        wait_for(lambda: False, 0.1, "the thing", every=EVERY)
    assert 0.1 <= time.monotonic() - started < 0.5


def test_a_failed_wait_is_an_assertion_error() -> None:
    """Callers and pytest's report treat it as a failed check, as before."""
    assert issubclass(WaitFailed, AssertionError)
