# Types of orders.py for its compiled build (Cython reads this beside the .py).
from flows.runtime cimport core

cdef class Order:
    cdef public str fc, region
    cdef public long long placed, ship_by, deliver_by, units
    cdef public long long shipped
    cdef public object ship_fc
    cdef public long long cancelled, delivered, picked, packed, flags, pending
    cdef public bint gone, final
    cdef public object named, cancel_id, ship_id
    cpdef int stage(self)
    cdef clear(self)

cdef class OrderBook(core.Family)

cdef class OrderWatcher(core.Family):
    cdef public OrderBook book
    cdef public long long flag_shift, need, watches
    cdef on_order(self, long long change, str order_id, Order order, int before, object event)
    cdef release(self, str order_id, Order order)
    cdef Order order_of(self, object order_id, object ref)
    cdef bint has(self, Order order, long long flag)
    cdef set(self, Order order, long long flag)
    cdef clear(self, Order order, long long flag)

cdef class OrderBook(core.Family):
    cdef public object orders
    cdef public dict orphans
    cdef public list watchers, audiences, holds
    cdef public long long needs, retention, previous
    cdef public dict fcs, regions
    cdef public core.Counts orphan_counts, expired
    cdef place(self, long long ts, object event)
    cdef order_event(self, str kind, long long ts, object event)
    cdef apply(self, str order_id, Order order, str kind, long long ts, object event)
    cdef notify(self, long long change, str order_id, Order order, int before, object event)
    cpdef release(self, str order_id, Order order, long long need)
    cdef shipment_final(self, str order_id, Order order)
    cdef expire(self, str order_id, Order order)
    cdef expire_orphans(self, str order_id)

cpdef enum:
    PLACED = 1
    SHIPPED = 2
    FIRST_SHIPMENT = 4
    CANCELLED = 8
    FIRST_CANCELLATION = 16
    DELIVERED = 32
    FIRST_DELIVERY = 64
    PICKED = 128
    PACKED = 256
    EXPIRED = 512
    SHIPMENT_FINAL = 1024
    NO_STAGE = 0
    STAGE_PLACED = 1
    STAGE_PICKED = 2
    STAGE_PACKED = 3
    T_ORPHANS = 0
    T_RETENTION = 1
    T_SHIPMENT = 2
