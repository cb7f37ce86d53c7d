# cython: language_level=3
"""Inventory health per item (fc, sku): contract §3.2, and §3.5's stockout and
demand spike.

An item's events come from every shard (picks travel with their order, stows
with their receipt, adjustments by item), so shards only collect them: per
window, the units ordered per item (the first `order.placed` of each order),
the stows and positive adjustments with their ts and event id, and the units
taken per item. The combine step (`ItemHealth`) owns the items: it applies each
closed window's positive moves in (ts, event_id) order, then its takes (FIFO
lots for aging), keeps the demand history an item needs, and evaluates an
item at a close only when something changed it: its own events, or a time
(demand leaving the trailing window, a lot reaching the next age band, a spike
to reset, 90 quiet days at 0 on hand) kept as an event-time timer. At each
day's close every item is evaluated, since its sigma changes with the day and it
gets a `sku_health` record.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left
from operator import attrgetter
from statistics import NormalDist
from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

from flows import published
from flows.declare import COUNTER, GAUGE, Metric, metric
from flows.kpis.sku_health import BANDS, SkuHealthDay, sku_health
from flows.runtime.combine import CombineContext
from flows.runtime.ids import key_table
from flows.runtime.outputs import Alert, key_part
from flows.timeutil import US_PER_SECOND, format_time

if cython.compiled:
    from cython.cimports.flows.entities import orders as entity
    from cython.cimports.flows.runtime import core
else:
    from flows.entities import orders as entity
    from flows.runtime import core

TRACKED = metric(
    "cockpit_skus_tracked",
    GAUGE,
    "Items (fc, sku) tracked at the latest close.",
    ("fc",),
    group="inventory",
    contract=True,
)
OUT_OF_STOCK = metric(
    "cockpit_skus_out_of_stock",
    GAUGE,
    "Items out of stock (on hand <= 0 with demand) at the latest close.",
    ("fc",),
    group="inventory",
    contract=True,
)
AT_RISK = metric(
    "cockpit_skus_at_risk",
    GAUGE,
    "Items whose days of cover are below the lead time at the latest close.",
    ("fc",),
    group="inventory",
    contract=True,
)
EXCESS = metric(
    "cockpit_skus_excess",
    GAUGE,
    "Items with stock and no demand, or cover beyond the excess days, at the latest close.",
    ("fc",),
    group="inventory",
    contract=True,
)
BELOW_SAFETY = metric(
    "cockpit_skus_below_safety_stock",
    GAUGE,
    "Items with on hand below their safety stock at the latest close.",
    ("fc",),
    group="inventory",
    contract=True,
)
BY_AGE = metric(
    "cockpit_units_on_hand_by_age",
    GAUGE,
    "Units on hand by FIFO age band (days) at the latest close.",
    ("fc", "age"),
    group="inventory",
    contract=True,
)
STOCKOUTS = metric(
    "cockpit_stockouts_total",
    COUNTER,
    "Stockout alerts: items that went out of stock.",
    ("fc",),
    group="inventory",
    contract=True,
)
SPIKES = metric(
    "cockpit_demand_spikes_total",
    COUNTER,
    "Demand spike alerts.",
    ("fc",),
    group="inventory",
    contract=True,
)

DAY = cython.declare(cython.longlong, 86400 * US_PER_SECOND)
QUIET = cython.declare(cython.longlong, 90 * DAY)  # at 0 on hand, quiet this long: it leaves
# The age in days at which a unit enters the next band: AGED bands have an end.
BAND_STARTS = cython.declare(cython.longlong[4], [91, 181, 271, 366])  # type: ignore[misc, valid-type]
AGED = cython.declare(cython.int, len(BANDS) - 1)
NO_ENTRIES: list[int] = []  # an item's demand and days until its first order: never changed
NO_LOTS: list[Any] = []  # an item's lots after its oldest until it has two: never changed
# State bits, and their names in records, in sorted order.
STATE_NAMES = ("at_risk", "below_safety_stock", "excess", "out_of_stock")
AT_RISK_BIT = cython.declare(cython.int, 1)
BELOW_BIT = cython.declare(cython.int, 2)
EXCESS_BIT = cython.declare(cython.int, 4)
OUT_BIT = cython.declare(cython.int, 8)
STATE_GAUGES = (AT_RISK, BELOW_SAFETY, EXCESS, OUT_OF_STOCK)  # in bit order
# The state names of each combination of state bits, sorted (records and the web API).
STATE_SETS = tuple(
    tuple(name for bit, name in enumerate(STATE_NAMES) if states & 1 << bit)
    for states in range(1 << len(STATE_NAMES))
)


@cython.final
@cython.cclass
class Pending:
    """A shard's rows of one window, per fc (the combine step keeps an fc's items in
    one table): units ordered per sku (summed: every open order's lines would be
    held till the close otherwise), the positive stock moves as they came (FIFO
    dates their lots), and the units taken per sku (picks, negative adjustments),
    summed: the lots after a window are the newest max(on hand, 0) units of
    those stowed, wherever its takes fall among its stows (`take`)."""

    lines: dict  # type: ignore[type-arg]  # fc -> {sku: units}
    moves: dict  # type: ignore[type-arg]  # fc -> [Move]
    taken: dict  # type: ignore[type-arg]  # fc -> {sku: units}

    def __init__(self) -> None:
        self.lines, self.moves, self.taken = {}, {}, {}


@cython.cclass
class Inventory(entity.OrderWatcher):
    """The shard side: collects each window's order lines and stock moves."""

    NAME = "inventory"
    VERSION = 2  # 1: moves of a window in one list
    KINDS = ("inventory.stowed", "inventory.picked", "inventory.adjusted")
    WATCHES = entity.PLACED

    windows: dict  # type: ignore[type-arg]
    current_start: cython.longlong
    current: Pending
    window: cython.longlong

    def __init__(self) -> None:
        self.windows = {}  # window start -> Pending

    def attach(self) -> None:
        self.window = self.context.window
        self.current_start, self.current = core.MIN_TS, Pending()

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        qty: cython.longlong
        if kind == "inventory.adjusted":
            qty = event.delta
        elif kind == "inventory.picked":
            qty = -event.qty
        else:
            qty = event.qty
        pending: Pending = self.pending(ts)
        fc = event.fc
        if qty <= 0:
            units: dict = of_fc(pending.taken, fc)  # type: ignore[type-arg]
            sku = event.sku
            units[sku] = units.get(sku, 0) - qty
            return
        fc_moves: list | None = pending.moves.get(fc)  # type: ignore[type-arg]
        if fc_moves is None:
            fc_moves = pending.moves[fc] = []
        fc_moves.append(new_move(ts, event.event_id, qty, event.sku))

    @cython.cfunc
    def on_order(
        self,
        change: cython.longlong,
        order_id: str,
        order: entity.Order,
        before: cython.int,
        event: Any,
    ) -> None:
        # The item's own fc, not the label the order's metrics use.
        units: dict = of_fc(self.pending(order.placed).lines, event.fc)  # type: ignore[type-arg]
        for line in event.lines:
            sku = line.sku
            units[sku] = units.get(sku, 0) + line.qty

    @cython.cfunc
    def pending(self, ts: cython.longlong) -> Pending:
        start: cython.longlong = ts - ts % self.window
        if start != self.current_start:
            found: Pending | None = self.windows.get(start)
            if found is None:
                found = self.windows[start] = Pending()
            self.current_start, self.current = start, found
        return self.current

    @cython.cfunc
    def on_close(self, end: cython.longlong) -> object:
        """(window start, order lines, positive moves, units taken) per closed window."""
        self.current_start = core.MIN_TS
        rows = []
        pending: Pending
        for start in sorted([start for start in self.windows if start + self.window <= end]):
            pending = self.windows.pop(start)
            rows.append((start, pending.lines, pending.moves, pending.taken))
        return rows

    def export_state(self) -> Any:
        return {
            start: window_state(start, pending.lines, pending.moves, pending.taken)
            for start, pending in self.windows.items()
        }

    def restore_state(self, state: Any) -> None:
        self.windows = {}
        for start, saved in state.items():
            pending = self.windows[start] = Pending()
            pending.lines, pending.moves, pending.taken = window_of(saved)


