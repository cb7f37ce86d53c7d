# Types of shifts.py for its compiled build (Cython reads this beside the .py).
from flows.entities cimport orders as entity

cdef class Tally:
    cdef public str fc
    cdef public long long start, end, units, shipped
    cdef public list orders

cdef class Shifts(entity.OrderWatcher):
    cdef public object calendars
    cdef public list every
    cdef public dict tallies, current, shipments
    cdef Tally tally(self, str fc, long long ts)
