# cython: language_level=3
"""The fulfilment flow (contract §3.3, §3.5): stage times, stage backlog and
bottlenecks, per fc of the order's `order.placed` (of the receipt's
`inventory.received` for `stow`).

Stage times: pick wait k1 - p, pick to pack k2 - k1 and pack to ship s - k2
(p placed, k1 earliest pick, k2 earliest pack, s earliest shipment), each
observed once per order when W reaches the later of its two times (no earlier
time can arrive then); a pair with a time missing observes nothing. Pack to
ship mostly waits for the shipment (k2 <= s): the order entity tells when it is
final, so only a pack after the shipment needs a timer of its own.

Stage backlog as of a close b, as steps in event time: an order counts for the
closes b with p < b <= min(s, c) (c the earliest cancellation), in stage `ship`
once k2 < b, else `pack` once k1 < b, else `pick`; a receipt for the closes with
t0 < b <= t (t0 received, t the stow that completes it). Each order and receipt
is a few steps (time, from stage, to stage); a shard adds each step to the
window holding its time, per fc and stage, and reports the windows W closed. A
fact that moves earlier (to x >= W, or to p >= W for events held until the
order was placed) changes the steps at or after x only, so the shard takes the
old steps from x on back and adds the new ones, in windows still open. No order
is scanned at a close.

The combine step (`FlowBacklog`) adds every shard's steps once every shard has
closed a window, so the backlog at each close is exact whatever the sharding;
it keeps each stage's run of strict rises for the bottleneck rule, raises a
`bottleneck` alert on the first close where it holds after not holding, and
shows the backlog and the flags of the latest close.
"""

from __future__ import annotations

from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows.declare import COUNTER, GAUGE, HISTOGRAM, Metric, metric
from flows.runtime.combine import CombineContext
from flows.runtime.outputs import Alert, key_part
from flows.timeutil import US_PER_SECOND, format_time

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.kpis import receipts as inbound
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.kpis import receipts as inbound
    from flows.runtime import core

STAGE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400)


def stage_time(name: str, meaning: str) -> Metric:
    """A stage time histogram per fc of the order (contract §4)."""
    return metric(
        name,
        HISTOGRAM,
        meaning,
        ("fc",),
        unit="s",
        buckets=STAGE_BUCKETS,
        group="fulfilment",
        contract=True,
    )


PICK_WAIT = stage_time("cockpit_pick_wait_seconds", "Time from order placed to its earliest pick.")
PICK_TO_PACK = stage_time(
    "cockpit_pick_to_pack_seconds", "Time from an order's earliest pick to its earliest pack."
)
PACK_TO_SHIP = stage_time(
    "cockpit_pack_to_ship_seconds", "Time from an order's earliest pack to its earliest shipment."
)
STAGE_BACKLOG = metric(
    "cockpit_stage_backlog",
    GAUGE,
    "Orders awaiting pick, pack or ship, and receipts awaiting stow, as of the latest close.",
    ("fc", "stage"),
    group="fulfilment",
    contract=True,
)
BOTTLENECK = metric(
    "cockpit_bottleneck",
    GAUGE,
    "1 when the stage's backlog rose at each of the last bottleneck_windows closes to at "
    "least bottleneck_min, at the latest close; else 0.",
    ("fc", "stage"),
    group="fulfilment",
    contract=True,
)
BOTTLENECKS = metric(
    "cockpit_bottlenecks_total",
    COUNTER,
    "Bottleneck alerts.",
    ("fc", "stage"),
    group="fulfilment",
    contract=True,
)

STAGES = ("pick", "pack", "ship", "stow")  # backlog stages, by index
PICK = cython.declare(cython.int, 0)
PACK = cython.declare(cython.int, 1)
SHIP = cython.declare(cython.int, 2)
STOW = cython.declare(cython.int, 3)
NONE = cython.declare(cython.int, -1)  # in no backlog
# Its bits of Order.flags: the stage time is observed. Its timers.
WAITED = cython.declare(cython.longlong, 1)
PICK_PACKED = cython.declare(cython.longlong, 2)
PACK_SHIPPED = cython.declare(cython.longlong, 4)
T_WAIT = cython.declare(cython.longlong, 0)
T_PICK_PACK = cython.declare(cython.longlong, 1)
T_PACK_SHIP = cython.declare(cython.longlong, 2)
T_RECEIPT = cython.declare(cython.longlong, 3)  # a receipt's retention
# A step an upgraded snapshot knew had happened, not when (flows/kpis/upgrade.py).
UNKNOWN_TIME = cython.declare(cython.longlong, core.MIN_TS)


