# cython: language_level=3
"""The event-time runtime of one shard. It knows no KPI.

A shard owns the entities of the input partitions routed to it. The runtime
admits its events (contract §2: rejects to the dead-letter output, duplicates,
late events), keeps the watermark W per source partition, fires event-time
timers as W passes them, closes tumbling windows, caps label values and takes
snapshots. Everything else is a `Family`: a KPI family or an entity, with its
metric declarations, typed state, handlers per event kind, timers and window
close step. The runtime hands each family the shard itself as its context: W,
label lookup, its metric series, timers and typed outputs.

Outcomes are decided only when later input can no longer change them (an event
with ts < W is late), so results do not depend on the arrival order of events
that are not late. Timers fire at the exact event that moves W past them, so
they do not depend on batching either.

This module runs interpreted, and compiled by Cython from this same source
(`core.pxd` declares its types) where a C compiler was found at install.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from heapq import heappop, heappush
from typing import Any, ClassVar

try:
    import cython
except ModuleNotFoundError:  # Cython is needed only to compile this module
    from flows import _cython as cython  # type: ignore[no-redef]

if cython.compiled:
    from cython.cimports.libc.math import floor
else:
    from math import floor

from flows.declare import Metric
from flows.decode import Reject
from flows.labels import OTHER, LabelCap
from flows.ledger import Ledger
from flows.runtime import consts, pipeline
from flows.runtime.consts import MAX_DURATION
from flows.runtime.ids import id_table, ids_by_hour
from flows.runtime.outputs import Alert, DeadLetter, KpiRecord, Output, Partials
from flows.timeutil import US_PER_SECOND, format_time

if not cython.compiled:  # the compiled build has these in C (core.pxd)
    HOUR = consts.HOUR
    MAX_TS = consts.MAX_TS
    MIN_TS = consts.MIN_TS
    NEVER = consts.NEVER
    TAG_BITS = consts.TAG_BITS
    TAG_MASK = consts.TAG_MASK
    TIMER_BUCKET = consts.TIMER_BUCKET

    def prefetch_object(obj: object, size: int) -> None:
        """Start loading the memory of an object that is about to be read, so that
        the misses of several overlap (C in the compiled build, core.pxd):
        interpreted, there is nothing to gain."""

    def prefetch_list(items: list[Any], count: int) -> None:
        """The array of a list's item pointers, as `prefetch_object` (C compiled)."""

    def prefetch_held(items: list[Any], count: int, size: int) -> None:
        """The objects a list holds, as `prefetch_object` (C compiled)."""

    def untrack(container: object) -> None:
        """Take a container that can never be in a cycle off the collector's list,
        so that collections do not scan it (C in the compiled build, core.pxd):
        interpreted, the collector keeps it."""


def constants() -> dict[str, int]:
    """The time constants this build computes with (a test compares them with
    `flows.runtime.consts`)."""
    return {
        "MIN_TS": MIN_TS,
        "MAX_TS": MAX_TS,
        "NEVER": NEVER,
        "HOUR": HOUR,
        "TAG_BITS": TAG_BITS,
        "TAG_MASK": TAG_MASK,
        "TIMER_BUCKET": TIMER_BUCKET,
    }


@cython.ccall
def add(series: dict, key: object, amount: object = 1) -> None:  # type: ignore[type-arg]
    """Add to a counter or gauge series."""
    series[key] = series.get(key, 0) + amount


# An observation's bound, in µs (142 years): absurd input (a page load of 1e300 ms
# is valid) counts as that much, so that a cell's 64 bits hold what it adds up
# between flushes (spilled into the series, a Python int, long before they could not).
OBSERVATION_LIMIT = cython.declare(cython.longlong, 1 << 52)
SPILL = cython.declare(cython.longlong, 1 << 62)


@cython.ccall
def whole_us(seconds: cython.double) -> cython.longlong:
    """Seconds as the nearest whole microseconds (`floor(seconds * 1e6 + 0.5)` in
    doubles, as both builds compute it), within
    ±OBSERVATION_LIMIT: the unit a histogram's sum adds in, exactly, so that no
    order of observations, of restores or of shards shows in it (floats added in
    another order differ in their last bits). Durations are whole µs already; a
    page load's ms beyond three decimals round."""
    us: cython.double = seconds * 1e6
    if us >= OBSERVATION_LIMIT:
        return OBSERVATION_LIMIT
    if us <= -OBSERVATION_LIMIT:
        return -OBSERVATION_LIMIT
    return cython.cast(cython.longlong, floor(us + 0.5))


