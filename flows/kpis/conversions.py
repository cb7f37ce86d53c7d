# cython: language_level=3
"""Recommendation conversions (contract §3.4), per widget of the click.

A click (session, sku, widget, ts c) converts when an accepted `cart.added` of
the same session and sku has ts in [c, c + conversion_minutes]; one cart can
convert several clicks. A click is decided, and counted once in its widget,
when W passes c + conversion_minutes: every cart that could convert it has
arrived by then. A session's events are on one shard (keyed by session id).

A session holds its undecided clicks (a cart arriving marks those it converts)
and the carts a click yet to arrive could use: such a click has c >= W, so a
cart at t serves only while W <= t. A session holding neither leaves state.
"""

from __future__ import annotations

import math
from typing import Any

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, metric
from flows.timeutil import US_PER_SECOND

if cython.compiled:
    from cython.cimports.flows.runtime import core
else:
    from flows.runtime import core

CONVERSIONS = metric(
    "cockpit_recommendations_conversions_total",
    COUNTER,
    "Recommendation clicks followed by a cart add of the same sku in the same session "
    "within conversion_minutes.",
    ("widget",),
    group="customer",
    contract=True,
)

DECIDED = metric(
    "cockpit_recommendations_decided_total",
    COUNTER,
    "Recommendation clicks decided, converted or not (W passed their conversion_minutes): "
    "the conversion ratio's divisor, counted when its numerator is.",
    ("widget",),
    group="customer",
)

T_DECIDE = cython.declare(cython.longlong, 0)  # W passed a click's conversion horizon
T_CART = cython.declare(cython.longlong, 1)  # W passed a cart: no click to come can use it


@cython.final
@cython.no_gc  # an int, two strings and a flag
@cython.cclass
class Click:
    """An undecided recommendation click."""

    ts: cython.longlong
    sku: str
    widget: str  # as the metric shows it (capped)
    converted: cython.bint

    def __init__(self, ts: int, sku: str, widget: str, converted: bool = False) -> None:
        self.ts, self.sku, self.widget, self.converted = ts, sku, widget, converted

    def __reduce__(self) -> Any:
        return (restore_click, (self.ts, self.sku, self.widget, self.converted))


def restore_click(ts: int, sku: str, widget: str, converted: bool) -> Click:
    """A click from its fields (snapshots; both builds read the same pickle)."""
    return Click(ts, sku, widget, converted)


@cython.final
@cython.cclass
class Session:
    """What a session holds: undecided clicks, and carts at or after W."""

    clicks: list  # type: ignore[type-arg]
    carts: list  # type: ignore[type-arg]

    def __init__(self, clicks: list[Click] | None = None, carts: list[Any] | None = None) -> None:
        self.clicks = clicks or []
        self.carts = carts or []  # (ts, sku)

    def __reduce__(self) -> Any:
        return (restore_session, (self.clicks, self.carts))


def restore_session(clicks: list[Click], carts: list[Any]) -> Session:
    """A session from its fields (snapshots; both builds read the same pickle)."""
    return Session(clicks, carts)


@cython.cclass
class Conversions(core.Family):
    """Clicks waiting for their decision, and the carts that may convert them."""

    NAME = "conversions"
    KINDS = ("recommendation.clicked", "cart.added")
    METRICS = (CONVERSIONS, DECIDED)

    sessions: dict  # type: ignore[type-arg]
    horizon: cython.longlong
    widgets: dict  # type: ignore[type-arg]
    conversions: core.Counts
    decided: core.Counts

    def __init__(self) -> None:
        self.sessions = {}  # session id -> Session

    def attach(self) -> None:
        context = self.context
        # Times are whole µs, so t - c <= minutes exactly when t - c <= its floor.
        self.horizon = math.floor(context.config.kpi.conversion_minutes * 60 * US_PER_SECOND)
        self.widgets = context.known_values("widget")
        self.conversions, self.decided = context.counts(CONVERSIONS), context.counts(DECIDED)

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        session_id = event.session_id
        session: Session | None = self.sessions.get(session_id)
        if session is None:
            session = self.sessions[session_id] = Session()
        sku: str = event.sku
        click: Click
        if kind == "cart.added":
            for click in session.clicks:
                if click.sku == sku and click.ts <= ts <= click.ts + self.horizon:
                    click.converted = True
            session.carts.append((ts, sku))
            self.after(ts, T_CART, session_id)
            return
        # The storefront family counts this event's use of its widget label.
        widget = self.widgets.get(event.widget) or self.context.labels.fold("widget", event.widget)
        click = Click(ts, sku, widget)
        for cart_ts, cart_sku in session.carts:
            if cart_sku == sku and ts <= cart_ts <= ts + self.horizon:
                click.converted = True
                break
        session.clicks.append(click)
        self.after(ts + self.horizon, T_DECIDE, session_id, click)

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        session: Session | None = self.sessions.get(key)
        if session is None:
            return
        click: Click
        if tag == T_DECIDE:
            click = ref
            session.clicks.remove(click)
            # A click not converted touches its widget's series too, at 0.
            self.conversions.add(click.widget, 1 if click.converted else 0)
            self.decided.add(click.widget)
        else:
            watermark: cython.longlong = self.context.watermark
            session.carts = [cart for cart in session.carts if cart[0] >= watermark]
        if not session.clicks and not session.carts:
            del self.sessions[key]

    def entries(self, into: dict[str, int]) -> None:
        into["sessions"] = len(self.sessions)

    def export_state(self) -> Any:
        return self.sessions

    def restore_state(self, state: Any) -> None:
        self.sessions = state
