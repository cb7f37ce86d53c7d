# Types of inventory.py for its compiled build (Cython reads this beside the .py).
from flows.entities cimport orders as entity
from flows.runtime cimport core

cdef class Pending:
    cdef public dict lines, moves, taken

cdef class Inventory(entity.OrderWatcher):
    cdef public dict windows
    cdef public long long current_start, window
    cdef public Pending current
    cdef Pending pending(self, long long ts)

cdef class Move:
    cdef public long long ts, qty
    cdef public str event_id, sku

cdef Move new_move(long long ts, str event_id, long long qty, str sku)
cdef dict of_fc(dict by_fc, str fc)

cdef class Lot:
    cdef public long long ts, qty

cdef class LabelCells:
    cdef public core.Cell tracked, stockouts, spikes
    cdef public tuple states, by_age

cdef class Place:
    cdef public str fc, label
    cdef public LabelCells cells
    cdef public object lead_num, lead_den
    cdef public double lead_root

cdef class Item:
    cdef public str fc, sku, label
    cdef public long long created, active, on_hand, shortfall, oldest_ts, oldest_qty
    cdef public list lots
    cdef public list demand, daily
    cdef public long long demand_total, first_day
    cdef public int states
    cdef public bint spiking
    cdef long long bands[5]
    cdef public long long check, ordered
    cdef public double safety
    cdef public long long safety_day
    cdef public bint gone
    cdef public long long touched
    cdef public Place place

cdef list plain_list(object values=*)
cpdef tuple bands_of(Item item)
cdef touch(Item item, long long end, list changed)

cdef class Shelf:
    cdef public list items, skus

cdef class Demand:
    cdef public long long ordered, oldest, units

cdef class ItemHealth:
    cdef public object context
    cdef public long long window
    cdef public dict items, pending
    cdef public dict by_fc
    cdef public list added
    cdef public bint dropped
    cdef public dict places, label_cells
    cdef public dict checks
    cdef public Demand demand
    cdef public long long closed, demand_span, keep_windows
    cdef public object shown
    cdef public long long shown_as_of
    cdef public double z
    cdef public core.Counts tracked, by_age, stockouts, spikes
    cdef public tuple states
    cdef public long long demand_days, safety_days, spike_days, spike_min_units
    cdef public object excess_num, excess_den, spike_num, spike_den
    cdef close_window(self, long long end, list out)
    cdef apply(self, long long start, long long end, dict lines, dict moves, dict taken, list changed)
    cdef apply_units(self, long long start, long long end, dict units_by_fc, bint ordered, list changed)
    cdef list in_order(self)
    cdef object skus_of(self, str fc)
    cdef Item item(self, object skus, str fc, str sku, long long start)
    cdef prefetch(self, dict lines, dict moves, dict taken)
    cdef evaluate(self, Item item, long long end, list out)
    cdef scan(self, Item item, long long end)
    cdef add_today(self, Item item, long long end)
    cdef resafe(self, Item item, long long end)
    cdef int safety_state(self, Item item, long long day)
    cdef Place new_place(self, str fc, str label)
    cdef spike(self, Item item, long long end, list out, LabelCells cells)
    cdef long long rebands(self, Item item, long long end, LabelCells cells)
    cdef restate(self, Item item, int states, LabelCells cells)
    cdef schedule(self, Item item, long long end, long long aging)
    cdef LabelCells cells_of(self, str label)
    cdef flush(self)
    cdef leave(self, Item item)

cdef Item new_item(Place place, str sku, long long created)
cdef add_entry(Item item, object start, long long units)
cdef prune(Item item, long long since)
cdef long long units_of(list entries, long long start)
cdef add_day(Item item, long long day, long long units)
cdef prune_days(Item item, long long since)
cdef double sigma(Item item, long long day, long long count)
cdef take(Item item, long long ts, long long qty)
cdef health(Item item, str window_start, str window_end, long long demand_days)