@cython.final
@cython.cclass
class Observed:
    """One series of a histogram: its observations per bucket (+Inf last) and
    their sum in whole µs (`whole_us`), since the last flush, in C."""

    key: object
    counts: array[int]  # a long long[:] in C (core.pxd)
    sum_us: cython.longlong
    fresh: cython.bint  # observed since the last flush

    def __init__(self, key: object, buckets: int) -> None:
        self.key, self.counts = key, array("q", bytes(8 * buckets))
        self.sum_us, self.fresh = 0, False


@cython.final
@cython.cclass
class Histogram:
    """A family's histogram metric, counted in C like `Counts`: an observation
    finds its series' cell and bucket, and the batch's counts and sum reach the
    ledger's series at its end (`flush`): a count per bucket, the +Inf count and
    the sum in whole µs, a Python int (not cumulated; the exposition cumulates,
    and writes the sum in seconds). Updating the ledger's list per observation
    made an int and a float object each time."""

    series: dict  # type: ignore[type-arg]
    bounds: array[float]  # a double[:] in C (core.pxd)
    size: cython.Py_ssize_t
    cells: dict  # type: ignore[type-arg]
    touched: list  # type: ignore[type-arg]

    def __init__(self, series: dict[Any, Any], buckets: tuple[float, ...]) -> None:
        self.series, self.bounds, self.size = series, array("d", buckets), len(buckets)
        self.cells, self.touched = {}, []

    @cython.ccall
    def observe(self, key: object, value: cython.double) -> None:
        """One observation in the series of `key`."""
        cell: Observed | None = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Observed(key, self.size + 1)
        if not cell.fresh:
            cell.fresh = True
            self.touched.append(cell)
        index: cython.Py_ssize_t = 0
        # self.bounds, not a local: a memoryview copied costs two atomic operations.
        while index < self.size and self.bounds[index] < value:
            index += 1
        cell.counts[index] += 1
        cell.sum_us += whole_us(value)
        if cell.sum_us > SPILL or cell.sum_us < -SPILL:
            self.add_sum(cell)

    @cython.cfunc
    def series_of(self, cell: Observed) -> list:  # type: ignore[type-arg]
        counts: list | None = self.series.get(cell.key)  # type: ignore[type-arg]
        if counts is None:
            counts = self.series[cell.key] = [0] * (self.size + 2)
        return counts

    @cython.cfunc
    def add_sum(self, cell: Observed) -> None:
        """The cell's sum into its series' (a Python int: exact however large)."""
        self.series_of(cell)[self.size + 1] += cell.sum_us
        cell.sum_us = 0

    @cython.ccall
    def flush(self) -> None:
        """Add the counts and sums to the ledger's series."""
        cell: Observed
        index: cython.Py_ssize_t
        for cell in self.touched:
            counts = self.series_of(cell)
            for index in range(self.size + 1):
                if cell.counts[index]:
                    counts[index] += cell.counts[index]
                    cell.counts[index] = 0
            self.add_sum(cell)
            cell.fresh = False
        self.touched = []


@cython.final
@cython.cclass
class Cell:
    """One integer series' change since the last flush."""

    key: object
    delta: cython.longlong

    def __init__(self, key: object) -> None:
        self.key, self.delta = key, 0


@cython.final
@cython.cclass
class Counts:
    """An integer metric (counter or gauge) of a family, counted in C cells: an
    update is C arithmetic, and each batch's changes reach the ledger's series at
    the end of the batch (`flush`, from the runtime). Updating the ledger's dict
    per event cost a tenth of a replay (a lookup and a store per update)."""

    series: dict  # type: ignore[type-arg]
    cells: dict  # type: ignore[type-arg]
    touched: list  # type: ignore[type-arg]

    def __init__(self, series: dict[Any, Any]) -> None:
        self.series, self.cells, self.touched = series, {}, []

    @cython.ccall
    def cell(self, key: object) -> Cell:
        """The cell of one series (a family may keep it, to skip the lookup)."""
        cell: Cell | None = self.cells.get(key)
        if cell is None:
            cell = self.cells[key] = Cell(key)
        return cell

    @cython.ccall
    def add(self, key: object, amount: cython.longlong = 1) -> None:
        """Add to the series of `key`."""
        self.bump(self.cell(key), amount)

    @cython.ccall
    def bump(self, cell: Cell, amount: cython.longlong) -> None:
        """Add to a cell of this metric."""
        if cell.delta == 0:
            self.touched.append(cell)
        cell.delta += amount

    @cython.ccall
    def flush(self) -> None:
        """Add the changes to the ledger's series."""
        cell: Cell
        series: dict = self.series  # type: ignore[type-arg]
        for cell in self.touched:  # a series touched at all exists, even back at 0
            series[cell.key] = series.get(cell.key, 0) + cell.delta
            cell.delta = 0
        self.touched = []


