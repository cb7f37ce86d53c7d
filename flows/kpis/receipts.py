# cython: language_level=3
"""Receipts and dock-to-stock (contract §3.1), per fc of the receipt.

A receipt exists from its first accepted `inventory.received` (qty R, ts t0).
It completes at the smallest stow ts t at which the stowed quantity with ts <= t
reaches R (stows may be partial and arrive in any order); dock-to-stock t - t0
is observed once W >= t, when no earlier stow can arrive. Stows of a receipt
not received yet are held until the horizon, like order events.
"""

from __future__ import annotations

from typing import Any

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, DOCK_TO_STOCK_BUCKETS, GAUGE, HISTOGRAM, metric
from flows.entities import ENTITY_METRICS, ORPHAN_EVENTS, STATE_EXPIRED
from flows.timeutil import US_PER_SECOND

if cython.compiled:
    from cython.cimports.flows.runtime import core
else:
    from flows.runtime import core

DOCK_TO_STOCK = metric(
    "cockpit_dock_to_stock_seconds",
    HISTOGRAM,
    "Time from dock receipt to the stow that completes the receipt.",
    ("fc",),
    unit="s",
    buckets=DOCK_TO_STOCK_BUCKETS,
    group="inventory",
    contract=True,
)
AWAITING_STOW = metric(
    "cockpit_receipts_awaiting_stow",
    GAUGE,
    "Receipts received and not fully stowed.",
    ("fc",),
    group="inventory",
    contract=True,
)
UNITS_RECEIVED = metric(
    "cockpit_units_received_total",
    COUNTER,
    "Units scanned at inbound docks.",
    ("fc",),
    group="inventory",
)

T_COMPLETE = cython.declare(cython.longlong, 0)
T_ORPHAN = cython.declare(cython.longlong, 1)
T_RETENTION = cython.declare(cython.longlong, 2)
FIELDS = ("fc", "received", "qty", "stowed", "stows", "awaiting")


@cython.no_gc  # strings, ints and a list of int pairs: never in a cycle
@cython.cclass
class Receipt:
    """One inbound receipt: its dock scan (NEVER until scanned) and its stows."""

    fc: str
    received: cython.longlong
    qty: cython.longlong
    stowed: cython.longlong
    stows: list  # type: ignore[type-arg]
    awaiting: cython.bint

    def __init__(self) -> None:
        self.fc = ""
        self.received = core.NEVER
        self.qty = self.stowed = 0
        self.stows = []  # (ts, qty)
        self.awaiting = False

    def completed_at(self) -> int:
        """ts of the stow that brings the stowed quantity to the received quantity."""
        total = 0
        for ts, qty in sorted(self.stows):
            total += qty
            if total >= self.qty:
                return int(ts)
        raise AssertionError("receipt is not complete")

    def __reduce__(self) -> Any:
        return (restore_receipt, tuple(getattr(self, name) for name in FIELDS))


def restore_receipt(*values: Any) -> Receipt:
    """A receipt from its FIELDS (snapshots; both builds read the same pickle)."""
    receipt = Receipt()
    for name, value in zip(FIELDS, values, strict=True):
        setattr(receipt, name, value)
    return receipt