@cython.final
@cython.no_gc  # four ints
@cython.cclass
class Steps:
    """One fc's backlog changes in one window on a shard, by stage."""

    pick: cython.longlong
    pack: cython.longlong
    ship: cython.longlong
    stow: cython.longlong

    def __init__(self, pick: int = 0, pack: int = 0, ship: int = 0, stow: int = 0) -> None:
        self.pick, self.pack, self.ship, self.stow = pick, pack, ship, stow

    @cython.cfunc
    def add(self, stage: cython.int, amount: cython.longlong) -> None:
        if stage == PICK:
            self.pick += amount
        elif stage == PACK:
            self.pack += amount
        elif stage == SHIP:
            self.ship += amount
        elif stage == STOW:
            self.stow += amount

    def values(self) -> tuple[int, int, int, int]:
        return (self.pick, self.pack, self.ship, self.stow)


@cython.inline
@cython.cfunc
def earlier(a: cython.longlong, b: cython.longlong) -> cython.longlong:
    return a if a < b else b


@cython.inline
@cython.cfunc
def later(a: cython.longlong, b: cython.longlong) -> cython.longlong:
    return a if a > b else b


@cython.cfunc
def completion(
    receipt: inbound.Receipt | None,
    qty: cython.longlong,
    ts: cython.longlong,
    more: cython.longlong,
) -> cython.longlong:
    """When the receipt's stows (and one more of `more` units at ts) reach qty,
    the stow ts that gets there; NEVER when they do not."""
    if receipt is None or receipt.stowed + more < qty:
        return core.NEVER
    stows = list(receipt.stows)
    if more:
        stows.append((ts, more))
    stows.sort()
    total: cython.longlong = 0
    for when, units in stows:
        total += units
        if total >= qty:
            return when  # type: ignore[no-any-return]
    return core.NEVER