@cython.final
@cython.no_gc  # a time, a slot, a key and a record: never in a cycle
@cython.cclass
class Timer:
    """Call family `slot >> TAG_BITS` with (tag, key, ref) once W >= when. Timers
    are taken in (when, slot, key) order; `ref` is the record the key names, if
    the family gave it, so that no lookup is needed to find it again."""

    when: cython.longlong
    slot: cython.longlong
    key: object
    ref: object

    def __init__(self, when: int, slot: int, key: object, ref: object = None) -> None:
        self.when, self.slot, self.key, self.ref = when, slot, key, ref

    def __lt__(self, other: Timer) -> bool:
        if self.when != other.when:
            return self.when < other.when
        if self.slot != other.slot:
            return self.slot < other.slot
        return self.key < other.key  # type: ignore[no-any-return, operator]

    def __reduce__(self) -> Any:
        return (Timer, (self.when, self.slot, self.key, self.ref))


@cython.final
@cython.cclass
class Timers:
    """Event-time timers, taken in order once W >= their time.

    One heap of every open entity's deadlines (~3 per open order) cost a fifth
    of a replay, one cache miss per level. Here timers wait unsorted in lists per
    bucket of time (`far`); once W reaches a bucket it is sorted once (`ready`,
    latest first, taken from the end), and timers set for before its end go to a
    small heap (`late`). Ready and late timers all precede far ones, so they come
    out in the order of one heap. A timer mostly goes to the bucket the latest
    timer of its family and tag went to (`recent`, by slot), which saves the
    bucket's lookup.
    """

    ready: list  # type: ignore[type-arg]
    late: list  # type: ignore[type-arg]
    near_end: cython.longlong
    far: dict  # type: ignore[type-arg]
    far_buckets: list  # type: ignore[type-arg]
    recent: list  # type: ignore[type-arg]
    recent_buckets: list  # type: ignore[type-arg]
    size: cython.Py_ssize_t

    def __init__(self, timers: Iterable[Timer] = ()) -> None:
        self.ready, self.late = [], []
        self.near_end = MIN_TS
        self.far = {}  # bucket -> [Timer]
        self.far_buckets = []  # heap of the buckets in `far`
        # Per slot, the far bucket its latest timer went to, and that bucket's list
        # (still far: a bucket leaves only once near_end passes it, and timers
        # before near_end go to `late`).
        self.recent, self.recent_buckets = [], []
        self.size = 0
        for timer in timers:
            self.push(timer)

    @cython.ccall
    def push(self, timer: Timer) -> None:
        """A timer."""
        self.size += 1
        if timer.when < self.near_end:
            heappush(self.late, timer)
            return
        bucket: cython.longlong = timer.when // TIMER_BUCKET
        slot: cython.Py_ssize_t = timer.slot
        if slot < len(self.recent):
            if cython.cast(cython.longlong, self.recent_buckets[slot]) == bucket:
                self.recent[slot].append(timer)
                return
        else:
            grow = slot + 1 - len(self.recent)
            self.recent += [None] * grow
            self.recent_buckets += [MIN_TS] * grow
        waiting: list | None = self.far.get(bucket)  # type: ignore[type-arg]
        if waiting is None:
            waiting = self.far[bucket] = [timer]
            heappush(self.far_buckets, bucket)
        else:
            waiting.append(timer)
        self.recent[slot], self.recent_buckets[slot] = waiting, bucket

    @cython.ccall
    def due(self, watermark: cython.longlong) -> Timer | None:
        """The next timer with when <= W, taken out; None when there is none."""
        first: Timer | None
        while True:
            first = self.first()
            if first is not None:
                if first.when > watermark:
                    return None  # and far ones are later still
                self.size -= 1
                if self.ready and first is self.ready[-1]:
                    return self.ready.pop()  # type: ignore[no-any-return]
                return heappop(self.late)  # type: ignore[no-any-return]
            if not self.far_buckets or self.far_buckets[0] * TIMER_BUCKET > watermark:
                return None
            bucket: cython.longlong = heappop(self.far_buckets)
            self.ready = self.far.pop(bucket)
            self.ready.sort(reverse=True)
            self.near_end = (bucket + 1) * TIMER_BUCKET

    @cython.cfunc
    def first(self) -> Timer | None:
        """The earliest ready or late timer."""
        first: Timer | None = self.ready[-1] if self.ready else None
        if self.late:
            late: Timer = self.late[0]
            if first is None or late < first:
                return late
        return first

    @cython.ccall
    def due_from(self) -> cython.longlong:
        """No timer is due before this (MAX_TS: there is none)."""
        first: Timer | None = self.first()
        if first is not None:
            return first.when
        if self.far_buckets:
            return self.far_buckets[0] * TIMER_BUCKET  # type: ignore[no-any-return]
        return MAX_TS

    def export(self) -> list[Timer]:
        """Every timer, in order."""
        waiting = (timer for timers in self.far.values() for timer in timers)
        return sorted([*self.ready, *self.late, *waiting])

    def __len__(self) -> int:
        return self.size


