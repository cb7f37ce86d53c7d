# Types of core.py for its compiled build (Cython reads this beside the .py).

# flows/runtime/consts.py for C (a test keeps them equal).
cdef extern from *:
    """
    #define OPSCOCKPIT_MIN_TS (-(1LL << 62))
    #define OPSCOCKPIT_MAX_TS (1LL << 62)
    #define OPSCOCKPIT_HOUR 3600000000LL
    #define OPSCOCKPIT_TIMER_BUCKET 60000000LL
    """
    const long long MIN_TS "OPSCOCKPIT_MIN_TS"
    const long long MAX_TS "OPSCOCKPIT_MAX_TS"
    const long long NEVER "OPSCOCKPIT_MAX_TS"
    const long long HOUR "OPSCOCKPIT_HOUR"
    const long long TIMER_BUCKET "OPSCOCKPIT_TIMER_BUCKET"

# Prefetch hints (flows/_prefetch.h, included relative to the generated C of a
# module one level under flows/ as every module that cimports this one is; no-ops
# of the same names in core.py for the interpreted build): the cache lines of an
# object's first `size` bytes; the array of a list's item pointers (its first
# `count`), then the first `size` bytes of the objects it holds (once that array
# has arrived).
cdef extern from "../_prefetch.h":
    void prefetch_object "prefetch_span" (object o, Py_ssize_t size)
    void prefetch_list "prefetch_list_array" (list items, Py_ssize_t count)
    void prefetch_held "prefetch_list_objects" (list items, Py_ssize_t count, Py_ssize_t size)

# Take a container off the collector's list: only for one that can never be in a
# cycle (`untrack` in core.py for the interpreted build).
cdef extern from "Python.h":
    void untrack "PyObject_GC_UnTrack" (object o)

cdef enum:
    TAG_BITS = 4
    TAG_MASK = 15

cpdef add(dict series, object key, object amount=*)

cpdef long long whole_us(double seconds)

cdef class Observed:
    cdef object key
    cdef long long[:] counts
    cdef long long sum_us
    cdef bint fresh

cdef class Histogram:
    cdef public dict series
    cdef double[:] bounds
    cdef Py_ssize_t size
    cdef dict cells
    cdef list touched
    cpdef observe(self, object key, double value)
    cdef list series_of(self, Observed cell)
    cdef add_sum(self, Observed cell)
    cpdef flush(self)

cdef class Cell:
    cdef public object key
    cdef public long long delta

cdef class Counts:
    cdef public dict series, cells
    cdef public list touched
    cpdef Cell cell(self, object key)
    cpdef add(self, object key, long long amount=*)
    cpdef bump(self, Cell cell, long long amount)
    cpdef flush(self)

cdef class Timer:
    cdef public long long when, slot
    cdef public object key, ref

cdef class Timers:
    cdef public list ready, late
    cdef public long long near_end
    cdef public dict far
    cdef public list far_buckets, recent, recent_buckets
    cdef public Py_ssize_t size
    cpdef push(self, Timer timer)
    cpdef Timer due(self, long long watermark)
    cdef Timer first(self)
    cpdef long long due_from(self)

cdef class Kind:
    cdef public str name
    cdef public tuple handlers, names, prefetching
    cdef public long long accepted, duplicate, late

cdef class Context:
    cdef public object config
    cdef public long long window, orphan_horizon, watermark
    cdef public list families, out, counters
    cdef public object ledger, labels
    cdef public dict known, overflow, histograms
    cpdef str label(self, str name, str value)
    cpdef emit(self, object output)

cdef class Family:
    cdef public Context context
    cdef public long long slot, report_at
    cdef on_event(self, str kind, long long ts, object event)
    cdef on_timer(self, long long tag, object key, object ref)
    cdef prefetch(self, list events)
    cdef object on_close(self, long long end)
    cdef at(self, long long when, long long tag, object key, object ref=*)
    cdef after(self, long long when, long long tag, object key, object ref=*)
    cdef hold(self, list held, long long ts, object value, long long tag, object key)
    cdef list past_horizon(self, list held, long long tag, object key)

cdef class Shard(Context):
    cdef public str shard
    cdef public long long lateness, dedup_horizon, closed_through
    cdef public bint due_now
    cdef public dict max_ts
    cdef public set idle
    cdef public object seen
    cdef public Timers timers
    cdef public list prefetchers
    cdef public dict kinds, events, duplicate, late, rejected
    cpdef process(self, str source, list items)
    cdef Kind kind(self, object event)
    cdef count_kinds(self)
    cdef reject(self, object reject)
    cdef long long others_min(self, str source)
    cpdef advance(self, long long watermark)
    cdef fire_due(self)
    cdef inline fire(self, Timer timer)
    cdef close_windows(self, long long watermark)