@cython.cclass
class Flow(entity.OrderWatcher):
    """The shard side: stage times, and the backlog's steps per window, fc and
    stage. It reads receipts before the receipts family changes them, so it
    comes before it in `FAMILIES`."""

    NAME = "flow"
    VERSION = 1
    KINDS = ("inventory.received", "inventory.stowed")
    METRICS = (PICK_WAIT, PICK_TO_PACK, PACK_TO_SHIP)
    FLAG_BITS = 3
    WATCHES = (
        entity.PLACED
        | entity.PICKED
        | entity.PACKED
        | entity.SHIPPED
        | entity.CANCELLED
        | entity.EXPIRED
        | entity.SHIPMENT_FINAL
    )

    windows: dict  # type: ignore[type-arg]
    window: cython.longlong
    retention: cython.longlong
    current_start: cython.longlong
    current: dict  # type: ignore[type-arg]
    receiving: inbound.Receipts
    fcs: dict  # type: ignore[type-arg]
    pick_wait: core.Histogram
    pick_to_pack: core.Histogram
    pack_to_ship: core.Histogram
    seeded: cython.bint
    floor: cython.longlong

    def __init__(self) -> None:
        self.windows = {}  # window start -> {fc: Steps}
        self.seeded = False  # holds every open order's and receipt's steps
        self.floor = core.MIN_TS  # steps before it go to its window (seeding)

    def attach(self) -> None:
        context = self.context
        self.window, self.retention = context.window, context.config.retention
        self.current_start, self.current = core.MIN_TS, {}
        self.fcs = context.known_values("fc")
        self.pick_wait = context.histogram(PICK_WAIT)
        self.pick_to_pack = context.histogram(PICK_TO_PACK)
        self.pack_to_ship = context.histogram(PACK_TO_SHIP)
        families = context.families
        receipts: Any = context.family(inbound.Receipts.NAME)
        if families.index(receipts) < families.index(self):
            raise ValueError("the flow family reads receipts before the receipts family")
        self.receiving = receipts
        book: Any = context.family(entity.OrderBook.NAME)  # restored, maybe not wired yet
        if not self.seeded and (book.orders or self.receiving.receipts):
            self.seed(book.orders)

    def seed(self, orders: Any) -> None:
        """Restored from a snapshot taken without this family: the steps of every
        order and receipt in state, those before W in W's window (they count at
        every close from the next on), and the stage times not yet observed
        (not those with a time an upgrade did not keep)."""
        self.floor = self.context.watermark
        order: entity.Order
        p: cython.longlong
        k1: cython.longlong
        k2: cython.longlong
        s: cython.longlong
        for order_id, order in orders.items():
            p, k1, k2, s = order.placed, order.picked, order.packed, order.shipped
            self.order_steps(order.fc, p, k1, k2, earlier(s, order.cancelled), 1, core.MIN_TS)
            picked: cython.bint = UNKNOWN_TIME < k1 < core.NEVER
            packed: cython.bint = UNKNOWN_TIME < k2 < core.NEVER
            if picked:
                self.decide(T_WAIT, order_id, order, later(p, k1), WAITED)
            if picked and packed:
                self.decide(T_PICK_PACK, order_id, order, later(k1, k2), PICK_PACKED)
            if packed and s != core.NEVER:
                self.decide(T_PACK_SHIP, order_id, order, later(k2, s), PACK_SHIPPED)
        receipt: inbound.Receipt
        for receipt_id, receipt in self.receiving.receipts.items():
            if receipt.received != core.NEVER:
                done = completion(receipt, receipt.qty, 0, 0)
                self.receipt_steps(receipt.fc, receipt.received, done, 1, core.MIN_TS)
                if self.retention and receipt.awaiting:
                    self.after(receipt.received + self.retention, T_RECEIPT, receipt_id)
        self.floor, self.seeded = core.MIN_TS, True

    # --- orders

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        fc: str = order.fc
        p: cython.longlong = order.placed
        k1: cython.longlong = order.picked
        k2: cython.longlong = order.packed
        end: cython.longlong = earlier(order.shipped, order.cancelled)
        if change & entity.PLACED:
            self.order_steps(fc, p, k1, k2, end, 1, core.MIN_TS)
            return
        if change & entity.SHIPMENT_FINAL:  # W passed s, so k2 too when k2 <= s
            if k2 <= order.shipped:
                self.observe(T_PACK_SHIP, order)
            return
        if change & entity.EXPIRED:  # out of every backlog from its retention deadline on
            expiry: cython.longlong = later(order.ship_by, order.deliver_by) + self.retention
            if expiry < end:
                self.order_steps(fc, p, k1, k2, end, -1, expiry)
                self.order_steps(fc, p, k1, k2, expiry, 1, expiry)
            return
        old1: cython.longlong = k1
        old2: cython.longlong = k2
        old_end: cython.longlong = end
        since: cython.longlong
        if change & entity.PICKED:
            old1, since = self.book.previous, k1
            self.decide(T_WAIT, order_id, order, later(p, k1), WAITED)
            if k2 != core.NEVER:
                self.decide(T_PICK_PACK, order_id, order, later(k1, k2), PICK_PACKED)
        elif change & entity.PACKED:
            old2, since = self.book.previous, k2
            if k1 != core.NEVER:
                self.decide(T_PICK_PACK, order_id, order, later(k1, k2), PICK_PACKED)
            # A pack after the shipment waits for itself; so does one at the time of a
            # shipment already final (W = k2 = s: its announcement found no pack).
            if k2 > order.shipped or order.final:
                self.decide(T_PACK_SHIP, order_id, order, k2, PACK_SHIPPED)
        elif change & entity.SHIPPED:
            old_end, since = earlier(self.book.previous, order.cancelled), order.shipped
            if k2 > order.shipped and k2 != core.NEVER:
                self.decide(T_PACK_SHIP, order_id, order, k2, PACK_SHIPPED)
        else:  # a new earliest cancellation
            old_end, since = earlier(order.shipped, self.book.previous), order.cancelled
        if old1 != k1 or old2 != k2 or old_end != end:
            self.order_steps(fc, p, old1, old2, old_end, -1, since)
            self.order_steps(fc, p, k1, k2, end, 1, since)

    @cython.cfunc
    def order_steps(
        self,
        fc: str,
        p: cython.longlong,
        k1: cython.longlong,
        k2: cython.longlong,
        end: cython.longlong,
        sign: cython.longlong,
        since: cython.longlong,
    ) -> None:
        """Add `sign` times the order's steps at times >= since: from p in the
        stage its facts give, to `pack` at k1 and `ship` at k2, out at `end`.
        Steps before `since` are the same before and after a change at `since`."""
        if end <= p:
            return  # shipped or cancelled before it was placed: in no backlog
        stage: cython.int = PICK
        if k2 <= p:
            stage = SHIP
        elif k1 <= p:
            stage = PACK
        if p >= since:
            self.step(fc, p, NONE, stage, sign)
        if stage == PICK and k1 < k2 and k1 < end:
            if k1 >= since:
                self.step(fc, k1, PICK, PACK, sign)
            stage = PACK
        if stage != SHIP and k2 < end:
            if k2 >= since:
                self.step(fc, k2, stage, SHIP, sign)
            stage = SHIP
        if end != core.NEVER and end >= since:
            self.step(fc, end, stage, NONE, sign)

    @cython.cfunc
    def step(
        self,
        fc: str,
        ts: cython.longlong,
        before: cython.int,
        after: cython.int,
        sign: cython.longlong,
    ) -> None:
        """From stage `before` to `after` (either NONE) at ts: for closes b > ts."""
        if ts < self.floor:
            ts = self.floor
        start: cython.longlong = ts - ts % self.window
        if start != self.current_start:
            steps_of: dict | None = self.windows.get(start)  # type: ignore[type-arg]
            if steps_of is None:
                steps_of = self.windows[start] = {}
            self.current_start, self.current = start, steps_of
        steps: Steps | None = self.current.get(fc)
        if steps is None:
            steps = self.current[fc] = Steps()
        if before != NONE:
            steps.add(before, -sign)
        if after != NONE:
            steps.add(after, sign)

    @cython.cfunc
    def decide(
        self,
        tag: cython.longlong,
        order_id: str,
        order: entity.Order,
        when: cython.longlong,
        flag: cython.longlong,
    ) -> None:
        """Observe a stage time once W reaches the later of its times."""
        if not self.has(order, flag):
            self.at(when, tag, order_id, order)

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        if tag == T_RECEIPT:
            self.expire_receipt(key)
            return
        self.observe(tag, ref)

    @cython.cfunc
    def observe(self, tag: cython.longlong, order: entity.Order) -> None:
        """W reached the later of a stage time's two times: observe it, once. The
        order's facts are final up to W, whether or not it left the order book."""
        first: cython.longlong
        second: cython.longlong
        histogram: core.Histogram
        flag: cython.longlong
        if tag == T_WAIT:
            first, second, histogram, flag = order.placed, order.picked, self.pick_wait, WAITED
        elif tag == T_PICK_PACK:
            first, second, histogram = order.picked, order.packed, self.pick_to_pack
            flag = PICK_PACKED
        else:
            first, second, histogram, flag = (
                order.packed,
                order.shipped,
                self.pack_to_ship,
                PACK_SHIPPED,
            )
        if self.has(order, flag):
            return  # observed at an earlier time already
        self.set(order, flag)
        if earlier(first, second) == UNKNOWN_TIME:
            return  # picked or packed before an upgrade, at a time not kept
        seconds: cython.double = (second - first) / US_PER_SECOND
        histogram.observe(order.fc, seconds)

    # --- receipts (`stow`), read before the receipts family applies the event

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        receipt_id = event.receipt_id
        receipt: inbound.Receipt | None = self.receiving.receipts.get(receipt_id)
        qty: cython.longlong = event.qty
        if kind == "inventory.received":
            if receipt is not None and receipt.received != core.NEVER:
                return  # the first dock scan defines the receipt
            fc: str = self.fcs.get(event.fc) or self.context.labels.fold("fc", event.fc)
            done: cython.longlong = completion(receipt, qty, 0, 0)
            self.receipt_steps(fc, ts, done, 1, core.MIN_TS)
            if self.retention:
                self.after(ts + self.retention, T_RECEIPT, receipt_id)
            return
        if receipt is None or receipt.received == core.NEVER:
            return  # stows of a receipt not received: in no backlog
        before: cython.longlong = completion(receipt, receipt.qty, 0, 0)
        after: cython.longlong = completion(receipt, receipt.qty, ts, qty)
        if after != before:  # earlier: the new stow completes it, at or after W
            self.receipt_steps(receipt.fc, receipt.received, before, -1, after)
            self.receipt_steps(receipt.fc, receipt.received, after, 1, after)

    @cython.cfunc
    def receipt_steps(
        self,
        fc: str,
        received: cython.longlong,
        done: cython.longlong,
        sign: cython.longlong,
        since: cython.longlong,
    ) -> None:
        """Add `sign` times the receipt's steps at times >= since: into `stow` at
        its dock scan, out at the stow that completes it."""
        if done <= received:
            return
        if received >= since:
            self.step(fc, received, NONE, STOW, sign)
        if done != core.NEVER and done >= since:
            self.step(fc, done, STOW, NONE, sign)

    @cython.cfunc
    def expire_receipt(self, receipt_id: Any) -> None:
        """The retention drops a receipt still awaiting stow (the receipts family,
        whose timer at the same time comes after this one): out of the backlog
        from that time on."""
        receipt: inbound.Receipt | None = self.receiving.receipts.get(receipt_id)
        expiry: cython.longlong
        if receipt is not None and receipt.awaiting and self.receiving.expires(receipt):
            expiry = receipt.received + self.retention
            self.receipt_steps(receipt.fc, receipt.received, core.NEVER, -1, expiry)
            self.receipt_steps(receipt.fc, receipt.received, expiry, 1, expiry)

    # --- window closes

    @cython.cfunc
    def on_close(self, end: cython.longlong) -> object:
        """(window start, fc, pick, pack, ship, stow changes) of every window
        ending at or before `end` that changed a backlog, in order."""
        self.current_start = core.MIN_TS
        rows = []
        steps: Steps
        for start in sorted([start for start in self.windows if start + self.window <= end]):
            for fc, steps in sorted(self.windows.pop(start).items()):
                if steps.pick or steps.pack or steps.ship or steps.stow:
                    rows.append((start, fc, *steps.values()))
        return rows

    def export_state(self) -> Any:
        """{window start: {fc: (pick, pack, ship, stow)}}"""
        return {
            start: {fc: steps.values() for fc, steps in by_fc.items()}
            for start, by_fc in self.windows.items()
        }

    def restore_state(self, state: Any) -> None:
        self.seeded = True
        self.windows = {
            start: {fc: Steps(*values) for fc, values in by_fc.items()}
            for start, by_fc in state.items()
        }