@cython.final
@cython.cclass
class Kind:
    """A type of event in a shard: its kind, the families handling it (and which
    of the shard's prefetching families they are), and the batch's counts. Each
    family is handed the kind as the string its own KINDS holds: its module's
    constant, so its `kind == "..."` tests compare addresses (the same text from
    another module compared characters, a tenth of a microsecond per test)."""

    name: str
    handlers: tuple  # type: ignore[type-arg]
    names: tuple  # type: ignore[type-arg]  # the kind, per handler
    prefetching: tuple  # type: ignore[type-arg]  # indexes into Shard.prefetchers
    accepted: cython.longlong
    duplicate: cython.longlong
    late: cython.longlong

    def __init__(
        self, name: str, handlers: tuple[Family, ...], prefetching: tuple[int, ...]
    ) -> None:
        self.name, self.handlers, self.prefetching = name, handlers, prefetching
        self.names = tuple(family.KINDS[family.KINDS.index(name)] for family in handlers)
        self.accepted = self.duplicate = self.late = 0


@cython.cclass
class Context:
    """What a family on a shard uses of it, and all the runtime hands it: W, the
    window and settings, its metric series, label lookups, typed outputs, and the
    shard's other families (an entity and its watchers). The Shard is one; its
    admission, timers and windows stay its own."""

    config: Any
    window: cython.longlong
    orphan_horizon: cython.longlong
    watermark: cython.longlong
    families: list  # type: ignore[type-arg]
    ledger: Ledger
    labels: LabelCap
    known: dict  # type: ignore[type-arg]
    out: list  # type: ignore[type-arg]
    overflow: dict  # type: ignore[type-arg]
    counters: list  # type: ignore[type-arg]
    histograms: dict  # type: ignore[type-arg]

    def series(self, metric: Metric) -> dict[Any, Any]:
        """The series of one declared metric, by label values."""
        return self.ledger.series[metric.name]

    def histogram(self, metric: Metric) -> Histogram:
        """A family's histogram metric, counted in C and flushed at the end of a
        batch; one per metric (its cells carry the series' sums)."""
        found: Histogram | None = self.histograms.get(metric.name)
        if found is None:
            found = self.histograms[metric.name] = Histogram(self.series(metric), metric.buckets)
        return found

    def counts(self, metric: Metric) -> Counts:
        """A family's integer metric, counted in C and flushed at the end of a batch."""
        counts = Counts(self.series(metric))
        self.counters.append(counts)
        return counts

    def known_values(self, name: str) -> dict[str, str]:
        """The admitted values of a capped label, for lookups before `label`."""
        known = self.known.get(name)
        if known is None:
            known = self.known[name] = self.labels.values(name)
        return known

    @cython.ccall
    def label(self, name: str, value: str) -> str:
        """A label value as metrics may use it: admitted, or `other` beyond the cap."""
        known: dict = self.known_values(name)  # type: ignore[type-arg]
        admitted = known.get(value)
        if admitted is not None:
            return admitted  # type: ignore[no-any-return]
        admitted = self.labels.admit(name, value)
        if admitted is None:
            add(self.overflow, name)
            return OTHER
        return admitted

    @cython.ccall
    def emit(self, output: Alert | KpiRecord) -> None:
        """A family's alert or KPI record, for the dataflow's typed outputs."""
        self.out.append(output)

    def decided(self) -> str:
        """W as RFC 3339, the `decided_ts` of records made now."""
        return format_time(self.watermark)

    def family(self, name: str) -> Family:
        """A family of this shard by NAME."""
        for family in self.families:
            if name == family.NAME:
                return family  # type: ignore[no-any-return]
        raise KeyError(name)