@cython.final
@cython.no_gc  # strings and ints: never in a cycle, so never tracked
@cython.cclass
class Move:
    """A stock move as a window keeps it till its close, among its fc's. Moves
    sort in (ts, event_id) order (an event id is unique within the dedup horizon):
    by C times, a quarter of the cost of sorting (ts, event id, ...) tuples."""

    ts: cython.longlong
    qty: cython.longlong  # negative: units taken
    event_id: str
    sku: str

    def __init__(self, ts: int, event_id: str, qty: int, sku: str) -> None:
        self.ts, self.event_id, self.qty, self.sku = ts, event_id, qty, sku

    def __lt__(self, other: Move) -> bool:
        if self.ts != other.ts:
            return self.ts < other.ts
        return self.event_id < other.event_id

    def fields(self) -> tuple[int, str, int, str]:
        return (self.ts, self.event_id, self.qty, self.sku)

    def __eq__(self, other: object) -> bool:  # a value, like the tuple it was
        return isinstance(other, Move) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash(self.fields())

    def __repr__(self) -> str:
        return f"Move{self.fields()!r}"

    def __reduce__(self) -> Any:  # both builds read the same pickle
        return (Move, self.fields())


@cython.cfunc
def of_fc(by_fc: dict, fc: str) -> dict:  # type: ignore[type-arg]
    """The fc's {sku: units} in a window's `by_fc`, made on its first use."""
    units: dict | None = by_fc.get(fc)  # type: ignore[type-arg]
    if units is None:
        units = by_fc[fc] = {}
    return units


def add_units(into: dict[str, dict[str, int]], units_by_fc: dict[str, dict[str, int]]) -> None:
    """Another shard's units per fc and sku added into a window's."""
    for fc, units in units_by_fc.items():
        merged = of_fc(into, fc)
        for sku, count in units.items():
            merged[sku] = merged.get(sku, 0) + count


@cython.cfunc
def new_move(ts: cython.longlong, event_id: str, qty: cython.longlong, sku: str) -> Move:
    move: Move = Move.__new__(Move)  # without Python's call of __init__
    move.ts, move.event_id, move.qty, move.sku = ts, event_id, qty, sku
    return move


# A window's rows as snapshots keep them, per (fc, sku), so that those of earlier
# builds restore (and this build's restore in them): order lines as units, stock
# moves as (ts, event id, qty), an item's units taken as one move at the window's
# start (where takes fall among the stows does not change FIFO's lots).


def window_state(
    start: int,
    lines: dict[str, dict[str, int]],
    moves: dict[str, list[Move]],
    taken: dict[str, dict[str, int]],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], list[tuple[int, str, int]]]]:
    """(units ordered per item, moves per item)."""
    moved: dict[tuple[str, str], list[tuple[int, str, int]]] = {}
    move: Move
    for fc, fc_moves in moves.items():
        for move in fc_moves:
            moved.setdefault((fc, move.sku), []).append((move.ts, move.event_id, move.qty))
    for fc, skus in taken.items():
        for sku, units in skus.items():
            moved.setdefault((fc, sku), []).append((start, "", -units))
    by_item = {(fc, sku): units for fc, skus in lines.items() for sku, units in skus.items()}
    return by_item, moved


def window_of(saved: Any) -> tuple[dict[str, Any], dict[str, list[Move]], dict[str, Any]]:
    """(order lines, positive moves, units taken) from `window_state`."""
    by_item, moved = saved
    lines: dict[str, dict[str, int]] = {}
    for (fc, sku), units in by_item.items():
        lines.setdefault(fc, {})[sku] = units
    moves: dict[str, list[Move]] = {}
    taken: dict[str, dict[str, int]] = {}
    for (fc, sku), item_moves in moved.items():
        for ts, event_id, qty in item_moves:
            if qty > 0:
                moves.setdefault(fc, []).append(new_move(ts, event_id, qty, sku))
            else:
                units = taken.setdefault(fc, {})
                units[sku] = units.get(sku, 0) - qty
    return lines, moves, taken


@cython.final
@cython.no_gc  # two ints
@cython.cclass
class Lot:
    """Units that came in at one time and are still on hand (FIFO)."""

    ts: cython.longlong
    qty: cython.longlong

    def __init__(self, ts: int, qty: int) -> None:
        self.ts, self.qty = ts, qty


@cython.final
@cython.cclass
class Place:
    """An fc as the combine step keeps it, found once per item, not per evaluation:
    one fc string for all its items (each event brings its own copy), its label (an
    admitted value stays admitted) and that label's cells, its lead time in days."""

    fc: str
    label: str
    cells: LabelCells
    lead_num: int  # the lead time as an exact fraction
    lead_den: int
    lead_root: cython.double  # its square root


ITEM_FIELDS = (
    "fc",
    "sku",
    "label",
    "created",
    "active",
    "on_hand",
    "shortfall",
    "lots",
    "demand",
    "daily",
    "first_day",
    "states",
    "spiking",
    "bands",
    "check",
    "ordered",
    "safety",
    "safety_day",
    "gone",
)