@cython.cclass
class Receipts(core.Family):
    """Dock-to-stock, the stow backlog and units received."""

    NAME = "receipts"
    KINDS = ("inventory.received", "inventory.stowed")
    METRICS = (DOCK_TO_STOCK, AWAITING_STOW, UNITS_RECEIVED, *ENTITY_METRICS)

    receipts: dict  # type: ignore[type-arg]
    retention: cython.longlong
    fcs: dict  # type: ignore[type-arg]
    dock_to_stock: core.Histogram
    awaiting: core.Counts
    units_received: core.Counts
    orphans: core.Counts
    expired: core.Counts

    def __init__(self) -> None:
        self.receipts = {}

    def attach(self) -> None:
        context = self.context
        self.retention = context.config.retention
        self.fcs = context.known_values("fc")
        self.dock_to_stock = context.histogram(DOCK_TO_STOCK)
        self.awaiting = context.counts(AWAITING_STOW)
        self.units_received = context.counts(UNITS_RECEIVED)
        self.orphans, self.expired = context.counts(ORPHAN_EVENTS), context.counts(STATE_EXPIRED)

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        if kind == "inventory.stowed":
            self.stowed(ts, event)
        else:
            self.received(ts, event)

    @cython.cfunc
    def received(self, ts: cython.longlong, event: Any) -> None:
        fc = self.fcs.get(event.fc) or self.context.label("fc", event.fc)
        qty: cython.longlong = event.qty
        self.units_received.add(fc, qty)
        receipt_id = event.receipt_id
        receipt: Receipt | None = self.receipts.get(receipt_id)
        if receipt is None:
            receipt = Receipt()
            self.receipts[receipt_id] = receipt
        elif receipt.received != core.NEVER:
            return  # the first dock scan of a receipt defines it
        receipt.fc, receipt.received, receipt.qty = fc, ts, qty
        if self.retention:
            self.after(receipt.received + self.retention, T_RETENTION, receipt_id)
        if receipt.stowed < qty:
            receipt.awaiting = True
            self.awaiting.add(fc)
        else:
            self.at(receipt.completed_at(), T_COMPLETE, receipt_id)

    @cython.cfunc
    def stowed(self, ts: cython.longlong, event: Any) -> None:
        qty: cython.longlong = event.qty
        receipt_id = event.receipt_id
        receipt: Receipt | None = self.receipts.get(receipt_id)
        if receipt is None:
            receipt = Receipt()
            self.receipts[receipt_id] = receipt
        if receipt.received == core.NEVER:
            self.hold(receipt.stows, ts, qty, T_ORPHAN, receipt_id)
        else:
            receipt.stows.append((ts, qty))
        receipt.stowed += qty
        if receipt.received != core.NEVER and receipt.stowed >= receipt.qty:
            if receipt.awaiting:
                receipt.awaiting = False
                self.awaiting.add(receipt.fc, -1)
            # Final once W >= completion: no stow with an earlier ts can arrive.
            self.at(receipt.completed_at(), T_COMPLETE, receipt_id)

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        receipt: Receipt | None = self.receipts.get(key)
        if receipt is None:
            return
        if tag == T_COMPLETE:
            self.complete(key, receipt)
        elif tag == T_ORPHAN:
            self.expire_orphan(key, receipt)
        elif receipt.awaiting and self.expires(receipt):  # T_RETENTION
            del self.receipts[key]
            self.awaiting.add(receipt.fc, -1)
            self.expired.add("receipt")

    @cython.cfunc
    def expires(self, receipt: Receipt) -> cython.bint:
        """W passed this receipt's dock scan plus the retention: not only an earlier
        receipt's of the same id (one that completed and left state) whose timer
        this is."""
        return receipt.received + self.retention < self.context.watermark

    @cython.cfunc
    def complete(self, receipt_id: object, receipt: Receipt) -> None:
        if receipt.received == core.NEVER or receipt.stowed < receipt.qty:
            return
        completed: cython.longlong = receipt.completed_at()
        if completed > self.context.watermark:
            return  # a later timer decides
        del self.receipts[receipt_id]
        seconds: cython.double = (completed - receipt.received) / US_PER_SECOND
        self.dock_to_stock.observe(receipt.fc, seconds)

    @cython.cfunc
    def expire_orphan(self, receipt_id: object, receipt: Receipt) -> None:
        """Drop stows of a receipt never received once W passes their horizon."""
        if receipt.received != core.NEVER:
            return
        qty: cython.longlong
        for qty in self.past_horizon(receipt.stows, T_ORPHAN, receipt_id):
            self.orphans.add("inventory.stowed")
            receipt.stowed -= qty
        if not receipt.stows:
            del self.receipts[receipt_id]

    def entries(self, into: dict[str, int]) -> None:
        into["receipts"] = len(self.receipts)

    def export_state(self) -> Any:
        return self.receipts

    def restore_state(self, state: Any) -> None:
        self.receipts = state