@cython.cclass
class Family:
    """One KPI family, or an entity several families read, on one shard.

    A subclass declares NAME, VERSION (of its exported state), KINDS (the event
    kinds it handles) and METRICS (what it counts), and overrides what it needs
    of `attach`, `on_event`, `on_timer`, `on_close`, `entries`,
    `export_state` and `restore_state`, and `prefetch` if it sets PREFETCHES.
    The runtime calls nothing else.

    A family whose combine step follows W rather than windows sets `report_at`:
    once W reaches it, the shard reports (`on_close`, then partials with its W)
    at the end of the step even if no window closed. Not kept in snapshots: set
    it again in `attach` (reporting early is harmless).

    A timer set with `after(ts, ...)`, to wait until W passes an event's ts
    (another event at ts may still come while W = ts), of a tag in END_TAGS also
    fires when a finite input ends at W = ts: nothing can come after the end.
    """

    NAME: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    KINDS: ClassVar[tuple[str, ...]] = ()
    METRICS: ClassVar[tuple[Metric, ...]] = ()
    PREFETCHES: ClassVar[bool] = False
    END_TAGS: ClassVar[tuple[int, ...]] = ()

    context: Context
    slot: cython.longlong
    report_at: cython.longlong

    def bind(self, context: Context, index: int) -> None:
        """Join a shard, through its context, as its family number `index`, then
        wire up."""
        self.context = context
        self.slot = index << TAG_BITS
        self.report_at = MAX_TS
        self.attach()

    def attach(self) -> None:
        """Take references to series and label maps: wiring, rebuilt after a restore."""

    @cython.cfunc
    def on_event(self, kind: str, ts: cython.longlong, event: Any) -> None:
        """An accepted event of one of KINDS, with its ts."""

    @cython.cfunc
    def on_timer(self, tag: cython.longlong, key: Any, ref: Any) -> None:
        """A timer set with `at(when, tag, key, ref)` is due: W >= when."""

    @cython.cfunc
    def prefetch(self, events: list) -> None:  # type: ignore[type-arg]
        """Before a batch is handled (PREFETCHES), with its events of KINDS: start
        loading the state they will look up, so that those cache misses overlap
        instead of queueing."""

    @cython.cfunc
    def on_close(self, end: cython.longlong) -> object:
        """Every window ending at or before `end` closed, or W reached a family's
        `report_at`: partial rows for the combine stage, or None."""
        return None

    @cython.cfunc
    def at(
        self, when: cython.longlong, tag: cython.longlong, key: object, ref: object = None
    ) -> None:
        """Call `on_timer(tag, key, ref)` once W >= when; `ref` may carry the record
        `key` names, to save looking it up again."""
        timer: Timer = Timer.__new__(Timer)
        timer.when, timer.slot, timer.key, timer.ref = when, self.slot | tag, key, ref
        shard: Shard = cython.cast(Shard, self.context)  # the runtime's own
        shard.timers.push(timer)
        if when <= shard.watermark:
            shard.due_now = True

    @cython.cfunc
    def after(
        self, when: cython.longlong, tag: cython.longlong, key: object, ref: object = None
    ) -> None:
        """`at(when + 1, ...)`: once W has passed `when` (contract §2: a deadline D has
        passed when W > D; an event at W may still come while W = D)."""
        self.at(when + 1, tag, key, ref)

    @cython.cfunc
    def hold(
        self,
        held: list,  # type: ignore[type-arg]
        ts: cython.longlong,
        value: object,
        tag: cython.longlong,
        key: object,
    ) -> None:
        """Keep `value`, of an event whose entity has not come yet, in `held` as
        (ts, value) until W passes ts + the orphan horizon (`past_horizon` then
        finds it). The earliest held sets its own timer: one that arrives after
        a later one must not wait for the later one's horizon."""
        if not held or ts < min([t for t, _ in held]):
            self.after(ts + self.context.orphan_horizon, tag, key)
        held.append((ts, value))

    @cython.cfunc
    def past_horizon(self, held: list, tag: cython.longlong, key: object) -> list:  # type: ignore[type-arg]
        """Take out of `held` the values whose horizon W has passed, and return
        them; the timer (`tag`, `key`) waits for the earliest of the rest."""
        horizon: cython.longlong = self.context.orphan_horizon
        watermark: cython.longlong = self.context.watermark
        ts: cython.longlong
        gone = []
        keep = []
        for ts, value in held:
            if ts + horizon < watermark:
                gone.append(value)
            else:
                keep.append((ts, value))
        held[:] = keep
        if keep:
            self.after(min([t for t, _ in keep]) + horizon, tag, key)
        return gone

    def entries(self, into: dict[str, int]) -> None:
        """Add what it holds to the state-size gauge, by kind."""

    def export_state(self) -> Any:
        """Its state as plain data (for snapshots), at VERSION."""
        return None

    def restore_state(self, state: Any) -> None:
        """Take back what `export_state` gave, at VERSION."""


