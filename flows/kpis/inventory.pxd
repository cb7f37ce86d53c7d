# Types of inventory.py for its compiled build (Cython reads this beside the .py).
from flows.entities cimport orders as entity
from flows.runtime cimport core

cdef class Pending:
    cdef public dict lines
    cdef public list moves

cdef class Inventory(entity.OrderWatcher):
    cdef public dict windows
    cdef public long long current_start, window
    cdef public Pending current
    cdef Pending pending(self, long long ts)

cdef class Lot:
    cdef public long long ts, qty

cdef class Item:
    cdef public str fc, sku, label
    cdef public long long created, active, on_hand, shortfall
    cdef public list lots
    cdef public object demand, days
    cdef public int states
    cdef public bint spiking
    cdef public list bands
    cdef public long long check, ordered
    cdef public double safety
    cdef public bint gone

cdef class ItemHealth:
    cdef public object context
    cdef public long long window
    cdef public dict items, pending
    cdef public core.Timers timers
    cdef public long long closed, demand_span, keep_windows
    cdef public double z
    cdef public dict leads
    cdef close_window(self, long long end, list out)
    cdef apply(self, long long start, dict lines, list moves, dict changed)
    cdef Item item(self, object key, long long start)
    cdef evaluate(self, object key, Item item, long long end, list out)
    cdef tuple lead(self, str fc)
    cdef spike(self, Item item, long long end, list out)
    cdef list age_bands(self, Item item, long long end)
    cdef restate(self, Item item, int states)
    cdef schedule(self, object key, Item item, long long end)
    cdef leave(self, object key, Item item)
    cdef count(self, object metric, object key, long long amount)

cdef add_entry(object entries, long long start, long long units)
cdef prune(object entries, long long since)
cdef long long units_since(object entries, long long since)
cdef long long units_at(object entries, long long start)
cdef long long first_since(object entries, long long since)
cdef double sigma(object days, long long day, long long count)
cdef take(Item item, long long ts, long long qty)
cdef int band_of(long long age)
cdef long long next_band(long long ts, long long end)