@cython.final
@cython.no_gc  # strings, numbers, lists of ints and of lots: never in a cycle
@cython.cclass
class Item:
    """One (fc, sku) as the combine step keeps it."""

    fc: str
    sku: str
    label: str  # the fc as metrics show it (capped)
    created: cython.longlong  # start of the window of its first event
    active: cython.longlong  # start of the window of its latest event
    on_hand: cython.longlong
    shortfall: cython.longlong  # what picks took beyond the lots, for later stows to fill
    # The oldest lot in the item itself (most items have one lot: it is read with
    # the item, not through a list and an object), the later ones in `lots`.
    oldest_ts: cython.longlong
    oldest_qty: cython.longlong  # 0: no lots (a lot holds at least a unit)
    lots: list  # type: ignore[type-arg]
    # Lists of ints, not arrays: a list's item is read and appended in C (an array's
    # through a method call and a new int), and the window starts are shared ints.
    demand: list  # type: ignore[type-arg]  # window start, units ordered, ... (oldest first)
    demand_total: cython.longlong  # the units in `demand` (not in snapshots: summed again)
    # Units ordered on each whole day from first_day on: a day's close adds the day
    # from its demand entries (once, not at each order line).
    daily: list  # type: ignore[type-arg]
    first_day: cython.longlong
    states: cython.int  # state bits at its latest evaluation
    spiking: cython.bint
    # Units per age band then, in the item (a tuple would be one more object to wait
    # for and to make anew at each change); a record gets them as a tuple.
    bands: list[int]  # five C numbers compiled (see the .pxd), a list interpreted
    check: cython.longlong  # when its timer is set for (0: none)
    ordered: cython.longlong  # units ordered in [b - demand_days, b) at its latest evaluation
    safety: cython.double  # its safety stock then
    safety_day: cython.longlong  # the day that safety stock is of
    gone: cython.bint  # left (a later event makes a new item)
    touched: cython.longlong  # the close that last found it changed (not in snapshots)
    place: Place  # its fc (not in snapshots: a restore finds it again)

    def __reduce__(self) -> Any:
        # Lots and bands as the pickle has always held them (the bands are C numbers).
        special = {"lots": lots_of, "bands": bands_of}
        values = [
            special[name](self) if name in special else getattr(self, name) for name in ITEM_FIELDS
        ]
        return (restore_item, tuple(values))


@cython.cfunc
def new_item(place: Place, sku: str, created: cython.longlong) -> Item:
    """An item with nothing yet (made without Python's call of __init__: the
    combine step makes every item it sees, tens of thousands at a time)."""
    item: Item = Item.__new__(Item)
    item.place, item.fc, item.sku, item.label = place, place.fc, sku, place.label
    item.created = item.active = created
    item.on_hand = item.shortfall = 0
    item.oldest_ts = item.oldest_qty = 0
    item.lots = NO_LOTS
    item.demand = item.daily = NO_ENTRIES  # shared until its first order (many have none)
    item.demand_total = item.first_day = 0
    item.states, item.spiking = 0, False
    item.bands = [0, 0, 0, 0, 0]
    item.check = item.ordered = 0
    item.safety = 0.0
    item.safety_day = core.MIN_TS
    item.gone = False
    item.touched = core.MIN_TS
    return item


# Bytes to prefetch of an item, of a list (its header: the items pointer) and of a lot.
ITEM_SIZE = cython.declare(cython.Py_ssize_t, Item.__basicsize__)
LIST_SIZE = cython.declare(cython.Py_ssize_t, list.__basicsize__)
LOT_SIZE = cython.declare(cython.Py_ssize_t, Lot.__basicsize__)
AHEAD = cython.declare(cython.Py_ssize_t, 8)  # items prefetched ahead in a day's walk
# An item's first lots after its oldest, and demand entries (window starts and units,
# shared ints), prefetched before an evaluation.
LOTS_AHEAD = cython.declare(cython.Py_ssize_t, 4)
ENTRIES_AHEAD = cython.declare(cython.Py_ssize_t, 16)


@cython.cfunc
def prefetch_items(items: list) -> None:  # type: ignore[type-arg]
    """Start loading the items about to be evaluated, then their lots and demand
    lists, then those lists' arrays, then the first later lots,
    each pass once the one before has arrived: scattered over tens of MB, each
    evaluation would otherwise wait for them one after another."""
    item: Item
    for item in items:
        core.prefetch_object(item, ITEM_SIZE)
    for item in items:
        core.prefetch_object(item.lots, LIST_SIZE)
        core.prefetch_object(item.demand, LIST_SIZE)
    for item in items:
        core.prefetch_list(item.lots, LOTS_AHEAD)
        core.prefetch_list(item.demand, ENTRIES_AHEAD)
    for item in items:
        core.prefetch_held(item.lots, LOTS_AHEAD, LOT_SIZE)


@cython.cfunc
def plain_list(values: Any = ()) -> list:  # type: ignore[type-arg]
    """A list of an item's lots or ints, off the collector's list: it can never be
    in a cycle, and tens of thousands of them made one collection in a replay scan
    them all (and again in every older generation's)."""
    made: list = list(values)  # type: ignore[type-arg]
    core.untrack(made)
    return made


@cython.cfunc
def touch(item: Item, end: cython.longlong, changed: list) -> None:  # type: ignore[type-arg]
    """The item joins the changed items of the close `end`, once."""
    if item.touched != end:
        item.touched = end
        changed.append(item)


@cython.ccall
def bands_of(item: Item) -> tuple:  # type: ignore[type-arg]
    """The item's units per age band, for its records and snapshots (made from the C
    array directly: tuple() goes through a list)."""
    return (item.bands[0], item.bands[1], item.bands[2], item.bands[3], item.bands[4])


def lots_of(item: Item) -> list[tuple[int, int]]:
    """The item's lots, oldest first, as (ts, qty) (snapshots, tests)."""
    lots = [(item.oldest_ts, item.oldest_qty)] if item.oldest_qty else []
    return lots + [(lot.ts, lot.qty) for lot in item.lots]


def restore_item(*values: Any) -> Item:
    """An item from its ITEM_FIELDS (snapshots; both builds read the same pickle)."""
    fields = dict(zip(ITEM_FIELDS, values, strict=True))
    lots, bands = fields.pop("lots"), fields.pop("bands")
    oldest_ts, oldest_qty = lots[0] if lots else (0, 0)
    fields["lots"] = plain_list(Lot(*lot) for lot in lots[1:]) if len(lots) > 1 else NO_LOTS
    # A pickle makes one list of the items' shared empty one: share ours again (and
    # builds before 4557f84 kept arrays).
    for name in ("demand", "daily"):
        fields[name] = plain_list(fields[name]) if fields[name] else NO_ENTRIES
    item: Item = Item.__new__(Item)
    for name, value in fields.items():
        setattr(item, name, value)
    item.oldest_ts, item.oldest_qty = oldest_ts, oldest_qty
    item.bands = list(bands)
    item.demand_total = sum(item.demand[1::2])
    item.touched = core.MIN_TS
    return item