@cython.final
@cython.cclass
class Shard(Context):
    """The runtime of one shard: admission, watermark, timers, windows, outputs."""

    shard: str
    lateness: cython.longlong
    dedup_horizon: cython.longlong
    closed_through: cython.longlong
    due_now: cython.bint  # a timer was set for a time W has reached: fire it next
    max_ts: dict  # type: ignore[type-arg]
    idle: set  # type: ignore[type-arg]
    seen: object
    timers: Timers
    prefetchers: list  # type: ignore[type-arg]
    kinds: dict  # type: ignore[type-arg]
    events: dict  # type: ignore[type-arg]
    duplicate: dict  # type: ignore[type-arg]
    late: dict  # type: ignore[type-arg]
    rejected: dict  # type: ignore[type-arg]

    def __init__(
        self, shard: str, config: Any, labels: LabelCap, families: tuple[type[Family], ...]
    ) -> None:
        self.shard = shard
        self.max_ts = dict.fromkeys(config.sources, MIN_TS)
        self.idle = set()
        self.watermark = MIN_TS
        self.closed_through = MIN_TS
        self.due_now = False
        self.seen = id_table()
        self.timers = Timers()
        self.families = [kind() for kind in families]
        self.prefetchers = [f for f in self.families if type(f).PREFETCHES]
        metrics = pipeline.SHARD_METRICS + tuple(m for f in self.families for m in f.METRICS)
        self.ledger = Ledger(metrics)
        self.attach(config, labels)

    def attach(self, config: Any, labels: LabelCap) -> None:
        """Wire settings, the process's label cap and the families (not state)."""
        self.config = config
        self.lateness = config.lateness
        self.window = config.window
        self.dedup_horizon = config.dedup_horizon
        self.orphan_horizon = config.orphan_horizon
        self.labels = labels
        self.out = []
        for source in config.sources:
            self.max_ts.setdefault(source, MIN_TS)
        series = self.ledger.series
        self.events = series[pipeline.EVENTS.name]
        self.duplicate = series[pipeline.DUPLICATE.name]
        self.late = series[pipeline.LATE.name]
        self.rejected = series[pipeline.REJECTED.name]
        self.overflow = series[pipeline.LABEL_OVERFLOW.name]
        self.known = {}
        self.kinds = {}  # type of event -> Kind, made on its first event
        self.counters = []  # every family's Counts, flushed at the end of a batch
        self.histograms = {}  # and its Histograms, by metric name
        family: Family
        for index, family in enumerate(self.families):
            family.bind(self, index)

    def drain(self) -> list[Output]:
        """Take the outputs produced so far."""
        out, self.out = self.out, []
        return out

    # --- input

    @cython.ccall
    def process(self, source: str, items: list) -> None:  # type: ignore[type-arg]
        """Admit a batch of decoded events (and rejects) from one source partition:
        in the contract's order, reject, duplicate, lateness, then the handlers."""
        lateness: cython.longlong = self.lateness
        horizon: cython.longlong = self.dedup_horizon
        watermark: cython.longlong = self.watermark
        own_max: cython.longlong = self.max_ts.get(source, MIN_TS)
        others: cython.longlong = self.others_min(source)
        # Late against the partition's own progress (what replay does with one
        # partition), or against W should W be ahead after this partition idled:
        # so lateness never depends on how fast other partitions are read.
        late_below: cython.longlong = own_max - lateness
        if late_below < watermark:
            late_below = watermark
        since: cython.longlong = (watermark - horizon) // HOUR
        since_id: object = since  # the table takes Python ints: made once, not per event
        seen = self.seen
        remember = seen.remember  # type: ignore[attr-defined]  # found once, not per event
        kinds: dict = self.kinds  # type: ignore[type-arg]
        bucket_start: cython.longlong = 0
        bucket_end: cython.longlong = 0
        hour: cython.longlong = 0
        hour_id: object = None
        ts: cython.longlong
        candidate: cython.longlong
        slot: Kind | None
        family: Family
        # First each event's kind (by its type: a lookup by address, not an
        # attribute read through the type's MRO) and id. Each id's table slot is
        # then loaded for the whole batch, and each prefetching family is handed
        # the events of its kinds: a day of ids, or of open orders, misses the CPU
        # caches, and the misses then overlap.
        slots: list = []  # type: ignore[type-arg]  # each item's Kind, None for a reject
        ids: list = []  # type: ignore[type-arg]
        wanted: list = [[] for _ in self.prefetchers]  # type: ignore[type-arg]
        index: cython.Py_ssize_t
        for item in items:
            if type(item) is Reject:
                slots.append(None)
                ids.append(None)
                continue
            slot = kinds.get(type(item))
            if slot is None:
                slot = self.kind(item)
            slots.append(slot)
            ids.append(item.event_id)
            for index in slot.prefetching:
                wanted[index].append(item)
        seen.prefetch(ids)  # type: ignore[attr-defined]
        for index in range(len(wanted)):
            if wanted[index]:
                family = self.prefetchers[index]
                family.prefetch(wanted[index])
        handler: cython.Py_ssize_t
        handlers: tuple  # type: ignore[type-arg]
        for index in range(len(items)):
            item = items[index]
            slot = slots[index]
            if slot is None:
                self.reject(item)
                continue
            ts = item.ts
            if not (bucket_start <= ts < bucket_end):  # cheaper than dividing every ts
                hour = ts // HOUR
                hour_id = hour
                bucket_start = hour * HOUR
                bucket_end = bucket_start + HOUR
            if remember(ids[index], hour_id, since_id):
                slot.duplicate += 1
                continue
            if ts < late_below:
                slot.late += 1
                continue
            if ts > own_max:
                own_max = ts
                candidate = (own_max if own_max < others else others) - lateness
                if candidate > watermark:
                    # Deadlines fire at the exact event that passes them, so the
                    # outcome never depends on how the input was batched.
                    watermark = candidate
                    self.watermark = watermark
                    if (watermark - horizon) // HOUR != since:
                        since = (watermark - horizon) // HOUR
                        since_id = since
                    if self.timers.due_from() <= watermark:
                        self.fire_due()
                late_below = own_max - lateness
                if late_below < watermark:
                    late_below = watermark
            slot.accepted += 1
            handlers = slot.handlers
            for handler in range(len(handlers)):
                family = handlers[handler]
                family.on_event(slot.names[handler], ts, item)
            if self.due_now:
                # A handler set a timer W has already reached (say, a receipt
                # completed by stows that came first): it fires before the next
                # event, as it would at the end of a batch of one.
                self.fire_due()
        self.count_kinds()
        self.max_ts[source] = own_max
        self.idle.discard(source)
        self.advance(watermark)

    @cython.cfunc
    def kind(self, event: Any) -> Kind:
        """The slot of a type of event not seen before: its kind, and the families
        handling that kind in their order."""
        kind = event.kind
        slot = Kind(
            kind,
            tuple(family for family in self.families if kind in family.KINDS),
            tuple(i for i, family in enumerate(self.prefetchers) if kind in family.KINDS),
        )
        self.kinds[type(event)] = slot
        return slot

    @cython.cfunc
    def count_kinds(self) -> None:
        """Add the batch's counts per kind to the pipeline's series."""
        slot: Kind
        for slot in self.kinds.values():
            if slot.accepted:
                add(self.events, slot.name, slot.accepted)
            if slot.duplicate:
                add(self.duplicate, slot.name, slot.duplicate)
            if slot.late:
                add(self.late, slot.name, slot.late)
            slot.accepted = slot.duplicate = slot.late = 0

    @cython.cfunc
    def reject(self, reject: Reject) -> None:
        add(self.rejected, reject.reason)
        key = "|".join(map(str, reject.origin.values()))
        self.out.append(DeadLetter(key, reject.record()))

    def mark(self, source: str, max_ts: int, idle: bool) -> None:
        """Progress of a source partition: its largest event ts, and whether it is idle."""
        if max_ts > self.max_ts.get(source, MIN_TS):
            self.max_ts[source] = max_ts
        if idle:
            self.idle.add(source)
        else:
            self.idle.discard(source)
        self.advance(self.combined())

    def finish(self) -> None:
        """End of a finite input: W becomes the largest accepted ts (contract §2).
        Then the timers at W + 1 of their families' END_TAGS fire, W staying."""
        self.advance(max(self.max_ts.values(), default=MIN_TS))
        waiting = []
        timer: Timer | None
        while True:
            timer = self.timers.due(self.watermark + 1)
            if timer is None:
                break
            ends = type(self.families[timer.slot >> TAG_BITS]).END_TAGS
            if timer.slot & TAG_MASK in ends:
                self.fire(timer)
            else:
                waiting.append(timer)
        for timer in waiting:
            self.timers.push(timer)
        self.advance(self.watermark)  # what those set for W fires; the counts reach the ledger

    @cython.cfunc
    def others_min(self, source: str) -> cython.longlong:
        lowest: cython.longlong = MAX_TS
        for name, ts in self.max_ts.items():
            if name != source and name not in self.idle and ts < lowest:
                lowest = ts
        return lowest

    def combined(self) -> int:
        """min over partitions that are not idle; when all are idle, the input is drained."""
        active = [ts for src, ts in self.max_ts.items() if src not in self.idle]
        if active:
            return min(active) - self.lateness  # type: ignore[no-any-return]
        return max(self.max_ts.values(), default=MIN_TS)

    # --- event time advancing

    @cython.ccall
    def advance(self, watermark: cython.longlong) -> None:
        """W moved (W never goes back): fire timers, close windows, forget old ids;
        then the batch's counts reach the ledger."""
        if watermark > self.watermark:
            self.watermark = watermark
        watermark = self.watermark
        self.fire_due()
        if watermark > MIN_TS:
            self.close_windows(watermark)
            self.seen.expire((watermark - self.dedup_horizon) // HOUR)  # type: ignore[attr-defined]
            self.ledger.series[pipeline.WATERMARK.name][()] = watermark / US_PER_SECOND
        entries: dict[str, int] = {}
        for family in self.families:
            family.entries(entries)
        entries["dedup_ids"] = len(self.seen)  # type: ignore[arg-type]
        entries["timers"] = len(self.timers)
        self.ledger.series[pipeline.STATE_ENTRIES.name].update(entries)
        counts: Counts
        for counts in self.counters:
            counts.flush()
        histogram: Histogram
        for histogram in self.histograms.values():
            histogram.flush()

    @cython.cfunc
    def fire_due(self) -> None:
        self.due_now = False
        timers: Timers = self.timers
        watermark: cython.longlong = self.watermark
        timer: Timer | None
        while True:
            timer = timers.due(watermark)
            if timer is None:
                return
            self.fire(timer)

    @cython.cfunc
    @cython.inline
    def fire(self, timer: Timer) -> None:
        """Hand a due timer to its family."""
        family: Family = self.families[timer.slot >> TAG_BITS]
        family.on_timer(timer.slot & TAG_MASK, timer.key, timer.ref)

    @cython.cfunc
    def close_windows(self, watermark: cython.longlong) -> None:
        """Windows [a, b) with b <= W are closed, or W reached a family's
        `report_at`: each family's partial rows go to the combine stage, with how
        far this shard has closed and its W."""
        end: cython.longlong = watermark - watermark % self.window
        family: Family
        if end <= self.closed_through:
            for family in self.families:
                if family.report_at <= watermark:
                    break
            else:
                return
        rows: dict[str, list[Any]] = {}
        for family in self.families:
            closed = family.on_close(end)
            if closed:
                rows[family.NAME] = closed  # type: ignore[assignment]
        self.closed_through = end
        self.out.append(Partials(self.shard, end, self.watermark, rows))

    # --- snapshots

    def export(self) -> dict[str, Any]:
        """The runtime's own state as plain data (families export theirs)."""
        seen = self.seen.to_dict()  # type: ignore[attr-defined]  # seen_hours shares its strs
        return {
            "shard": self.shard,
            "max_ts": dict(self.max_ts),
            "idle": set(self.idle),
            "watermark": self.watermark,
            "closed_through": self.closed_through,
            "seen": seen,
            "seen_hours": ids_by_hour(seen),  # what builds before 2026-12-04 read
            "timers": [(t.when, t.slot, t.key, t.ref) for t in self.timers.export()],
            "series": {m.name: self.ledger.series[m.name] for m in pipeline.SHARD_METRICS},
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take back what `export` gave."""
        self.shard = state["shard"]
        self.max_ts.update(state["max_ts"])
        # No partition is idle until its reader says so again: each reader starts
        # over with a backlog, and a partition still counted idle would let another's
        # first progress move W past that backlog (exported for older builds only).
        self.idle = set()
        self.watermark = state["watermark"]
        self.closed_through = state["closed_through"]
        self.seen = id_table(state["seen"])
        self.timers = Timers(Timer(*timer) for timer in state["timers"])
        for name, series in state["series"].items():
            self.ledger.series[name].update(series)
        self.attach(self.config, self.labels)


def check_bounds(**durations: int) -> None:
    """Refuse settings the runtime cannot keep exact (one line, naming it)."""
    for name, value in durations.items():
        if not 0 <= value <= MAX_DURATION:
            raise ValueError(f"{name} must lie within 0 and {MAX_DURATION} µs, not {value}")
