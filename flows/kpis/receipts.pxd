# Types of receipts.py for its compiled build (Cython reads this beside the .py).
from flows.runtime cimport core

cdef class Receipt:
    cdef public str fc
    cdef public long long received, qty, stowed
    cdef public list stows
    cdef public bint awaiting

cdef class Receipts(core.Family):
    cdef public dict receipts
    cdef public long long retention
    cdef public dict fcs
    cdef public core.Histogram dock_to_stock
    cdef public core.Counts awaiting, units_received, orphans, expired
    cdef received(self, long long ts, object event)
    cdef stowed(self, long long ts, object event)
    cdef bint expires(self, Receipt receipt)
    cdef complete(self, object receipt_id, Receipt receipt)
    cdef expire_orphan(self, object receipt_id, Receipt receipt)