@cython.final
@cython.cclass
class LabelCells:
    """An fc label's cells in the metrics this step counts in (found once an
    evaluation, not once a change)."""

    tracked: core.Cell
    stockouts: core.Cell
    spikes: core.Cell
    states: tuple  # type: ignore[type-arg]  # a Cell per STATE_GAUGES
    by_age: tuple  # type: ignore[type-arg]  # a Cell per band


@cython.final
@cython.cclass
class Demand:
    """An item's demand figures at a close (`ItemHealth.scan`)."""

    ordered: cython.longlong  # units ordered in [b - demand_days, b)
    oldest: cython.longlong  # the oldest window start in it (MAX_TS: none)
    units: cython.longlong  # units ordered in the window just closed


@cython.cclass
class ItemHealth:
    """The combine step: every item, its FIFO lots and demand history; gauges,
    records and alerts at each close."""

    NAME: ClassVar[str] = Inventory.NAME
    # 3: an item's days held the current day's units so far; 2: (key, item) checks,
    # day entries, bands in a list
    VERSION: ClassVar[int] = 4
    METRICS: ClassVar[tuple[Metric, ...]] = (
        TRACKED,
        OUT_OF_STOCK,
        AT_RISK,
        EXCESS,
        BELOW_SAFETY,
        BY_AGE,
        STOCKOUTS,
        SPIKES,
    )

    context: CombineContext
    window: cython.longlong
    items: dict  # type: ignore[type-arg]
    by_fc: dict  # type: ignore[type-arg]
    added: list  # type: ignore[type-arg]
    dropped: cython.bint  # an item left since the latest in_order()
    places: dict  # type: ignore[type-arg]
    label_cells: dict  # type: ignore[type-arg]
    pending: dict  # type: ignore[type-arg]
    checks: dict  # type: ignore[type-arg]
    demand: Demand
    closed: cython.longlong  # every window ending at or before this is applied
    shown: list[published.Item] | None
    shown_as_of: cython.longlong
    demand_span: cython.longlong  # demand_days, in µs
    keep_windows: cython.longlong  # how far back window demand is kept
    z: cython.double
    # The metrics this step counts in, with their series (bound again when a snapshot
    # restores those); changes reach the series at the end of each close.
    tracked: core.Counts
    by_age: core.Counts
    stockouts: core.Counts
    spikes: core.Counts
    states: tuple  # type: ignore[type-arg]  # a Counts per STATE_GAUGES
    # The KPI settings this step reads, as C values and exact integer fractions.
    demand_days: cython.longlong
    safety_days: cython.longlong
    spike_days: cython.longlong
    spike_min_units: cython.longlong
    excess_num: int
    excess_den: int
    spike_num: int
    spike_den: int

    def __init__(self, context: CombineContext) -> None:
        self.context = context
        self.window = context.window
        self.items = {}  # fc -> KeyTable of sku -> Item (no (fc, sku) key held per item)
        self.by_fc = {}  # fc -> its Shelf, as of the latest day's close
        self.added = []  # items made since
        self.dropped = False
        self.places = {}  # fc -> Place
        self.pending = {}  # window start -> [order lines, stock moves] of every shard
        # close -> [item] to evaluate then: every time an item waits for is a window
        # close, and closes come one by one, so no ordered timers are needed.
        self.checks = {}
        self.demand = Demand()
        self.closed = core.MIN_TS
        self.shown = None  # `published` as of `shown_as_of`
        kpi = context.kpi
        self.demand_span = kpi.demand_days * DAY
        self.keep_windows = max(self.demand_span, kpi.spike_days * DAY + self.window)
        self.z = NormalDist().inv_cdf(float(kpi.service_level))
        self.demand_days, self.safety_days = kpi.demand_days, kpi.safety_days
        self.spike_days, self.spike_min_units = kpi.spike_days, kpi.spike_min_units
        self.excess_num, self.excess_den = kpi.excess_days.numerator, kpi.excess_days.denominator
        self.spike_num, self.spike_den = kpi.spike_factor.numerator, kpi.spike_factor.denominator
        self.bind()

    def bind(self) -> None:
        """Count in the context's metric series (a restore replaces them)."""
        series = self.context.series
        self.tracked = core.Counts(series[TRACKED.name])
        self.by_age = core.Counts(series[BY_AGE.name])
        self.stockouts = core.Counts(series[STOCKOUTS.name])
        self.spikes = core.Counts(series[SPIKES.name])
        self.states = tuple(core.Counts(series[gauge.name]) for gauge in STATE_GAUGES)
        self.label_cells = {}  # fc label -> its LabelCells

    @cython.cfunc
    def cells_of(self, label: str) -> LabelCells:
        """An fc label's cells in each metric (made on its first use)."""
        cells: LabelCells | None = self.label_cells.get(label)
        if cells is None:
            cells = self.label_cells[label] = LabelCells()
            cells.tracked = self.tracked.cell(label)
            cells.stockouts, cells.spikes = self.stockouts.cell(label), self.spikes.cell(label)
            cells.states = tuple(counts.cell(label) for counts in self.states)
            cells.by_age = tuple(self.by_age.cell((label, band)) for band in BANDS)
            # Every series of the fc exists from its first close on, at 0 where no
            # item is in that state (no series would read as "no data").
            self.stockouts.bump(cells.stockouts, 0)
            self.spikes.bump(cells.spikes, 0)
            counts: core.Counts
            for counts, cell in zip(self.states, cells.states, strict=True):
                counts.bump(cell, 0)
            for cell in cells.by_age:
                self.by_age.bump(cell, 0)
        return cells

    @cython.cfunc
    def flush(self) -> None:
        """The close's changes to the metric series."""
        counts: core.Counts
        for counts in (self.tracked, self.by_age, self.stockouts, self.spikes, *self.states):
            counts.flush()

    def add(self, rows: list[Any]) -> None:
        """One shard's rows."""
        for start, lines, moves, taken in rows:
            pending = self.pending.get(start)
            if pending is None:  # the first shard's rows of the window, taken as they are
                self.pending[start] = [lines, moves, taken]
                continue
            add_units(pending[0], lines)
            for fc, fc_moves in moves.items():
                pending[1].setdefault(fc, []).extend(fc_moves)
            add_units(pending[2], taken)

    def close(self, closed: int, out: list[Any]) -> None:
        """Every shard closed every window ending at or before `closed`: each close
        in turn, as W passed it, those no shard had rows for too (timers and day
        closes happen there)."""
        if self.closed == core.MIN_TS:  # nothing before the first window with rows
            if not self.pending:
                return
            # A shard behind the others may still send rows for windows from
            # `closed` on, before the earliest one any shard sent so far.
            self.closed = min(*self.pending, closed)
        while self.closed + self.window <= closed:
            self.close_window(self.closed + self.window, out)
            self.closed += self.window
        self.flush()

    def published(self) -> list[published.Item]:
        """Every tracked item at its latest evaluation, for the web API. Called from
        the HTTP server's threads: it copies the items first. Items change only at a
        close, so the list is made once per close (18k items took 52 ms, the GIL
        held, for each poll of each wall display) and never changed after."""
        if self.shown is not None and self.shown_as_of == self.closed:
            return self.shown
        shown = []
        item: Item
        for skus in list(self.items.values()):
            for item in list(skus.values()):
                if item.gone:
                    continue
                now = health(item, "", "", self.demand_days)  # as of its latest close
                shown.append(
                    published.Item(
                        now.fc,
                        now.sku,
                        now.on_hand,
                        now.demand_per_day,
                        now.cover_days,
                        now.safety_stock,
                        now.states,
                        self.closed,
                        dict(zip(BANDS, bands_of(item), strict=True)),
                    )
                )
        self.shown, self.shown_as_of = shown, self.closed
        return shown

    @cython.cfunc
    # The day's columns, written as C values.
    @cython.locals(unit_cells=cython.longlong[:], safety_cells=cython.double[:])  # type: ignore[misc]
    def close_window(self, end: cython.longlong, out: list[Any]) -> None:
        start: cython.longlong = end - self.window
        changed: list = []  # type: ignore[type-arg]  # each item once (its `touched` is end)
        item: Item
        for item in self.checks.pop(end, ()):
            if item.check == end and not item.gone:
                item.check = 0
                touch(item, end, changed)
        rows = self.pending.pop(start, None)
        if rows is not None:
            self.apply(start, end, rows[0], rows[1], rows[2], changed)
        if end % DAY:
            # Items in any order (their figures do not depend on it), their alerts
            # in item order (stable: an item's stockout before its spike).
            alerts: list = []  # type: ignore[type-arg]
            prefetch_items(changed)
            for item in changed:
                self.evaluate(item, end, alerts)
            if len(alerts) > 1:
                alerts.sort(key=item_order)
            out += alerts
            return
        # A day's close: sigma moves on for items ordered in the last safety_days,
        # and every item with stock or demand gets its `sku_health` record (if
        # anything takes records: making them was ~4% of an order-heavy replay).
        records: cython.bint = self.context.records
        walk: list = self.in_order()  # type: ignore[type-arg]
        most: cython.Py_ssize_t = 0  # records at most
        fc_items: list  # type: ignore[type-arg]
        if records:
            for fc_items in walk:
                most += len(fc_items)
        # Columns filled in place (an array's append is a method call per value).
        units, safety = array("q", bytes(16 * most)), array("d", bytes(8 * most))
        unit_cells, safety_cells = units, safety
        fcs: list = []  # type: ignore[type-arg]
        skus: list = []  # type: ignore[type-arg]
        states: list = []  # type: ignore[type-arg]
        bands: list = []  # type: ignore[type-arg]
        made: cython.Py_ssize_t = 0
        index: cython.Py_ssize_t
        count: cython.Py_ssize_t
        for fc_items in walk:
            count = len(fc_items)
            for index in range(count):
                # Items in sku order lie anywhere in memory: load those ahead.
                if index + AHEAD < count:
                    core.prefetch_object(fc_items[index + AHEAD], ITEM_SIZE)
                    item = fc_items[index + AHEAD // 2]  # its own prefetch has arrived
                    core.prefetch_object(item.daily, LIST_SIZE)
                    core.prefetch_object(item.demand, LIST_SIZE)
                item = fc_items[index]
                self.add_today(item, end)
                if item.touched == end:
                    self.evaluate(item, end, out)
                    if item.gone:
                        continue
                elif len(item.daily):
                    self.resafe(item, end)
                if records and (item.on_hand != 0 or item.ordered > 0):
                    fcs.append(item.fc)
                    skus.append(item.sku)
                    unit_cells[2 * made] = item.on_hand
                    unit_cells[2 * made + 1] = item.ordered
                    safety_cells[made] = item.safety
                    states.append(STATE_SETS[item.states])
                    bands.append(bands_of(item))
                    made += 1
        if made:
            if made < most:  # a copy: the cells hold the arrays' buffers
                units, safety = units[: 2 * made], safety[:made]
            out.append(
                SkuHealthDay(
                    format_time(end - DAY),
                    format_time(end),
                    self.demand_days,
                    fcs,
                    skus,
                    units,
                    safety,
                    states,
                    bands,
                )
            )

    @cython.cfunc
    def apply(
        self,
        start: cython.longlong,
        end: cython.longlong,
        lines: dict,  # type: ignore[type-arg]
        moves: dict,  # type: ignore[type-arg]
        taken: dict,  # type: ignore[type-arg]
        changed: list,  # type: ignore[type-arg]
    ) -> None:
        """A closed window's order lines, each fc's positive moves in (ts, event_id)
        order (so each item's are: FIFO), then the units taken; each item they
        change joins `changed` once."""
        item: Item
        self.prefetch(lines, moves, taken)
        self.apply_units(start, end, lines, True, changed)
        move: Move
        fc_moves: list  # type: ignore[type-arg]
        for fc, fc_moves in moves.items():
            skus = self.skus_of(fc)
            fc_moves.sort()  # mostly in order already: a pass
            for move in fc_moves:
                item = self.item(skus, fc, move.sku, start)
                take(item, move.ts, move.qty)
                item.active = start
                touch(item, end, changed)
        self.apply_units(start, end, taken, False, changed)

    @cython.cfunc
    def apply_units(
        self,
        start: cython.longlong,
        end: cython.longlong,
        units_by_fc: dict,  # type: ignore[type-arg]
        ordered: cython.bint,
        changed: list,  # type: ignore[type-arg]
    ) -> None:
        """A closed window's units per fc and sku: ordered (demand entries) or
        taken (FIFO); each item joins `changed` once."""
        item: Item
        start_int: object = start  # one int for every item's entry
        units: dict  # type: ignore[type-arg]
        count: cython.longlong
        for fc, units in units_by_fc.items():
            skus = self.skus_of(fc)
            for sku, count in units.items():
                item = self.item(skus, fc, sku, start)
                if ordered:
                    add_entry(item, start_int, count)
                else:
                    take(item, start, -count)
                item.active = start
                touch(item, end, changed)

    @cython.cfunc
    def in_order(self) -> list:  # type: ignore[type-arg]
        """Every item in (fc, sku) order (records come in the same order however the
        input was batched), as each fc's items by sku: those of the latest day's
        close with the items made since put in their places, and those gone
        dropped. Skus are compared as strings: (fc, sku) tuples cost several times
        more to compare."""
        item: Item
        shelf: Shelf
        if self.added:
            made: dict = {}  # type: ignore[type-arg]  # fc -> its new items
            for item in self.added:
                made.setdefault(item.fc, []).append(item)
            self.added = []
            for fc, new in made.items():
                found: Shelf | None = self.by_fc.get(fc)
                if found is None:
                    found = self.by_fc[fc] = Shelf()
                found.place(new)
        if self.dropped:
            self.dropped = False
            for shelf in self.by_fc.values():
                shelf.drop_gone()
        walk = []
        for fc in sorted(self.by_fc):
            shelf = self.by_fc[fc]
            walk.append(shelf.items)
        return walk

    @cython.cfunc
    def prefetch(self, lines: dict, moves: dict, taken: dict) -> None:  # type: ignore[type-arg]
        """Start loading the items a window names: looked up one by one, each lookup
        would wait for memory (an item is a few hundred bytes, tens of thousands
        of them)."""
        for by_fc in (lines, taken):
            for fc, units in by_fc.items():
                table = self.items.get(fc)
                if table is not None:
                    table.prefetch(list(units), ITEM_SIZE)
        move: Move
        fc_moves: list  # type: ignore[type-arg]
        for fc, fc_moves in moves.items():
            table = self.items.get(fc)
            if table is not None:
                skus = []
                # A loop, not a comprehension: `move` is typed, so its sku is read from
                # the object, not looked up as an attribute.
                for move in fc_moves:
                    skus.append(move.sku)  # noqa: PERF401
                table.prefetch(skus, ITEM_SIZE)

    @cython.cfunc
    def skus_of(self, fc: str) -> Any:
        """The fc's KeyTable, sku -> Item (a missing sku reads as None), made on its
        first item."""
        skus = self.items.get(fc)
        if skus is None:
            skus = self.items[fc] = key_table()
        return skus

    @cython.cfunc
    def item(self, skus: Any, fc: str, sku: str, start: cython.longlong) -> Item:
        """The item of sku in fc's table `skus`, made on its first event."""
        item: Item | None = skus[sku]
        if item is None:
            place: Place | None = self.places.get(fc)
            if place is None:
                place = self.places[fc] = self.new_place(fc, self.context.label("fc", fc))
            item = skus[sku] = new_item(place, sku, start)
            self.added.append(item)
            self.tracked.bump(place.cells.tracked, 1)
        return item

    @cython.cfunc
    def evaluate(self, item: Item, end: cython.longlong, out: list) -> None:  # type: ignore[type-arg]
        """The item's states at the close `end`: gauges, alerts, next timer."""
        if item.on_hand == 0 and item.active + self.window + QUIET <= end:
            self.leave(item)
            return
        prune(item, end - self.keep_windows)
        demand: Demand = self.demand
        self.scan(item, end)
        day: cython.longlong = end - end % DAY
        ordered: cython.longlong = demand.ordered
        on_hand: cython.longlong = item.on_hand
        place: Place = item.place
        states: cython.int = 0
        if ordered > 0 and on_hand <= 0:
            states |= OUT_BIT
        # cover = on_hand / (ordered / demand_days) against days, as fractions (§2),
        # in Python ints: exact however large (C products would wrap past 2^63)
        exact_on_hand: int = on_hand
        cover = exact_on_hand * self.demand_days
        if on_hand > 0 and ordered > 0 and cover * place.lead_den < place.lead_num * ordered:
            states |= AT_RISK_BIT
        if on_hand > 0 and (ordered == 0 or cover * self.excess_den > self.excess_num * ordered):
            states |= EXCESS_BIT
        states |= self.safety_state(item, day)
        cells: LabelCells = place.cells
        self.restate(item, states, cells)
        if states & OUT_BIT and not item.states & OUT_BIT:
            self.stockouts.bump(cells.stockouts, 1)
            out.append(stockout(item, end, ordered, self.demand_days, self.context.decided()))
        item.states, item.ordered = states, ordered
        self.spike(item, end, out, cells)
        aging: cython.longlong = self.rebands(item, end, cells)
        self.schedule(item, end, aging)

    @cython.cfunc
    def scan(self, item: Item, end: cython.longlong) -> None:
        """The item's Demand at the close `end`, from its window entries: their
        total less the few older than the demand window (kept for spikes), and the
        last one; not a pass over them all (a week of hourly windows)."""
        demand: Demand = self.demand
        entries: list = item.demand  # type: ignore[type-arg]
        since: cython.longlong = end - self.demand_span
        demand.ordered = item.demand_total
        demand.oldest = core.MAX_TS
        count: cython.Py_ssize_t = len(entries)
        index: cython.Py_ssize_t = 0
        at: cython.longlong
        while index < count:
            at = entries[index]
            if at >= since:
                demand.oldest = at
                break
            demand.ordered -= cython.cast(cython.longlong, entries[index + 1])
            index += 2
        demand.units = 0
        if count:
            at = entries[count - 2]
            if at == end - self.window:
                demand.units = entries[count - 1]

    @cython.cfunc
    def add_today(self, item: Item, end: cython.longlong) -> None:
        """The units of the day ending at `end` into the item's days, from its demand
        entries (kept for demand_days, at least a day)."""
        entries: list = item.demand  # type: ignore[type-arg]
        index: cython.Py_ssize_t = len(entries) - 2
        units: cython.longlong = 0
        at: cython.longlong
        while index >= 0:
            at = entries[index]
            if at < end - DAY:
                break
            units += cython.cast(cython.longlong, entries[index + 1])
            index -= 2
        if units:
            prune_days(item, end - DAY - self.safety_days * DAY)
            add_day(item, end - DAY, units)

    @cython.cfunc
    def resafe(self, item: Item, end: cython.longlong) -> None:
        """A day's close for an item nothing changed since its latest evaluation:
        of its figures only the safety stock moves on with the day (a change in its
        demand window, age bands, spike or quiet days comes with a timer)."""
        states: cython.int = item.states & ~BELOW_BIT | self.safety_state(item, end - end % DAY)
        self.restate(item, states, item.place.cells)
        item.states = states

    @cython.cfunc
    def safety_state(self, item: Item, day: cython.longlong) -> cython.int:
        """The item's safety stock as of the day starting at `day` (the days before
        it no longer change, so once a day), and BELOW_BIT if on hand is below it."""
        if item.safety_day != day:
            prune_days(item, day - self.safety_days * DAY)
            item.safety = self.z * sigma(item, day, self.safety_days) * item.place.lead_root
            item.safety_day = day
        return BELOW_BIT if item.safety > 0 and item.on_hand < item.safety else 0

    @cython.cfunc
    def new_place(self, fc: str, label: str) -> Place:
        """An fc seen for the first time (since the start or a restore)."""
        place: Place = Place()
        place.fc, place.label = fc, label
        place.cells = self.cells_of(place.label)
        days = self.context.kpi.lead_time(fc)
        place.lead_num, place.lead_den = days.numerator, days.denominator
        place.lead_root = math.sqrt(days)
        return place

    @cython.cfunc
    def spike(self, item: Item, end: cython.longlong, out: list, cells: LabelCells) -> None:  # type: ignore[type-arg]
        """u, the window just closed, against the mean of the same window on each of
        the spike_days days before (exactly: u * days >= factor * their sum)."""
        start: cython.longlong = end - self.window
        units: cython.longlong = self.demand.units
        before: cython.longlong = 0
        day: cython.longlong
        spiking = False
        if units >= self.spike_min_units and item.created < start - self.spike_days * DAY:
            for day in range(1, self.spike_days + 1):
                before += units_of(item.demand, start - day * DAY)
            exact_units: int = units  # Python ints: exact however large
            spiking = exact_units * self.spike_days * self.spike_den >= self.spike_num * before
            if spiking and not item.spiking:
                self.spikes.bump(cells.spikes, 1)
                baseline = before / self.spike_days
                out.append(spike(item, start, end, units, baseline, self.context.decided()))
        item.spiking = spiking

    @cython.cfunc
    @cython.locals(units=cython.longlong[5])  # type: ignore[misc, valid-type]  # C array: per band
    def rebands(self, item: Item, end: cython.longlong, cells: LabelCells) -> cython.longlong:
        """The item's units per age band at `end`, and their gauges; return when a
        unit next enters a new band (MAX_TS: never)."""
        units = [0, 0, 0, 0, 0]
        soonest: cython.longlong = core.MAX_TS
        band: cython.int
        age: cython.longlong
        ts: cython.longlong = item.oldest_ts
        qty: cython.longlong = item.oldest_qty
        lot: Lot
        index: cython.Py_ssize_t
        first: cython.Py_ssize_t = -1 if qty else 0  # -1: the oldest lot, in the item
        for index in range(first, len(item.lots)):
            if index >= 0:
                lot = item.lots[index]
                ts, qty = lot.ts, lot.qty
            age = (end - ts) // DAY
            band = 0
            while band < AGED and age >= BAND_STARTS[band]:
                band += 1
            units[band] += qty
            if band < AGED:
                soonest = min(soonest, ts + BAND_STARTS[band] * DAY)
        for band in range(AGED + 1):
            if units[band] != item.bands[band]:
                self.by_age.bump(cells.by_age[band], units[band] - item.bands[band])
                item.bands[band] = units[band]
        return soonest

    @cython.cfunc
    def restate(self, item: Item, states: cython.int, cells: LabelCells) -> None:
        """The state gauges, from the item's states to `states`."""
        if states == item.states:
            return
        bit: cython.int
        index: cython.int
        counts: core.Counts
        for index in range(len(STATE_GAUGES)):
            bit = 1 << index
            if states & bit and not item.states & bit:
                counts = self.states[index]
                counts.bump(cells.states[index], 1)
            elif item.states & bit and not states & bit:
                counts = self.states[index]
                counts.bump(cells.states[index], -1)

    @cython.cfunc
    def schedule(self, item: Item, end: cython.longlong, aging: cython.longlong) -> None:
        """The next close at which time alone changes the item (`aging`: a unit
        enters a new age band), as a timer."""
        window: cython.longlong = self.window
        soonest: cython.longlong = aging
        if item.spiking:
            soonest = end + window  # the next close resets it, unless it spikes again
        oldest: cython.longlong = self.demand.oldest
        if oldest != core.MAX_TS:  # then it leaves [b - D, b)
            soonest = min(soonest, oldest + self.demand_span + window)
        if item.on_hand == 0:
            soonest = min(soonest, item.active + window + QUIET)
        if soonest == core.MAX_TS:
            return
        soonest = soonest + (window - soonest % window) % window  # a close
        if item.check == 0 or soonest < item.check:
            item.check = soonest
            waiting: list | None = self.checks.get(soonest)  # type: ignore[type-arg]
            if waiting is None:
                self.checks[soonest] = [item]
            else:
                waiting.append(item)

    @cython.cfunc
    def leave(self, item: Item) -> None:
        """On hand 0 and 90 quiet days: no longer tracked (a later event makes it anew)."""
        cells: LabelCells = item.place.cells
        self.restate(item, 0, cells)
        self.tracked.bump(cells.tracked, -1)
        for band in range(AGED + 1):
            if item.bands[band]:
                self.by_age.bump(cells.by_age[band], -item.bands[band])
        item.gone = True
        del self.items[item.fc][item.sku]
        self.dropped = True

    def export_state(self) -> Any:
        return {
            "items": {
                (item.fc, item.sku): item for skus in self.items.values() for item in skus.values()
            },
            "pending": {
                start: list(window_state(start, *rows)) for start, rows in self.pending.items()
            },
            "closed": self.closed,
            "timers": sorted(
                (when, (item.fc, item.sku))
                for when, waiting in self.checks.items()
                for item in waiting
                if item.check == when and not item.gone
            ),
        }

    def restore_state(self, state: Any) -> None:
        self.bind()
        self.pending = {start: list(window_of(saved)) for start, saved in state["pending"].items()}
        self.closed = state["closed"]
        self.shown = None
        self.items, self.checks = {}, {}
        self.places = {}
        item: Item
        for item in state["items"].values():
            self.skus_of(item.fc)[item.sku] = item
            place: Place | None = self.places.get(item.fc)
            if place is None:
                place = self.places[item.fc] = self.new_place(item.fc, item.label)
            item.place = place
        self.by_fc, self.added, self.dropped = {}, list(state["items"].values()), False
        for when, (fc, sku) in state["timers"]:
            found = self.items.get(fc, {}).get(sku)
            if found is not None:
                self.checks.setdefault(when, []).append(found)


# --- an item's history and lots


SKU_OF = attrgetter("sku")
# An insert moves half the shelf's pointers on average (a memmove), a sort calls the
# key of every item and compares: inserting should cost less for new items up to
# about a sixteenth of the shelf (an estimate; the opening stock's days make a few
# items a day, and the day the stream starts makes most at once).
INSERTS_PER_SORT = 16


@cython.final
@cython.cclass
class Shelf:
    """An fc's items in sku order, with their skus beside them (bisected as strings,
    without a key function's call per probe)."""

    items: list  # type: ignore[type-arg]
    skus: list  # type: ignore[type-arg]

    def __init__(self) -> None:
        self.items, self.skus = [], []

    def place(self, new: list[Item]) -> None:
        """Put new items (in any order) in their places: a few each by bisection and
        an insert (a move of the pointers after it), more by sorting the shelf once
        (the sort takes its sorted part as one run)."""
        place: cython.Py_ssize_t
        item: Item
        if len(new) * INSERTS_PER_SORT < len(self.items):
            for item in new:
                place = bisect_left(self.skus, item.sku)
                self.items.insert(place, item)
                self.skus.insert(place, item.sku)
            return
        self.items += new
        self.items.sort(key=SKU_OF)
        self.skus = [item.sku for item in self.items]

    def drop_gone(self) -> None:
        """Take off the items that left."""
        self.items = [item for item in self.items if not item.gone]
        self.skus = [item.sku for item in self.items]


@cython.cfunc
def add_entry(item: Item, start: object, units: cython.longlong) -> None:
    """Add units to the item's entry of `start` (entries come in time order)."""
    entries: list = item.demand  # type: ignore[type-arg]
    if entries is NO_ENTRIES:
        entries = item.demand = plain_list()
    item.demand_total += units
    last: cython.Py_ssize_t = len(entries) - 2
    if last >= 0 and entries[last] == start:
        entries[last + 1] = cython.cast(cython.longlong, entries[last + 1]) + units
    else:
        entries.append(start)
        entries.append(units)


@cython.cfunc
def prune(item: Item, since: cython.longlong) -> None:
    """Drop the item's demand entries before `since`."""
    entries: list = item.demand  # type: ignore[type-arg]
    drop: cython.Py_ssize_t = 0
    at: cython.longlong
    while drop < len(entries):
        at = entries[drop]
        if at >= since:
            break
        item.demand_total -= cython.cast(cython.longlong, entries[drop + 1])
        drop += 2
    if drop:
        del entries[:drop]


@cython.cfunc
def units_of(entries: list, start: cython.longlong) -> cython.longlong:  # type: ignore[type-arg]
    """The units of the demand entry of window `start` (0: none), by bisection."""
    low: cython.Py_ssize_t = 0
    high: cython.Py_ssize_t = len(entries) // 2
    middle: cython.Py_ssize_t
    at: cython.longlong
    while low < high:
        middle = (low + high) // 2
        at = entries[2 * middle]
        if at < start:
            low = middle + 1
        else:
            high = middle
    if low < len(entries) // 2:
        at = entries[2 * low]
        if at == start:
            return cython.cast(cython.longlong, entries[2 * low + 1])
    return 0


@cython.cfunc
def add_day(item: Item, day: cython.longlong, units: cython.longlong) -> None:
    """Add units to the item's day starting at `day` (days come in time order; the
    days between count 0)."""
    daily: list = item.daily  # type: ignore[type-arg]
    if daily is NO_ENTRIES:
        daily = item.daily = plain_list()
    if not daily:
        item.first_day = day
    index: cython.Py_ssize_t = (day - item.first_day) // DAY
    while len(daily) <= index:
        daily.append(0)
    daily[index] = cython.cast(cython.longlong, daily[index]) + units


@cython.cfunc
def prune_days(item: Item, since: cython.longlong) -> None:
    """Drop the item's days before `since`, and the days without orders that then
    lead (no days left: nothing ordered since)."""
    daily: list = item.daily  # type: ignore[type-arg]
    drop: cython.Py_ssize_t = 0
    while drop < len(daily) and (item.first_day + drop * DAY < since or daily[drop] == 0):
        drop += 1
    if drop:
        del daily[:drop]
        item.first_day += drop * DAY


@cython.cfunc
def sigma(item: Item, day: cython.longlong, count: cython.longlong) -> cython.double:
    """Population standard deviation of units ordered per day over the `count`
    whole days before `day` (days without orders count as 0): the variance in
    exact integers, (n * sum(x^2) - sum(x)^2) / n^2, then one square root."""
    daily: list = item.daily  # type: ignore[type-arg]
    if not daily:  # no day with orders (most items at most closes): the loop's 0.0
        return 0.0
    total = squares = 0  # Python ints: exact however large
    index: cython.Py_ssize_t
    for index in range(len(daily)):
        if day - count * DAY <= item.first_day + index * DAY < day:
            units = daily[index]
            total += units
            squares += units * units
    return math.sqrt(count * squares - total * total) / count


@cython.cfunc
def take(item: Item, ts: cython.longlong, qty: cython.longlong) -> None:
    """A stock move, FIFO (§3.2): a positive quantity first fills the shortfall,
    then adds a lot dated ts; a negative one takes from the oldest lots, and what
    they cannot cover becomes shortfall. The lots hold max(on hand, 0)."""
    item.on_hand += qty
    lot: Lot
    if qty > 0:
        filled = min(qty, item.shortfall)
        item.shortfall -= filled
        if qty == filled:
            return
        if not item.oldest_qty:
            item.oldest_ts, item.oldest_qty = ts, qty - filled
        else:
            if item.lots is NO_LOTS:
                item.lots = plain_list()
            item.lots.append(Lot(ts, qty - filled))
        return
    need: cython.longlong = -qty
    while need > 0 and item.oldest_qty:
        if item.oldest_qty > need:
            item.oldest_qty -= need
            return
        need -= item.oldest_qty
        item.oldest_ts = item.oldest_qty = 0
        if item.lots:  # the next lot becomes the oldest
            lot = item.lots.pop(0)
            item.oldest_ts, item.oldest_qty = lot.ts, lot.qty
    item.shortfall += need


# --- records


def item_order(alert: Alert) -> tuple[str, str]:
    """An alert's item, (fc, sku): alerts of one close come in this order."""
    return alert.record["fc"], alert.record["sku"]


@cython.cfunc
def health(item: Item, window_start: str, window_end: str, demand_days: cython.longlong) -> Any:
    """The item's `sku_health` record at its latest evaluation (contract §5)."""
    return sku_health(
        item.fc,
        item.sku,
        window_start,
        window_end,
        item.on_hand,
        item.ordered,
        demand_days,
        item.safety,
        STATE_SETS[item.states],
        bands_of(item),
    )


def stockout(item: Item, end: int, ordered: int, demand_days: int, decided: str) -> Alert:
    """A `stockout` alert (contract §5)."""
    window_end = format_time(end)
    return Alert(
        f"stockout|{key_part(item.fc)}|{key_part(item.sku)}|{window_end}",
        {
            "alert": "stockout",
            "fc": item.fc,
            "sku": item.sku,
            "window_end": window_end,
            "on_hand": item.on_hand,
            "demand_per_day": ordered / demand_days,
            "decided_ts": decided,
        },
    )


def spike(item: Item, start: int, end: int, units: int, baseline: float, decided: str) -> Alert:
    """A `demand_spike` alert (contract §5)."""
    window_end = format_time(end)
    return Alert(
        f"demand_spike|{key_part(item.fc)}|{key_part(item.sku)}|{window_end}",
        {
            "alert": "demand_spike",
            "fc": item.fc,
            "sku": item.sku,
            "window_start": format_time(start),
            "window_end": window_end,
            "units": units,
            "baseline": baseline,
            "decided_ts": decided,
        },
    )