class Track:
    """One fc's backlog per stage as of the combine step's last close, each
    stage's run of strict rises up to it (at most `bottleneck_windows` values,
    oldest first), and whether each was a bottleneck there."""

    __slots__ = ("backlog", "flagged", "rises")

    def __init__(self, backlog: list[int], rises: list[list[int]], flagged: list[bool]) -> None:
        self.backlog, self.rises, self.flagged = backlog, rises, flagged

    @classmethod
    def empty(cls) -> Track:
        return cls([0] * len(STAGES), [[] for _ in STAGES], [False] * len(STAGES))

    def quiet(self) -> None:
        """A close that changed nothing: no stage rose."""
        for rises in self.rises:
            rises.clear()
        self.flagged = [False] * len(STAGES)


class FlowBacklog:
    """The combine step: every shard's steps per window, added up in window order
    once every shard closed it; the backlog as of each close, bottleneck alerts,
    and the latest close's backlog and flags. Plain Python: it runs per close."""

    NAME: ClassVar[str] = Flow.NAME
    VERSION: ClassVar[int] = 1
    METRICS: ClassVar[tuple[Metric, ...]] = (STAGE_BACKLOG, BOTTLENECK, BOTTLENECKS)

    def __init__(self, context: CombineContext) -> None:
        self.context = context
        self.window = context.window
        self.runs = context.kpi.bottleneck_windows
        self.least = context.kpi.bottleneck_min
        self.pending: dict[int, dict[str, list[int]]] = {}  # window start -> {fc: steps}
        self.tracks: dict[str, Track] = {}
        self.through = core.MIN_TS  # the last close taken (MIN_TS: none yet)

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """One shard's steps."""
        for start, fc, *steps in rows:
            summed = self.pending.setdefault(start, {}).setdefault(fc, [0] * len(STAGES))
            for index, amount in enumerate(steps):
                summed[index] += amount

    def close(self, closed: int, out: list[Any]) -> None:
        """Every close up to `closed`, in order. A close with no step anywhere
        changes no backlog, so no stage rises there, nor at the quiet closes
        after it: only the first of them is taken."""
        window = self.window
        due = sorted(start + window for start in self.pending if start + window <= closed)
        close = self.through + window if self.through != core.MIN_TS else (due or [closed])[0]
        for end in due:
            if close < end:  # quiet closes before this one
                self.take(close, {}, out)
            self.take(end, self.pending.pop(end - window), out)
            close = end + window
        if close <= closed:
            self.take(close, {}, out)
        self.through = max(self.through, closed)
        self.publish()

    def take(self, end: int, steps: dict[str, list[int]], out: list[Any]) -> None:
        """The close at `end`, with the steps of the window it closes."""
        for fc in steps:
            if fc not in self.tracks:
                self.tracks[fc] = Track.empty()
        for fc, track in sorted(self.tracks.items()):
            changes = steps.get(fc)
            if changes is None:
                track.quiet()
                continue
            for stage, change in enumerate(changes):
                backlog = track.backlog[stage] = track.backlog[stage] + change
                rises = track.rises[stage]
                if change > 0:
                    rises.append(backlog)
                    del rises[: -self.runs]
                else:
                    rises.clear()
                now = len(rises) >= self.runs and backlog >= self.least
                if now and not track.flagged[stage]:
                    out.append(self.alert(fc, stage, end, rises))
                track.flagged[stage] = now
        self.through = end

    def alert(self, fc: str, stage: int, end: int, rises: list[int]) -> Alert:
        """A `bottleneck` record (contract §5), keyed `bottleneck|fc|stage|window_end`."""
        name, window_end = STAGES[stage], format_time(end)
        counter = self.context.series[BOTTLENECKS.name]
        counter[fc, name] = counter.get((fc, name), 0) + 1
        return Alert(
            f"bottleneck|{key_part(fc)}|{name}|{window_end}",
            {
                "alert": "bottleneck",
                "fc": fc,
                "stage": name,
                "window_end": window_end,
                "backlog": rises[-1],
                "samples": list(rises),
                "decided_ts": self.context.decided(),
            },
        )

    def publish(self) -> None:
        """The backlog and the flags of the latest close, every stage of every fc
        that had an order or a receipt by then."""
        backlog: dict[tuple[str, str], int] = {}
        flags: dict[tuple[str, str], int] = {}
        for fc, track in self.tracks.items():
            for stage, name in enumerate(STAGES):
                backlog[fc, name] = track.backlog[stage]
                flags[fc, name] = int(track.flagged[stage])
        self.context.series[STAGE_BACKLOG.name] = backlog
        self.context.series[BOTTLENECK.name] = flags

    def export_state(self) -> Any:
        return {
            "pending": self.pending,
            "tracks": {
                fc: (track.backlog, track.rises, track.flagged) for fc, track in self.tracks.items()
            },
            "through": self.through,
        }

    def restore_state(self, state: Any) -> None:
        self.pending, self.through = state["pending"], state["through"]
        self.tracks = {fc: Track(*saved) for fc, saved in state["tracks"].items()}
