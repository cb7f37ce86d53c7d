/* The per-event loop of `ShardEngine.process`, compiled: why in flows/engine.py
   (`ShardEngine.process`). It is the Python loop (`ShardEngine._admit`) line for
   line, on the engine's own Python state (so snapshots do not change): rejects,
   de-duplication, lateness, the watermark and its timers, then the event's
   handler. The handlers of the storefront, orders and stock, which take all but
   ~0.5% of events, and the order timers run here too; what is rare (orphans,
   cancellations, receipts, retention, alert records, new labels) is the engine's
   Python method. An event it cannot take (a ts that is not an int within
   +-2^62, a 65th kind in one batch) ends the call: the Python loop goes on from
   there. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <structmember.h>

#define HOUR 3600000000LL
#define TS_BOUND (1LL << 62) /* engine.MAX_TS: every ts, W and max ts lie within +-TS_BOUND */
#define MAX_KINDS 64
#define LIMIT (1LL << 60) /* lateness and horizon; W may lie LIMIT beyond TS_BOUND */

enum {
    CALL_HANDLER,
    PAGE_VIEWED,
    RECOMMENDATION_SHOWN,
    SEARCH_PERFORMED,
    CART_ADDED,
    ORDER_PLACED,
    ORDER_EVENT,
    INVENTORY_PICKED,
    INVENTORY_ADJUSTED,
    DELIVERY_UPDATED,
    RECOMMENDATION_CLICKED,
};
/* How an order event changes its order (engine._apply) */
enum { APPLY_NONE, APPLY_SHIPPED, APPLY_PICKED, APPLY_PACKED, APPLY_DELIVERED };

/* The kinds handled here, when the engine's handler is its own method named so. */
static const struct {
    const char *kind, *method;
    int inline_as, apply_as;
} INLINED[] = {
    {"page.viewed", "_page_viewed", PAGE_VIEWED, APPLY_NONE},
    {"recommendation.shown", "_recommendation_shown", RECOMMENDATION_SHOWN, APPLY_NONE},
    {"search.performed", "_search_performed", SEARCH_PERFORMED, APPLY_NONE},
    {"cart.added", "_cart_added", CART_ADDED, APPLY_NONE},
    {"order.placed", "_order_placed", ORDER_PLACED, APPLY_NONE},
    {"order.shipped", "_order_event", ORDER_EVENT, APPLY_SHIPPED},
    {"inventory.packed", "_order_event", ORDER_EVENT, APPLY_PACKED},
    {"inventory.picked", "_inventory_picked", INVENTORY_PICKED, APPLY_PICKED},
    {"inventory.adjusted", "_inventory_adjusted", INVENTORY_ADJUSTED, APPLY_NONE},
    {"delivery.updated", "_delivery_updated", DELIVERY_UPDATED, APPLY_DELIVERED},
    {"recommendation.clicked", "_recommendation_clicked", RECOMMENDATION_CLICKED, APPLY_NONE},
};

typedef struct {
    PyObject *kind, *handler; /* owned; the handler is NULL for a kind without one */
    int inline_as, apply_as;
    Py_ssize_t accepted;
    int accepted_rank; /* order of first acceptance, so counts are added in that order */
} KindSlot;

typedef struct {
    PyObject *engine;
    long long watermark;
    int watermark_dirty;
} Watermark;

static PyObject *s_kind, *s_event_id, *s_ts, *s_page, *s_load_ms, *s_widget, *s_watermark,
    *s_config, *s_lateness, *s_dedup_horizon, *s_max_ts, *s_seen, *s_seen_hours,
    *s_duplicate, *s_late, *s_events, *s_handlers, *s_timers, *s_reject,
    *s_label, *s_pages, *s_page_load, *s_page_buckets, *s_widgets, *s_shown, *s_others_min,
    *s_latency_ms, *s_results, *s_qty, *s_search_latency,
    *s_search_buckets, *s_zero_results, *s_cart_units, *s_order_id, *s_fc, *s_region, *s_lines,
    *s_promised_ship_by, *s_promised_delivery_by, *s_delta, *s_status, *s_delivered, *s_alert,
    *s_late_delivery, *s_ship_sla_breach, *s_delivered_ts, *s_shipped_ts, *s_true, *s_false,
    *s_up, *s_down, *s_orders, *s_order_orphans, *s_window_parts, *s_fcs, *s_regions,
    *s_order_event, *s_fire, *s_cycle_buckets, *s_series, *s_window, *s_retention,
    *stage_names[4], *zero, *one, *minus_one, *thousand, *million, *no_labels, *heappush,
    *heappop;

static long long floor_div(long long a, long long b) {
    long long q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* An int within +-bound as a C long long; 0 (no error set) when it is not one. */
static int bounded(PyObject *value, long long bound, long long *out) {
    int overflow;
    if (!PyLong_CheckExact(value)) return 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || v < -bound || v > bound) return 0;
    *out = v;
    return 1;
}

/* --- Event fields. A Struct keeps each field in a slot at a fixed offset, yet
   PyObject_GetAttr finds it anew on every read (type lookup, descriptor call):
   that was ~8% of a replay. `field` remembers, per type and name, the slot's
   offset (or, for `kind`, the class attribute) while the type's version tag
   stays valid, which any change to the type ends. */
typedef struct {
    PyTypeObject *type; /* owned, so its address is never another type's */
    PyObject *name;     /* owned */
    unsigned int version;
    Py_ssize_t offset; /* >= 0: a slot; CLASS_VALUE: `value`; ASK: PyObject_GetAttr */
    PyObject *value;   /* borrowed from the type's dict, which holds it while `version` does */
} FieldEntry;

#define FIELD_ENTRIES 1024
#define CLASS_VALUE (-1)
#define ASK (-2)
static FieldEntry field_entries[FIELD_ENTRIES];

static void learn_field(FieldEntry *e, PyTypeObject *type, PyObject *name) {
    Py_ssize_t offset = ASK;
    PyObject *found = NULL;
    if (type->tp_getattro == PyObject_GenericGetAttr) found = _PyType_Lookup(type, name);
    if (found != NULL && Py_IS_TYPE(found, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)found)->d_member;
        if (member->type == T_OBJECT_EX && (member->flags & ~READONLY) == 0)
            offset = member->offset;
    } else if (found != NULL && Py_TYPE(found)->tp_descr_get == NULL && type->tp_dictoffset == 0) {
        offset = CLASS_VALUE; /* a plain class attribute, and no instance dict to shadow it */
    }
    Py_XSETREF(e->type, (PyTypeObject *)Py_NewRef(type));
    Py_XSETREF(e->name, Py_NewRef(name));
    e->version = type->tp_version_tag;
    e->offset = PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG) ? offset : ASK;
    e->value = found;
}

/* The entry of (type, name): one of four slots from its hash, learnt anew when stale */
static FieldEntry *field_entry(PyTypeObject *type, PyObject *name) {
    uint64_t mixed = ((uintptr_t)type >> 4) ^ ((uintptr_t)name >> 4) * 0x9E3779B97F4A7C15ULL;
    size_t first = (size_t)((mixed * 0x9E3779B97F4A7C15ULL) >> 54); /* 10 bits */
    FieldEntry *e = &field_entries[first];
    for (size_t i = 0; i < 4; i++) {
        FieldEntry *probe = &field_entries[(first + i) % FIELD_ENTRIES];
        if ((probe->type == type && probe->name == name) || probe->type == NULL) {
            e = probe;
            break;
        }
    }
    if (e->type != type || e->name != name || e->version != type->tp_version_tag ||
        !PyType_HasFeature(type, Py_TPFLAGS_VALID_VERSION_TAG))
        learn_field(e, type, name);
    return e;
}

/* obj.<name>, as a new reference (name: an interned str) */
static PyObject *field(PyObject *obj, PyObject *name) {
    FieldEntry *e = field_entry(Py_TYPE(obj), name);
    if (e->offset >= 0) {
        PyObject *value = *(PyObject **)((char *)obj + e->offset);
        if (value != NULL) return Py_NewRef(value);
    } else if (e->offset == CLASS_VALUE) {
        return Py_NewRef(e->value);
    }
    return PyObject_GetAttr(obj, name); /* anything else, and errors, as Python has them */
}

/* Python callbacks read `engine.watermark`: write it before any of them runs. */
static int sync_watermark(Watermark *w) {
    if (!w->watermark_dirty) return 0;
    PyObject *value = PyLong_FromLongLong(w->watermark);
    if (value == NULL) return -1;
    int status = PyObject_SetAttr(w->engine, s_watermark, value);
    Py_DECREF(value);
    w->watermark_dirty = 0;
    return status;
}

/* counter[key] = counter.get(key, 0) + amount */
static int add(PyObject *counter, PyObject *key, PyObject *amount) {
    PyObject *old = PyDict_GetItemWithError(counter, key);
    if (old == NULL && PyErr_Occurred()) return -1;
    PyObject *new = old == NULL ? Py_NewRef(amount) : PyNumber_Add(old, amount);
    if (new == NULL) return -1;
    int status = PyDict_SetItem(counter, key, new);
    Py_DECREF(new);
    return status;
}

static int add_count(PyObject *counter, PyObject *key, Py_ssize_t count) {
    PyObject *amount = PyLong_FromSsize_t(count);
    if (amount == NULL) return -1;
    int status = add(counter, key, amount);
    Py_DECREF(amount);
    return status;
}

static int sequence_add(PyObject *counts, Py_ssize_t index, PyObject *amount) {
    PyObject *old = PySequence_GetItem(counts, index);
    if (old == NULL) return -1;
    PyObject *new = PyNumber_Add(old, amount);
    Py_DECREF(old);
    if (new == NULL) return -1;
    int status = PySequence_SetItem(counts, index, new);
    Py_DECREF(new);
    return status;
}

/* flows.ledger.observe */
static int observe(PyObject *series, PyObject *buckets, PyObject *key, PyObject *value) {
    PyObject *counts = Py_XNewRef(PyDict_GetItemWithError(series, key));
    if (counts == NULL) {
        if (PyErr_Occurred()) return -1;
        Py_ssize_t size = PyTuple_GET_SIZE(buckets) + 2;
        if ((counts = PyList_New(size)) == NULL) return -1;
        for (Py_ssize_t i = 0; i < size; i++) PyList_SET_ITEM(counts, i, PyLong_FromLong(0));
        if (PyDict_SetItem(series, key, counts) < 0) {
            Py_DECREF(counts);
            return -1;
        }
    }
    Py_ssize_t low = 0, high = PyTuple_GET_SIZE(buckets); /* bisect_left */
    int status = 0;
    while (low < high && status == 0) {
        Py_ssize_t mid = (low + high) / 2;
        int less = PyObject_RichCompareBool(PyTuple_GET_ITEM(buckets, mid), value, Py_LT);
        if (less < 0) status = -1;
        else if (less) low = mid + 1;
        else high = mid;
    }
    Py_ssize_t size = status == 0 ? PySequence_Size(counts) : -1;
    if (size < 0 || sequence_add(counts, low, one) < 0 || sequence_add(counts, size - 1, value) < 0)
        status = -1;
    Py_DECREF(counts);
    return status;
}

/* known.get(event.<name>) or engine._label(name, event.<name>), as a new reference */
static PyObject *label(Watermark *w, PyObject *event, PyObject *name, PyObject *known) {
    PyObject *raw = field(event, name);
    if (raw == NULL) return NULL;
    PyObject *value = PyDict_GetItemWithError(known, raw);
    int truth = value == NULL ? (PyErr_Occurred() ? -1 : 0) : PyObject_IsTrue(value);
    PyObject *result = NULL;
    if (truth > 0) result = Py_NewRef(value);
    else if (truth == 0 && sync_watermark(w) == 0)
        result = PyObject_CallMethodObjArgs(w->engine, s_label, name, raw, NULL);
    Py_DECREF(raw);
    return result;
}

/* observe(series, key, event.<ms_name> / 1000): a latency in ms, observed in seconds */
static int observe_ms(PyObject *series, PyObject *buckets, PyObject *key, PyObject *event,
                      PyObject *ms_name) {
    PyObject *ms = field(event, ms_name);
    PyObject *seconds = ms == NULL ? NULL : PyNumber_TrueDivide(ms, thousand);
    Py_XDECREF(ms);
    int status = seconds == NULL ? -1 : observe(series, buckets, key, seconds);
    Py_XDECREF(seconds);
    return status;
}

typedef struct {
    PyObject *pages, *page_load, *page_buckets, *widgets, *shown;
    PyObject *search_latency, *search_buckets, *zero_results, *cart_units;
} Storefront;

static int page_viewed(Watermark *w, Storefront *s, PyObject *event) {
    PyObject *page = label(w, event, s_page, s->pages);
    if (page == NULL) return -1;
    int status = observe_ms(s->page_load, s->page_buckets, page, event, s_load_ms);
    Py_DECREF(page);
    return status;
}

static int recommendation_shown(Watermark *w, Storefront *s, PyObject *event) {
    PyObject *widget = label(w, event, s_widget, s->widgets);
    if (widget == NULL) return -1;
    int status = add(s->shown, widget, one);
    Py_DECREF(widget);
    return status;
}

static int search_performed(Storefront *s, PyObject *event) {
    if (observe_ms(s->search_latency, s->search_buckets, no_labels, event, s_latency_ms) < 0)
        return -1;
    PyObject *results = field(event, s_results);
    int none_found = results == NULL ? -1 : PyObject_RichCompareBool(results, zero, Py_EQ);
    Py_XDECREF(results);
    return none_found <= 0 ? none_found : add(s->zero_results, no_labels, one);
}

static int cart_added(Storefront *s, PyObject *event) {
    PyObject *qty = field(event, s_qty);
    int status = qty == NULL ? -1 : add(s->cart_units, no_labels, qty);
    Py_XDECREF(qty);
    return status;
}

/* Is the handler the engine's own method of that name (not one put in its place)? */
static int own_method(PyObject *handler, PyObject *engine, const char *name) {
    if (handler == NULL || !PyMethod_Check(handler) || PyMethod_GET_SELF(handler) != engine)
        return 0;
    PyObject *function = PyObject_GetAttrString((PyObject *)Py_TYPE(engine), name);
    if (function == NULL) PyErr_Clear();
    int own = function != NULL && PyMethod_GET_FUNCTION(handler) == function;
    Py_XDECREF(function);
    return own;
}

/* The slot of an event kind; NULL with no error set when the table is full. */
static KindSlot *slot_of(KindSlot *slots, int *count, PyObject *handlers, PyObject *kind,
                         PyObject *engine) {
    for (int i = 0; i < *count; i++)
        if (slots[i].kind == kind) return &slots[i];
    if (*count == MAX_KINDS) return NULL;
    PyObject *handler = PyDict_GetItemWithError(handlers, kind); /* NULL: KeyError on use */
    if (handler == NULL && PyErr_Occurred()) return NULL;
    KindSlot *slot = &slots[(*count)++];
    slot->kind = Py_NewRef(kind);
    slot->handler = Py_XNewRef(handler);
    slot->accepted = 0;
    slot->accepted_rank = -1;
    slot->inline_as = CALL_HANDLER;
    slot->apply_as = APPLY_NONE;
    for (size_t i = 0; PyUnicode_CheckExact(kind) && i < sizeof INLINED / sizeof INLINED[0]; i++) {
        if (PyUnicode_CompareWithASCIIString(kind, INLINED[i].kind) == 0) {
            if (own_method(handler, engine, INLINED[i].method)) {
                slot->inline_as = INLINED[i].inline_as;
                slot->apply_as = INLINED[i].apply_as;
            }
            break;
        }
    }
    return slot;
}

/* --- IdTable: the engine's de-duplication table (event id -> hour of its ts).

   A dict with the same contents missed the CPU caches on most events: ~330k ids
   for a day of traffic, looked up at random. This table keeps hash, id and hour
   in one slot (open addressing, linear probing, at most half full), so a lookup
   touches one cache line, and `admit` prefetches the lines of a whole batch
   before it runs. It pickles as a plain dict. Keys are exact str. */

typedef struct {
    Py_hash_t hash;
    PyObject *key; /* owned; NULL: an empty slot */
    long long hour;
} IdSlot;

typedef struct {
    PyObject_HEAD
    IdSlot *slots;
    size_t mask; /* capacity - 1; the capacity is a power of two */
    Py_ssize_t used;
} IdTable;

static PyTypeObject IdTableType;
#define MIN_CAPACITY 8

static int str_key(PyObject *key, Py_hash_t *hash) {
    if (!PyUnicode_CheckExact(key)) {
        PyErr_Format(PyExc_TypeError, "IdTable keys are str, not %.100s", Py_TYPE(key)->tp_name);
        return -1;
    }
    *hash = PyObject_Hash(key);
    return *hash == -1 ? -1 : 0;
}

/* The slot holding key, or the empty slot where it goes; *found says which. */
static size_t id_find(IdTable *t, PyObject *key, Py_hash_t hash, int *found) {
    size_t i = (size_t)hash & t->mask;
    for (;; i = (i + 1) & t->mask) {
        IdSlot *slot = &t->slots[i];
        if (slot->key == NULL) {
            *found = 0;
            return i;
        }
        /* Exact str keys: equal hashes, then equal text (never raises). */
        if (slot->hash == hash &&
            (slot->key == key || PyUnicode_Compare(slot->key, key) == 0)) {
            *found = 1;
            return i;
        }
    }
}

static int id_resize(IdTable *t, size_t capacity) {
    IdSlot *old = t->slots, *slots = PyMem_Calloc(capacity, sizeof(IdSlot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    size_t old_capacity = old == NULL ? 0 : t->mask + 1;
    t->slots = slots;
    t->mask = capacity - 1;
    for (size_t i = 0; i < old_capacity; i++) {
        if (old[i].key == NULL) continue;
        size_t j = (size_t)old[i].hash & t->mask;
        while (slots[j].key != NULL) j = (j + 1) & t->mask;
        slots[j] = old[i];
    }
    PyMem_Free(old);
    return 0;
}

/* A new key into the empty slot `at` that id_find gave; then the table grows if it is
   more than half full. */
static int id_insert_at(IdTable *t, size_t at, PyObject *key, Py_hash_t hash, long long hour) {
    t->slots[at] = (IdSlot){hash, Py_NewRef(key), hour};
    t->used++;
    return (size_t)t->used * 2 > t->mask + 1 ? id_resize(t, (t->mask + 1) * 2) : 0;
}

/* table[key] = hour */
static int id_set(IdTable *t, PyObject *key, Py_hash_t hash, long long hour) {
    int found;
    size_t i = id_find(t, key, hash, &found);
    if (!found) return id_insert_at(t, i, key, hash, hour);
    t->slots[i].hour = hour;
    return 0;
}

/* Empty slot i, moving later slots of its probe run back (no tombstones). */
static void id_delete_at(IdTable *t, size_t i) {
    PyObject *key = t->slots[i].key;
    for (size_t j = (i + 1) & t->mask; t->slots[j].key != NULL; j = (j + 1) & t->mask) {
        size_t home = (size_t)t->slots[j].hash & t->mask;
        /* Slot j may move to i unless its home lies cyclically in (i, j]. */
        int stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].key = NULL;
    t->used--;
    Py_DECREF(key);
}

/* The capacity for `used` ids: a power of two, at most half full. */
static size_t capacity_for(Py_ssize_t used) {
    size_t capacity = MIN_CAPACITY;
    while (capacity < (size_t)used * 2 + 2) capacity *= 2;
    return capacity;
}

static PyObject *id_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *initial = NULL;
    if (!PyArg_ParseTuple(args, "|O!:IdTable", &PyDict_Type, &initial)) return NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_SetString(PyExc_TypeError, "IdTable() takes no keyword arguments");
        return NULL;
    }
    IdTable *t = (IdTable *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    if (id_resize(t, capacity_for(initial == NULL ? 0 : PyDict_GET_SIZE(initial))) < 0)
        goto error;
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (initial != NULL && PyDict_Next(initial, &position, &key, &value)) {
        Py_hash_t hash;
        long long hour;
        if (str_key(key, &hash) < 0) goto error;
        if (!bounded(value, TS_BOUND, &hour)) {
            PyErr_SetString(PyExc_TypeError, "IdTable values are hours (int)");
            goto error;
        }
        if (id_set(t, key, hash, hour) < 0) goto error;
    }
    return (PyObject *)t;
error:
    Py_DECREF(t);
    return NULL;
}

static void id_dealloc(IdTable *t) {
    if (t->slots != NULL) {
        for (size_t i = 0; i <= t->mask; i++) Py_XDECREF(t->slots[i].key);
        PyMem_Free(t->slots);
    }
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static Py_ssize_t id_length(IdTable *t) { return t->used; }

/* The slot of key, or -1: with an error set when key is not a str. */
static Py_ssize_t id_slot_of(IdTable *t, PyObject *key) {
    Py_hash_t hash;
    int found;
    if (str_key(key, &hash) < 0) return -1;
    size_t i = id_find(t, key, hash, &found);
    return found ? (Py_ssize_t)i : -1;
}

static int id_contains(IdTable *t, PyObject *key) {
    Py_ssize_t i = id_slot_of(t, key);
    return i >= 0 ? 1 : PyErr_Occurred() ? -1 : 0;
}

static PyObject *id_getitem(IdTable *t, PyObject *key) {
    Py_ssize_t i = id_slot_of(t, key);
    if (i >= 0) return PyLong_FromLongLong(t->slots[i].hour);
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static int id_setitem(IdTable *t, PyObject *key, PyObject *value) {
    Py_hash_t hash;
    if (str_key(key, &hash) < 0) return -1;
    if (value == NULL) {
        int found;
        size_t i = id_find(t, key, hash, &found);
        if (!found) {
            PyErr_SetObject(PyExc_KeyError, key);
            return -1;
        }
        id_delete_at(t, i);
        return 0;
    }
    long long hour;
    if (!bounded(value, TS_BOUND, &hour)) {
        PyErr_SetString(PyExc_TypeError, "IdTable values are hours (int)");
        return -1;
    }
    return id_set(t, key, hash, hour);
}

static PyObject *id_get(IdTable *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    Py_ssize_t i = id_slot_of(t, args[0]);
    if (i >= 0) return PyLong_FromLongLong(t->slots[i].hour);
    if (PyErr_Occurred()) return NULL;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *id_to_dict(IdTable *t, PyObject *unused) {
    PyObject *result = PyDict_New();
    for (size_t i = 0; result != NULL && i <= t->mask; i++) {
        if (t->slots[i].key == NULL) continue;
        PyObject *hour = PyLong_FromLongLong(t->slots[i].hour);
        if (hour == NULL || PyDict_SetItem(result, t->slots[i].key, hour) < 0) Py_CLEAR(result);
        Py_XDECREF(hour);
    }
    return result;
}

static PyObject *id_sizeof(IdTable *t, PyObject *unused) {
    return PyLong_FromSize_t(Py_TYPE(t)->tp_basicsize + (t->mask + 1) * sizeof(IdSlot));
}

static PyObject *id_iter(IdTable *t) {
    PyObject *keys = PyList_New(0);
    for (size_t i = 0; keys != NULL && i <= t->mask; i++)
        if (t->slots[i].key != NULL && PyList_Append(keys, t->slots[i].key) < 0) Py_CLEAR(keys);
    PyObject *iterator = keys == NULL ? NULL : PyObject_GetIter(keys);
    Py_XDECREF(keys);
    return iterator;
}

static PyObject *id_reduce(IdTable *t, PyObject *unused) {
    return Py_BuildValue("(O(N))", (PyObject *)&PyDict_Type, id_to_dict(t, NULL));
}

static PyMethodDef id_methods[] = {
    {"get", (PyCFunction)(void (*)(void))id_get, METH_FASTCALL, "get(id, default=None)"},
    {"to_dict", (PyCFunction)id_to_dict, METH_NOARGS, "the contents as a dict"},
    {"__sizeof__", (PyCFunction)id_sizeof, METH_NOARGS, "bytes, slots included"},
    {"__reduce__", (PyCFunction)id_reduce, METH_NOARGS, "pickles as a plain dict"},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods id_mapping = {(lenfunc)id_length, (binaryfunc)id_getitem,
                                      (objobjargproc)id_setitem};
static PySequenceMethods id_sequence = {.sq_contains = (objobjproc)id_contains};

static PyTypeObject IdTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flows._fastengine.IdTable",
    .tp_basicsize = sizeof(IdTable),
    .tp_dealloc = (destructor)id_dealloc,
    .tp_as_mapping = &id_mapping,
    .tp_as_sequence = &id_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "IdTable(dict=None): event id -> hour, for de-duplication (see _fastengine.c)",
    .tp_methods = id_methods,
    .tp_iter = (getiterfunc)id_iter,
    .tp_new = id_new,
};

/* Run a Python callback of the engine (it may read `engine.watermark`). */
static int call(Watermark *w, PyObject *callable, PyObject *arg) {
    if (sync_watermark(w) < 0) return -1;
    PyObject *result = arg ? PyObject_CallOneArg(callable, arg) : PyObject_CallNoArgs(callable);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

typedef struct {
    Watermark *w;
    PyObject *orders, *orphans, *window_parts, *timers, *fcs, *regions, *widgets;
    PyObject *order_event, *fire, *retention, *cycle_buckets; /* engine wiring */
    long long window;
    int retain; /* config.retention is set */
    PyObject *ordered, *awaiting, *in_stage, *shipped, *cycle, *breaches, *past_ship,
        *past_delivery, *deliveries, *late_deliveries, *picked, *on_hand, *adjusted, *clicked,
        *updates; /* series */
} Orders;

/* --- Orders, inventory and their timers: engine.py's handlers, line for line, on
   the same Python objects (an order is the engine's 10-item list, a timer its
   (at, kind, id) tuple on the same heap). They took a third of a replay as Python
   calls for an eighth of its events. What is rare stays the engine's Python
   method: orphans (an order event before its order.placed), cancellations,
   receipts, retention and orphan timers, and the text of alerts. */

enum { O_FC, O_REGION, O_SHIP_BY, O_DELIVER_BY, O_PLACED, O_SHIPPED, O_SHIP_FC, O_CANCELLED,
       O_DELIVERED, O_FLAGS, ORDER_FIELDS };
enum { SHIP_DECIDED = 1, SHIP_COUNTED = 2, DELIVERY_DECIDED = 4, DELIVERY_COUNTED = 8,
       PAST_SHIP = 16, PAST_DELIVERY = 32, PICKED = 64, PACKED = 128, RETAINED = 256 };
enum { T_SHIP = 0, T_DELIVERY = 1, T_ORDER_RETENTION = 5, T_SHIPMENT = 7 };
enum { STAGE_NONE, STAGE_PLACED, STAGE_PICKED, STAGE_PACKED };

/* An order of the engine, as a new reference; NULL (no error set) when there is none. */
static PyObject *order_of(Orders *o, PyObject *order_id) {
    PyObject *order = PyDict_GetItemWithError(o->orders, order_id);
    if (order == NULL) return NULL;
    if (!PyList_CheckExact(order) || PyList_GET_SIZE(order) != ORDER_FIELDS) {
        PyErr_SetString(PyExc_TypeError, "_fastengine: an order that is not a 10-item list");
        return NULL;
    }
    return Py_NewRef(order);
}

#define FIELD(order, index) PyList_GET_ITEM(order, index)
#define IS_NONE(order, index) (FIELD(order, index) == Py_None)

static long flags_of(PyObject *order) { return PyLong_AsLong(FIELD(order, O_FLAGS)); }

/* order[O_FLAGS] = order[O_FLAGS] & ~clear | set */
static int change_flags(PyObject *order, long set, long clear) {
    long flags = flags_of(order);
    if (flags == -1 && PyErr_Occurred()) return -1;
    PyObject *value = PyLong_FromLong((flags & ~clear) | set);
    return value == NULL ? -1 : PyList_SetItem(order, O_FLAGS, value);
}

/* order[O_FLAGS] |= flag */
static int set_flag(PyObject *order, long flag) { return change_flags(order, flag, 0); }

/* order[O_FLAGS] & flag: 1, 0, or -1 with an error set */
static int has_flag(PyObject *order, long flag) {
    long flags = flags_of(order);
    return flags == -1 && PyErr_Occurred() ? -1 : (flags & flag) != 0;
}

/* if order[O_FLAGS] & flag: clear it. 1 when it was set, 0, or -1 with an error set */
static int take_flag(PyObject *order, long flag) {
    int had = has_flag(order, flag);
    return had <= 0 ? had : change_flags(order, 0, flag) < 0 ? -1 : 1;
}

/* order[index] = value */
static int set_field(PyObject *order, Py_ssize_t index, PyObject *value) {
    return PyList_SetItem(order, index, Py_NewRef(value));
}

/* a <= b, as Python compares them */
static int less_or_equal(PyObject *a, PyObject *b) { return PyObject_RichCompareBool(a, b, Py_LE); }

/* engine._stage */
static int stage_of(PyObject *order) {
    if (!IS_NONE(order, O_SHIPPED) || !IS_NONE(order, O_CANCELLED)) return STAGE_NONE;
    long flags = flags_of(order);
    if (flags == -1 && PyErr_Occurred()) return -1;
    return flags & PACKED ? STAGE_PACKED : flags & PICKED ? STAGE_PICKED : STAGE_PLACED;
}

/* add(series, (first, second), amount) */
static int add_pair(PyObject *series, PyObject *first, PyObject *second, PyObject *amount) {
    PyObject *key = PyTuple_Pack(2, first, second);
    int status = key == NULL ? -1 : add(series, key, amount);
    Py_XDECREF(key);
    return status;
}

/* engine._restage */
static int restage(Orders *o, PyObject *order, int before) {
    int after = stage_of(order);
    if (after < 0 || before < 0) return -1;
    if (after == before) return 0;
    if (before != STAGE_NONE &&
        add_pair(o->in_stage, FIELD(order, O_FC), stage_names[before], minus_one) < 0)
        return -1;
    if (after == STAGE_NONE) return 0;
    return add_pair(o->in_stage, FIELD(order, O_FC), stage_names[after], one);
}

/* heapq.heappush(engine.timers, (at, kind, ident)) */
static int push_timer(Orders *o, PyObject *at, long kind, PyObject *ident) {
    PyObject *kind_obj = PyLong_FromLong(kind);
    PyObject *timer = kind_obj == NULL ? NULL : PyTuple_Pack(3, at, kind_obj, ident);
    Py_XDECREF(kind_obj);
    if (timer == NULL) return -1;
    PyObject *args[] = {o->timers, timer};
    PyObject *result = PyObject_Vectorcall(heappush, args, 2, NULL);
    Py_DECREF(timer);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

/* push_timer(base + plus, ...) */
static int push_timer_after(Orders *o, PyObject *base, PyObject *plus, long kind, PyObject *ident) {
    PyObject *at = PyNumber_Add(base, plus);
    int status = at == NULL ? -1 : push_timer(o, at, kind, ident);
    Py_XDECREF(at);
    return status;
}

/* engine._window_part(ts, fc)[index] += amount */
static int window_add(Orders *o, long long ts, PyObject *fc, Py_ssize_t index, PyObject *amount) {
    long long start = floor_div(ts, o->window) * o->window; /* ts - ts % window */
    PyObject *start_obj = PyLong_FromLongLong(start);
    PyObject *key = start_obj == NULL ? NULL : PyTuple_Pack(2, start_obj, fc);
    Py_XDECREF(start_obj);
    if (key == NULL) return -1;
    PyObject *part = Py_XNewRef(PyDict_GetItemWithError(o->window_parts, key));
    if (part == NULL && !PyErr_Occurred()) {
        part = PyList_New(3);
        for (Py_ssize_t i = 0; part != NULL && i < 3; i++)
            PyList_SET_ITEM(part, i, Py_NewRef(zero));
        if (part != NULL && PyDict_SetItem(o->window_parts, key, part) < 0) Py_CLEAR(part);
    }
    Py_DECREF(key);
    if (part == NULL) return -1;
    int status = sequence_add(part, index, amount);
    Py_DECREF(part);
    return status;
}

/* engine._leave_awaiting */
static int leave_awaiting(Orders *o, PyObject *order) {
    PyObject *fc = FIELD(order, O_FC);
    if (add(o->awaiting, fc, minus_one) < 0) return -1;
    int was_past = take_flag(order, PAST_SHIP);
    return was_past <= 0 ? was_past : add(o->past_ship, fc, minus_one);
}

/* engine._leave_past_delivery */
static int leave_past_delivery(Orders *o, PyObject *order) {
    int was_past = take_flag(order, PAST_DELIVERY);
    return was_past <= 0 ? was_past : add(o->past_delivery, FIELD(order, O_REGION), minus_one);
}

/* engine._count_delivery */
static int count_delivery(Orders *o, PyObject *order, int on_time) {
    if (set_flag(order, DELIVERY_COUNTED) < 0) return -1;
    return add_pair(o->deliveries, FIELD(order, O_REGION), on_time ? s_true : s_false, one);
}

/* engine._count_shipment */
static int count_shipment(Orders *o, PyObject *order, int on_time) {
    if (set_flag(order, SHIP_COUNTED) < 0 ||
        add_pair(o->shipped, FIELD(order, O_SHIP_FC), on_time ? s_true : s_false, one) < 0)
        return -1;
    PyObject *taken = PyNumber_Subtract(FIELD(order, O_SHIPPED), FIELD(order, O_PLACED));
    PyObject *seconds = taken == NULL ? NULL : PyNumber_TrueDivide(taken, million);
    Py_XDECREF(taken);
    int status =
        seconds == NULL ? -1 : observe(o->cycle, o->cycle_buckets, FIELD(order, O_FC), seconds);
    Py_XDECREF(seconds);
    return status;
}

/* engine._forget_if_done */
static int forget_if_done(Orders *o, PyObject *order_id, PyObject *order) {
    long flags = flags_of(order);
    if (flags == -1 && PyErr_Occurred()) return -1;
    if (!(flags & SHIP_DECIDED && flags & DELIVERY_DECIDED)) return 0;
    if (!IS_NONE(order, O_CANCELLED) ||
        (!IS_NONE(order, O_SHIPPED) && !IS_NONE(order, O_DELIVERED) && flags & SHIP_COUNTED))
        return PyDict_DelItem(o->orders, order_id);
    if (!o->retain || flags & RETAINED) return 0;
    if (set_flag(order, RETAINED) < 0) return -1;
    PyObject *ship_by = FIELD(order, O_SHIP_BY), *deliver_by = FIELD(order, O_DELIVER_BY);
    int later = PyObject_RichCompareBool(deliver_by, ship_by, Py_GT); /* max(ship_by, deliver_by) */
    if (later < 0) return -1;
    return push_timer_after(o, later ? deliver_by : ship_by, o->retention, T_ORDER_RETENTION,
                            order_id);
}

/* engine._alert(alert, order_id, order, deadline, happened, happened_field) */
static int alert(Orders *o, PyObject *name, PyObject *order_id, PyObject *order,
                 PyObject *deadline, PyObject *happened, PyObject *field) {
    if (sync_watermark(o->w) < 0) return -1;
    PyObject *result = PyObject_CallMethodObjArgs(o->w->engine, s_alert, name, order_id, order,
                                                  deadline, happened, field, NULL);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

/* (happened is not None and happened <= deadline)
   or (cancelled is not None and cancelled <= deadline) */
static int in_time(PyObject *order, Py_ssize_t happened, Py_ssize_t deadline) {
    int on_time = 0;
    if (!IS_NONE(order, happened))
        on_time = less_or_equal(FIELD(order, happened), FIELD(order, deadline));
    if (on_time == 0 && !IS_NONE(order, O_CANCELLED))
        on_time = less_or_equal(FIELD(order, O_CANCELLED), FIELD(order, deadline));
    return on_time;
}

/* engine._ship_deadline and engine._delivery_deadline */
static int deadline_passed(Orders *o, PyObject *order_id, int delivery) {
    PyObject *order = order_of(o, order_id);
    if (order == NULL) return PyErr_Occurred() ? -1 : 0;
    Py_ssize_t happened = delivery ? O_DELIVERED : O_SHIPPED;
    Py_ssize_t deadline = delivery ? O_DELIVER_BY : O_SHIP_BY;
    PyObject *where = FIELD(order, delivery ? O_REGION : O_FC);
    int status = set_flag(order, delivery ? DELIVERY_DECIDED : SHIP_DECIDED);
    int on_time = status < 0 ? -1 : in_time(order, happened, deadline);
    if (on_time < 0) status = -1;
    else if (!on_time) {
        PyObject *deadline_obj = Py_NewRef(FIELD(order, deadline));
        PyObject *happened_obj = Py_NewRef(FIELD(order, happened));
        status = add(delivery ? o->late_deliveries : o->breaches, where, one);
        if (status == 0)
            status = alert(o, delivery ? s_late_delivery : s_ship_sla_breach, order_id, order,
                           deadline_obj, happened_obj, delivery ? s_delivered_ts : s_shipped_ts);
        Py_DECREF(deadline_obj);
        Py_DECREF(happened_obj);
    }
    if (status == 0 && delivery && !IS_NONE(order, O_DELIVERED)) {
        int counted = has_flag(order, DELIVERY_COUNTED);
        status = counted < 0 ? -1 : counted ? 0 : count_delivery(o, order, 0);
    }
    if (status == 0 && IS_NONE(order, happened) && IS_NONE(order, O_CANCELLED)) {
        status = set_flag(order, delivery ? PAST_DELIVERY : PAST_SHIP);
        if (status == 0) status = add(delivery ? o->past_delivery : o->past_ship, where, one);
    }
    if (status == 0) status = forget_if_done(o, order_id, order);
    Py_DECREF(order);
    return status;
}

/* engine._shipment_final */
static int shipment_final(Orders *o, PyObject *order_id) {
    PyObject *order = order_of(o, order_id);
    if (order == NULL) return PyErr_Occurred() ? -1 : 0;
    int status = has_flag(order, SHIP_COUNTED);
    if (status == 0 && !IS_NONE(order, O_SHIPPED)) {
        PyObject *now = PyLong_FromLongLong(o->w->watermark);
        int final = now == NULL ? -1 : less_or_equal(FIELD(order, O_SHIPPED), now);
        Py_XDECREF(now);
        int on_time = final <= 0 ? final
                                 : less_or_equal(FIELD(order, O_SHIPPED), FIELD(order, O_SHIP_BY));
        status = on_time < 0 ? -1 : 0;
        if (final > 0 && status == 0) status = count_shipment(o, order, on_time);
        if (final > 0 && status == 0) status = forget_if_done(o, order_id, order);
    }
    Py_DECREF(order);
    return status < 0 ? -1 : 0;
}

/* engine._fire_due: the timers W has reached, in (at, kind) order */
static int fire_due(Orders *o) {
    while (PyList_GET_SIZE(o->timers) > 0) {
        PyObject *first = PyList_GET_ITEM(o->timers, 0);
        if (!PyTuple_CheckExact(first) || PyTuple_GET_SIZE(first) != 3) {
            PyErr_SetString(PyExc_TypeError, "_fastengine: a timer that is not (at, kind, id)");
            return -1;
        }
        long long at;
        int due;
        if (bounded(PyTuple_GET_ITEM(first, 0), TS_BOUND, &at)) {
            due = at <= o->w->watermark;
        } else {
            PyObject *now = PyLong_FromLongLong(o->w->watermark);
            due = now == NULL ? -1 : less_or_equal(PyTuple_GET_ITEM(first, 0), now);
            Py_XDECREF(now);
        }
        if (due <= 0) return due;
        PyObject *timer = PyObject_CallOneArg(heappop, o->timers);
        if (timer == NULL) return -1;
        PyObject *kind = PyTuple_GET_ITEM(timer, 1), *ident = PyTuple_GET_ITEM(timer, 2);
        long code = PyLong_Check(kind) ? PyLong_AsLong(kind) : -1;
        int status;
        if (code == T_SHIP || code == T_DELIVERY) {
            status = deadline_passed(o, ident, code == T_DELIVERY);
        } else if (code == T_SHIPMENT) {
            status = shipment_final(o, ident);
        } else {
            PyErr_Clear();
            PyObject *fire = PyObject_GetItem(o->fire, kind);
            status = fire == NULL ? -1 : call(o->w, fire, ident);
            Py_XDECREF(fire);
        }
        Py_DECREF(timer);
        if (status < 0) return -1;
    }
    return 0;
}

/* engine._apply_picked / engine._apply_packed */
static int apply_flag(Orders *o, PyObject *order, long flag) {
    int before = stage_of(order);
    if (before < 0 || set_flag(order, flag) < 0) return -1;
    return restage(o, order, before);
}

/* engine._apply_shipped */
static int apply_shipped(Orders *o, PyObject *order_id, PyObject *order, PyObject *event,
                         PyObject *ts) {
    int was_shipped = !IS_NONE(order, O_SHIPPED);
    if (was_shipped) {
        int earlier = less_or_equal(FIELD(order, O_SHIPPED), ts);
        if (earlier != 0) return earlier < 0 ? -1 : 0; /* the earliest shipment decides */
    }
    int before = stage_of(order);
    if (before < 0 || set_field(order, O_SHIPPED, ts) < 0) return -1;
    PyObject *fc = label(o->w, event, s_fc, o->fcs);
    if (fc == NULL || PyList_SetItem(order, O_SHIP_FC, fc) < 0) return -1;
    if (!was_shipped && IS_NONE(order, O_CANCELLED) && leave_awaiting(o, order) < 0) return -1;
    if (restage(o, order, before) < 0) return -1;
    int counted = has_flag(order, SHIP_COUNTED);
    return counted != 0 ? (counted < 0 ? -1 : 0) : push_timer(o, ts, T_SHIPMENT, order_id);
}

/* engine._apply_delivered */
static int apply_delivered(Orders *o, PyObject *order_id, PyObject *order, PyObject *ts) {
    if (!IS_NONE(order, O_DELIVERED)) {
        int earlier = less_or_equal(FIELD(order, O_DELIVERED), ts);
        if (earlier != 0) return earlier < 0 ? -1 : 0;
    }
    if (set_field(order, O_DELIVERED, ts) < 0 || leave_past_delivery(o, order) < 0) return -1;
    long flags = flags_of(order);
    if (flags == -1 && PyErr_Occurred()) return -1;
    if (!(flags & DELIVERY_COUNTED)) {
        int on_time = less_or_equal(ts, FIELD(order, O_DELIVER_BY));
        if (on_time < 0) return -1;
        if ((on_time || flags & DELIVERY_DECIDED) && count_delivery(o, order, on_time) < 0)
            return -1;
    }
    return forget_if_done(o, order_id, order);
}

/* engine._order_event: the event's change to its order, or Python holds it as an orphan */
static int order_event(Orders *o, PyObject *event, int apply_as) {
    PyObject *order_id = field(event, s_order_id);
    if (order_id == NULL) return -1;
    PyObject *order = order_of(o, order_id), *ts = NULL;
    int status;
    if (order == NULL) {
        status = PyErr_Occurred() ? -1 : call(o->w, o->order_event, event);
    } else if ((ts = field(event, s_ts)) == NULL) {
        status = -1;
    } else if (apply_as == APPLY_SHIPPED) {
        status = apply_shipped(o, order_id, order, event, ts);
    } else if (apply_as == APPLY_DELIVERED) {
        status = apply_delivered(o, order_id, order, ts);
    } else {
        status = apply_flag(o, order, apply_as == APPLY_PICKED ? PICKED : PACKED);
    }
    Py_XDECREF(ts);
    Py_XDECREF(order);
    Py_DECREF(order_id);
    return status;
}

/* sum(line.qty for line in event.lines) */
static PyObject *units_of(PyObject *event) {
    PyObject *lines = field(event, s_lines);
    PyObject *iterator = lines == NULL ? NULL : PyObject_GetIter(lines);
    Py_XDECREF(lines);
    if (iterator == NULL) return NULL;
    PyObject *total = Py_NewRef(zero), *line;
    while (total != NULL && (line = PyIter_Next(iterator)) != NULL) {
        PyObject *qty = field(line, s_qty);
        Py_DECREF(line);
        Py_SETREF(total, qty == NULL ? NULL : PyNumber_Add(total, qty));
        Py_XDECREF(qty);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred()) Py_CLEAR(total);
    return total;
}

/* [fc, region, ship_by, deliver_by, placed, None, None, None, None, 0]: a new order */
static PyObject *new_order(Orders *o, PyObject *event, PyObject *fc) {
    PyObject *order = PyList_New(ORDER_FIELDS);
    if (order == NULL) return NULL;
    for (Py_ssize_t i = 0; i < ORDER_FIELDS; i++)
        PyList_SET_ITEM(order, i, Py_NewRef(i == O_FLAGS ? zero : Py_None));
    PyObject *names[] = {s_promised_ship_by, s_promised_delivery_by, s_ts};
    for (int i = 0; i < 3; i++) {
        PyObject *value = field(event, names[i]);
        if (value == NULL || PyList_SetItem(order, O_SHIP_BY + i, value) < 0) goto error;
    }
    PyObject *region = label(o->w, event, s_region, o->regions);
    if (region == NULL || PyList_SetItem(order, O_REGION, region) < 0 ||
        set_field(order, O_FC, fc) < 0)
        goto error;
    return order;
error:
    Py_DECREF(order);
    return NULL;
}

/* engine._order_placed, when no orphan waits for the order (else the Python method) */
static int order_placed(Orders *o, PyObject *handler, PyObject *event, long long ts) {
    PyObject *order_id = field(event, s_order_id);
    if (order_id == NULL) return -1;
    int known = PyDict_Contains(o->orders, order_id), held = 0;
    if (known == 0) held = PyDict_Contains(o->orphans, order_id);
    if (known != 0 || held != 0) {
        Py_DECREF(order_id);
        return known < 0 || held < 0 ? -1 : known ? 0 : call(o->w, handler, event);
    }
    PyObject *fc = NULL, *units = NULL, *order = NULL;
    int status = -1;
    if ((fc = label(o->w, event, s_fc, o->fcs)) != NULL && (units = units_of(event)) != NULL &&
        add(o->ordered, fc, units) == 0 && window_add(o, ts, fc, 0, units) == 0 &&
        (order = new_order(o, event, fc)) != NULL &&
        PyDict_SetItem(o->orders, order_id, order) == 0 && add(o->awaiting, fc, one) == 0 &&
        add_pair(o->in_stage, fc, stage_names[STAGE_PLACED], one) == 0 &&
        push_timer_after(o, FIELD(order, O_SHIP_BY), one, T_SHIP, order_id) == 0 &&
        push_timer_after(o, FIELD(order, O_DELIVER_BY), one, T_DELIVERY, order_id) == 0)
        status = 0;
    Py_XDECREF(fc);
    Py_XDECREF(units);
    Py_XDECREF(order);
    Py_DECREF(order_id);
    return status;
}

/* engine._inventory_picked and engine._inventory_adjusted: on-hand stock moves */
static int stock_moved(Orders *o, PyObject *event, long long ts, int picked) {
    PyObject *fc = label(o->w, event, s_fc, o->fcs);
    if (fc == NULL) return -1;
    PyObject *amount = field(event, picked ? s_qty : s_delta), *change = NULL;
    int status = -1;
    if (amount == NULL) goto done;
    if (picked) {
        if (add(o->picked, fc, amount) < 0 || (change = PyNumber_Negative(amount)) == NULL)
            goto done;
    } else {
        change = Py_NewRef(amount);
    }
    if (add(o->on_hand, fc, change) < 0 || window_add(o, ts, fc, 2, change) < 0) goto done;
    if (picked) {
        PyObject *order_id = field(event, s_order_id);
        PyObject *order = order_id == NULL ? NULL : order_of(o, order_id);
        Py_XDECREF(order_id);
        int done_before = order == NULL ? (PyErr_Occurred() ? -1 : 0) : has_flag(order, PICKED);
        Py_XDECREF(order);
        status = done_before < 0 ? -1 : done_before ? 0 : order_event(o, event, APPLY_PICKED);
    } else {
        int moved = PyObject_IsTrue(amount);
        int up = moved > 0 ? PyObject_RichCompareBool(amount, zero, Py_GT) : 0;
        PyObject *size = moved > 0 && up >= 0 ? PyNumber_Absolute(amount) : NULL;
        status = moved < 0 || up < 0 ? -1 : !moved ? 0 : size == NULL ? -1
                 : add_pair(o->adjusted, fc, up ? s_up : s_down, size);
        Py_XDECREF(size);
    }
done:
    Py_XDECREF(change);
    Py_XDECREF(amount);
    Py_DECREF(fc);
    return status;
}

/* engine._delivery_updated */
static int delivery_updated(Orders *o, PyObject *event) {
    PyObject *status_obj = field(event, s_status);
    if (status_obj == NULL) return -1;
    int delivered = add(o->updates, status_obj, one) < 0 ? -1
                    : PyObject_RichCompareBool(status_obj, s_delivered, Py_EQ);
    Py_DECREF(status_obj);
    return delivered <= 0 ? delivered : order_event(o, event, APPLY_DELIVERED);
}

/* engine._recommendation_clicked */
static int recommendation_clicked(Orders *o, PyObject *event) {
    PyObject *widget = label(o->w, event, s_widget, o->widgets);
    int status = widget == NULL ? -1 : add(o->clicked, widget, one);
    Py_XDECREF(widget);
    return status;
}

/* engine._remembered(hour) */
static int remembered(long long hour, long long watermark, long long horizon) {
    return hour >= floor_div(watermark - horizon, HOUR);
}

/* The seen-ids bucket of the hour of ts: seen_hours.setdefault(hour, []) */
typedef struct {
    long long start, end, hour;
    PyObject *hour_obj, *ids; /* owned */
} Bucket;

static int bucket_for(Bucket *b, PyObject *seen_hours, long long ts) {
    if (b->ids != NULL && b->start <= ts && ts < b->end) return 0;
    b->hour = floor_div(ts, HOUR);
    b->start = b->hour * HOUR;
    b->end = b->start + HOUR;
    Py_CLEAR(b->hour_obj);
    Py_CLEAR(b->ids);
    if ((b->hour_obj = PyLong_FromLongLong(b->hour)) == NULL) return -1;
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) return -1;
    b->ids = Py_XNewRef(PyDict_SetDefault(seen_hours, b->hour_obj, fresh));
    Py_DECREF(fresh);
    if (b->ids != NULL && !PyList_CheckExact(b->ids))
        PyErr_SetString(PyExc_TypeError, "_fastengine: seen_hours holds a non-list");
    return b->ids != NULL && PyList_CheckExact(b->ids) ? 0 : -1;
}

/* Drop the references a batch held (safe on a batch that took none). */
static void release(Bucket *bucket, KindSlot *slots, int kinds) {
    Py_CLEAR(bucket->hour_obj);
    Py_CLEAR(bucket->ids);
    for (int i = 0; i < kinds; i++) {
        Py_CLEAR(slots[i].kind);
        Py_CLEAR(slots[i].handler);
    }
}

/* What one call of `admit` works on: the engine's state, and the loop's locals. */
typedef struct {
    PyObject *max_ts, *seen_hours, *duplicate, *late, *events, *handlers, *timers;
    PyObject *reject, *reject_type;
    IdTable *seen;
    PyObject **ids;    /* owned: each event's id, read ahead (NULL: read it in the loop) */
    Py_hash_t *hashes; /* their hashes */
    Py_ssize_t read_ahead;
    Storefront storefront;
    Orders orders;
    Watermark w;
    long long lateness, horizon, others, own_max, late_below;
    Bucket bucket;
    KindSlot slots[MAX_KINDS], *ranks[MAX_KINDS];
    int kinds, ranked;
} Batch;

/* One item of the loop: 0 when done with it, 1 to hand it (and the rest) to
   Python, -1 with an exception set. */
static int admit_one(Batch *b, Py_ssize_t index, PyObject *item) {
    if ((PyObject *)Py_TYPE(item) == b->reject_type) return call(&b->w, b->reject, item);
    PyObject *ts_obj = field(item, s_ts);
    if (ts_obj == NULL) return -1;
    long long ts;
    int in_range = bounded(ts_obj, TS_BOUND, &ts);
    Py_DECREF(ts_obj);
    if (!in_range) return 1;
    PyObject *kind = field(item, s_kind);
    if (kind == NULL) return -1;
    KindSlot *slot = slot_of(b->slots, &b->kinds, b->handlers, kind, b->w.engine);
    Py_DECREF(kind); /* a slot holds it */
    if (slot == NULL) return PyErr_Occurred() ? -1 : 1; /* full: more kinds than slots */
    kind = slot->kind;
    /* De-duplication: seen[id] is the hour of its ts; remembered while >= the horizon. */
    PyObject *event_id;
    Py_hash_t hash;
    if (index < b->read_ahead && b->ids[index] != NULL) {
        event_id = Py_NewRef(b->ids[index]);
        hash = b->hashes[index];
    } else {
        if ((event_id = field(item, s_event_id)) == NULL) return -1;
        if (!PyUnicode_CheckExact(event_id) || (hash = PyObject_Hash(event_id)) == -1) {
            Py_DECREF(event_id);
            PyErr_Clear();
            return 1; /* not a str id: the Python loop says what is wrong */
        }
    }
    int found;
    size_t at = id_find(b->seen, event_id, hash, &found);
    int status = 0;
    if (found && remembered(b->seen->slots[at].hour, b->w.watermark, b->horizon)) {
        status = 1;
    } else if ((status = bucket_for(&b->bucket, b->seen_hours, ts)) == 0) {
        if (found) b->seen->slots[at].hour = b->bucket.hour;
        else status = id_insert_at(b->seen, at, event_id, hash, b->bucket.hour);
        if (status == 0) status = PyList_Append(b->bucket.ids, event_id);
    }
    Py_DECREF(event_id);
    if (status != 0) return status < 0 ? -1 : add(b->duplicate, kind, one);
    if (ts < b->late_below) return add(b->late, kind, one);
    if (ts > b->own_max) {
        b->own_max = ts;
        long long candidate = (ts < b->others ? ts : b->others) - b->lateness;
        if (candidate > b->w.watermark) {
            b->w.watermark = candidate;
            b->w.watermark_dirty = 1;
            if (fire_due(&b->orders) < 0) return -1;
        }
        long long own_late = ts - b->lateness;
        b->late_below = own_late > b->w.watermark ? own_late : b->w.watermark;
    }
    if (slot->accepted_rank < 0) {
        slot->accepted_rank = b->ranked;
        b->ranks[b->ranked++] = slot;
    }
    slot->accepted++;
    switch (slot->inline_as) {
    case PAGE_VIEWED:
        return page_viewed(&b->w, &b->storefront, item);
    case RECOMMENDATION_SHOWN:
        return recommendation_shown(&b->w, &b->storefront, item);
    case SEARCH_PERFORMED:
        return search_performed(&b->storefront, item);
    case CART_ADDED:
        return cart_added(&b->storefront, item);
    case ORDER_PLACED:
        return order_placed(&b->orders, slot->handler, item, ts);
    case ORDER_EVENT:
        return order_event(&b->orders, item, slot->apply_as);
    case INVENTORY_PICKED:
    case INVENTORY_ADJUSTED:
        return stock_moved(&b->orders, item, ts, slot->inline_as == INVENTORY_PICKED);
    case DELIVERY_UPDATED:
        return delivery_updated(&b->orders, item);
    case RECOMMENDATION_CLICKED:
        return recommendation_clicked(&b->orders, item);
    default:
        if (slot->handler != NULL) return call(&b->w, slot->handler, item);
        PyErr_SetObject(PyExc_KeyError, kind);
        return -1;
    }
}

/* Read every event's id and hash, and prefetch its table slot: the slots of a
   batch then load from memory together, not one miss after another. */
static int read_ahead(Batch *b, PyObject *items) {
    Py_ssize_t n = PyList_GET_SIZE(items);
    b->ids = PyMem_Calloc(n > 0 ? n : 1, sizeof(PyObject *));
    b->hashes = PyMem_Calloc(n > 0 ? n : 1, sizeof(Py_hash_t));
    if (b->ids == NULL || b->hashes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->read_ahead = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        if ((PyObject *)Py_TYPE(item) == b->reject_type) continue;
        PyObject *id = field(item, s_event_id);
        Py_hash_t hash = id != NULL && PyUnicode_CheckExact(id) ? PyObject_Hash(id) : -1;
        if (hash == -1) { /* the loop reads it again and reports what is wrong */
            PyErr_Clear();
            Py_XDECREF(id);
            continue;
        }
        b->ids[i] = id;
        b->hashes[i] = hash;
#if defined(__GNUC__)
        __builtin_prefetch(&b->seen->slots[(size_t)hash & b->seen->mask]);
#endif
    }
    return 0;
}

/* Hand over to the Python loop (or the end of `process`): counts, own max ts, W. */
static int hand_over(Batch *b, PyObject *source) {
    int status = 0;
    for (int i = 0; i < b->ranked && status == 0; i++)
        status = add_count(b->events, b->ranks[i]->kind, b->ranks[i]->accepted);
    if (status < 0 || sync_watermark(&b->w) < 0) return -1;
    PyObject *own = PyLong_FromLongLong(b->own_max);
    status = own == NULL ? -1 : PyDict_SetItem(b->max_ts, source, own);
    Py_XDECREF(own);
    return status;
}

#define GET(target, owner, name)                                          \
    do {                                                                  \
        if ((target = PyObject_GetAttr(owner, name)) == NULL) goto done;  \
        int kept = PyList_Append(keep, target);                           \
        Py_DECREF(target);                                                \
        if (kept < 0) goto done;                                          \
    } while (0)

#define DICT(target, owner, name)                                         \
    do {                                                                  \
        GET(target, owner, name);                                         \
        if (!PyDict_CheckExact(target)) goto wrong_type;                  \
    } while (0)

static PyObject *admit(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "admit(engine, source, items: list, reject_type)");
        return NULL;
    }
    PyObject *engine = args[0], *source = args[1], *items = args[2];
    PyObject *keep = PyList_New(0), *result = NULL, *others_obj = NULL, *own_max_obj;
    if (keep == NULL) return NULL;
    PyObject *config, *lateness_obj, *horizon_obj, *watermark_obj, *seen;
    Batch b = {.reject_type = args[3], .w = {engine, 0, 0}, .own_max = -TS_BOUND};
    GET(config, engine, s_config);
    GET(lateness_obj, config, s_lateness);
    GET(horizon_obj, config, s_dedup_horizon);
    GET(watermark_obj, engine, s_watermark);
    GET(b.timers, engine, s_timers);
    GET(b.reject, engine, s_reject);
    GET(b.storefront.page_buckets, engine, s_page_buckets);
    DICT(b.max_ts, engine, s_max_ts);
    GET(seen, engine, s_seen);
    DICT(b.seen_hours, engine, s_seen_hours);
    DICT(b.duplicate, engine, s_duplicate);
    DICT(b.late, engine, s_late);
    DICT(b.events, engine, s_events);
    DICT(b.handlers, engine, s_handlers);
    DICT(b.storefront.pages, engine, s_pages);
    DICT(b.storefront.page_load, engine, s_page_load);
    DICT(b.storefront.widgets, engine, s_widgets);
    DICT(b.storefront.shown, engine, s_shown);
    DICT(b.storefront.search_latency, engine, s_search_latency);
    GET(b.storefront.search_buckets, engine, s_search_buckets);
    DICT(b.storefront.zero_results, engine, s_zero_results);
    DICT(b.storefront.cart_units, engine, s_cart_units);
    Orders *o = &b.orders;
    PyObject *series, *window_obj;
    o->w = &b.w;
    o->timers = b.timers;
    o->widgets = b.storefront.widgets;
    DICT(o->orders, engine, s_orders);
    DICT(o->orphans, engine, s_order_orphans);
    DICT(o->window_parts, engine, s_window_parts);
    DICT(o->fcs, engine, s_fcs);
    DICT(o->regions, engine, s_regions);
    GET(o->order_event, engine, s_order_event);
    GET(o->fire, engine, s_fire);
    GET(o->cycle_buckets, engine, s_cycle_buckets);
    GET(o->retention, config, s_retention);
    GET(window_obj, config, s_window);
    DICT(series, engine, s_series);
    struct {
        PyObject **target;
        const char *name;
    } named[] = {
        {&o->ordered, "cockpit_units_ordered_total"},
        {&o->awaiting, "cockpit_orders_awaiting_shipment"},
        {&o->in_stage, "cockpit_orders_in_stage"},
        {&o->shipped, "cockpit_orders_shipped_total"},
        {&o->cycle, "cockpit_order_cycle_seconds"},
        {&o->breaches, "cockpit_ship_sla_breaches_total"},
        {&o->past_ship, "cockpit_orders_past_ship_promise"},
        {&o->past_delivery, "cockpit_orders_past_delivery_promise"},
        {&o->deliveries, "cockpit_deliveries_total"},
        {&o->late_deliveries, "cockpit_late_deliveries_total"},
        {&o->picked, "cockpit_units_picked_total"},
        {&o->on_hand, "cockpit_units_on_hand"},
        {&o->adjusted, "cockpit_units_adjusted_total"},
        {&o->clicked, "cockpit_recommendations_clicked_total"},
        {&o->updates, "cockpit_delivery_updates_total"},
    };
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        PyObject *values = PyDict_GetItemString(series, named[i].name); /* kept by series */
        if (values == NULL || !PyDict_CheckExact(values)) goto wrong_type;
        *named[i].target = values;
    }
    if ((o->retain = PyObject_IsTrue(o->retention)) < 0) goto done;
    if (!PyList_CheckExact(b.timers) || !PyTuple_CheckExact(b.storefront.page_buckets) ||
        !PyTuple_CheckExact(b.storefront.search_buckets) || !PyTuple_CheckExact(o->cycle_buckets))
        goto wrong_type;
    if (!PyObject_TypeCheck(seen, &IdTableType)) { /* a dict, say, unpickled but not attached */
        result = PyLong_FromLong(0);
        goto done;
    }
    b.seen = (IdTable *)seen;
    if ((others_obj = PyObject_CallMethodOneArg(engine, s_others_min, source)) == NULL) goto done;
    own_max_obj = PyDict_GetItemWithError(b.max_ts, source);
    if (own_max_obj == NULL && PyErr_Occurred()) goto done;
    if ((own_max_obj != NULL && !bounded(own_max_obj, TS_BOUND, &b.own_max)) ||
        !bounded(others_obj, TS_BOUND, &b.others) || !bounded(lateness_obj, LIMIT, &b.lateness) ||
        b.lateness < 0 || !bounded(horizon_obj, LIMIT, &b.horizon) ||
        !bounded(watermark_obj, TS_BOUND + LIMIT, &b.w.watermark) ||
        !bounded(window_obj, LIMIT, &o->window) || o->window <= 0) {
        result = PyLong_FromLong(0); /* beyond what the C arithmetic covers: Python takes all */
        goto done;
    }
    long long own_late = b.own_max - b.lateness;
    b.late_below = own_late > b.w.watermark ? own_late : b.w.watermark;
    Py_ssize_t taken = 0;
    int status = read_ahead(&b, items);
    for (; status == 0 && taken < PyList_GET_SIZE(items); taken++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, taken));
        status = admit_one(&b, taken, item);
        Py_DECREF(item);
        if (status != 0) break;
    }
    if (status >= 0 && hand_over(&b, source) == 0) {
        result = PyLong_FromSsize_t(taken);
    } else if (status < 0) { /* leave W as the Python loop would; raise the first error */
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (sync_watermark(&b.w) < 0) PyErr_Clear();
        PyErr_Restore(type, value, traceback);
    }
    goto done;
wrong_type:
    PyErr_SetString(PyExc_TypeError, "_fastengine: engine state of an unexpected type");
done:
    release(&b.bucket, b.slots, b.kinds);
    for (Py_ssize_t i = 0; i < b.read_ahead; i++) Py_XDECREF(b.ids[i]);
    PyMem_Free(b.ids);
    PyMem_Free(b.hashes);
    Py_XDECREF(others_obj);
    Py_DECREF(keep);
    return result;
}

/* engine._forget_ids: for id in ids: if seen.get(id) == hour: del seen[id] */
static PyObject *forget(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    long long hour;
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &IdTableType) || !PyList_Check(args[1]) ||
        !bounded(args[2], TS_BOUND, &hour)) {
        PyErr_SetString(PyExc_TypeError, "forget(seen: IdTable, ids: list[str], hour: int)");
        return NULL;
    }
    IdTable *seen = (IdTable *)args[0];
    PyObject *ids = args[1];
    Py_ssize_t n = PyList_GET_SIZE(ids);
    Py_hash_t *hashes = PyMem_Calloc(n > 0 ? n : 1, sizeof(Py_hash_t));
    if (hashes == NULL) return PyErr_NoMemory();
    /* Hashes first (each id's is cached in it), then every slot prefetched, then
       the deletions: the misses of an hour's ids overlap instead of queueing. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (str_key(PyList_GET_ITEM(ids, i), &hashes[i]) < 0) {
            PyMem_Free(hashes);
            return NULL;
        }
#if defined(__GNUC__)
        __builtin_prefetch(&seen->slots[(size_t)hashes[i] & seen->mask]);
#endif
    }
    for (Py_ssize_t i = 0; i < n && i < PyList_GET_SIZE(ids); i++) {
        int found;
        size_t at = id_find(seen, PyList_GET_ITEM(ids, i), hashes[i], &found);
        if (found && seen->slots[at].hour == hour) id_delete_at(seen, at);
    }
    PyMem_Free(hashes);
    /* Give memory back after a burst: shrink once at most 1/8 full. The table
       stays as it is if that allocation fails. */
    if (seen->mask + 1 > MIN_CAPACITY && (size_t)seen->used * 8 < seen->mask + 1 &&
        id_resize(seen, capacity_for(seen->used)) < 0)
        PyErr_Clear();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"forget", (PyCFunction)(void (*)(void))forget, METH_FASTCALL,
     "forget(seen, ids, hour): forget the ids seen in hour, unless seen again later"},
    {"admit", (PyCFunction)(void (*)(void))admit, METH_FASTCALL,
     "admit(engine, source, items, reject_type) -> how many items it took, in order"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastengine", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastengine(void) {
    struct {
        PyObject **target;
        const char *text;
    } names[] = {
        {&s_kind, "kind"},
        {&s_event_id, "event_id"},
        {&s_ts, "ts"},
        {&s_page, "page"},
        {&s_load_ms, "load_ms"},
        {&s_widget, "widget"},
        {&s_watermark, "watermark"},
        {&s_config, "config"},
        {&s_lateness, "lateness"},
        {&s_dedup_horizon, "dedup_horizon"},
        {&s_max_ts, "max_ts"},
        {&s_seen, "seen"},
        {&s_seen_hours, "seen_hours"},
        {&s_duplicate, "_duplicate"},
        {&s_late, "_late"},
        {&s_events, "_events"},
        {&s_handlers, "_handlers"},
        {&s_timers, "timers"},
        {&s_reject, "_reject"},
        {&s_label, "_label"},
        {&s_pages, "_pages"},
        {&s_page_load, "_page_load"},
        {&s_page_buckets, "_page_buckets"},
        {&s_widgets, "_widgets"},
        {&s_shown, "_shown"},
        {&s_others_min, "_others_min"},
        {&s_latency_ms, "latency_ms"},
        {&s_results, "results"},
        {&s_qty, "qty"},
        {&s_search_latency, "_search_latency"},
        {&s_search_buckets, "_search_buckets"},
        {&s_zero_results, "_zero_results"},
        {&s_cart_units, "_cart_units"},
        {&s_order_id, "order_id"},
        {&s_fc, "fc"},
        {&s_region, "region"},
        {&s_lines, "lines"},
        {&s_promised_ship_by, "promised_ship_by"},
        {&s_promised_delivery_by, "promised_delivery_by"},
        {&s_delta, "delta"},
        {&s_status, "status"},
        {&s_delivered, "delivered"},
        {&s_late_delivery, "late_delivery"},
        {&s_ship_sla_breach, "ship_sla_breach"},
        {&s_delivered_ts, "delivered_ts"},
        {&s_shipped_ts, "shipped_ts"},
        {&s_up, "up"},
        {&s_down, "down"},
        {&s_orders, "orders"},
        {&s_order_orphans, "order_orphans"},
        {&s_window_parts, "window_parts"},
        {&s_series, "series"},
        {&s_window, "window"},
        {&s_retention, "retention"},
        {&s_alert, "_alert"},
        {&s_true, "true"},
        {&s_false, "false"},
        {&s_fcs, "_fcs"},
        {&s_regions, "_regions"},
        {&s_order_event, "_order_event"},
        {&s_fire, "_fire"},
        {&s_cycle_buckets, "_cycle_buckets"},
        {&stage_names[STAGE_PLACED], "placed"},
        {&stage_names[STAGE_PICKED], "picked"},
        {&stage_names[STAGE_PACKED], "packed"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].target = PyUnicode_InternFromString(names[i].text)) == NULL) return NULL;
    if ((zero = PyLong_FromLong(0)) == NULL || (one = PyLong_FromLong(1)) == NULL ||
        (minus_one = PyLong_FromLong(-1)) == NULL || (thousand = PyLong_FromLong(1000)) == NULL ||
        (million = PyLong_FromLong(1000000)) == NULL || (no_labels = PyTuple_New(0)) == NULL)
        return NULL;
    PyObject *heapq = PyImport_ImportModule("heapq");
    heappush = heapq == NULL ? NULL : PyObject_GetAttrString(heapq, "heappush");
    heappop = heapq == NULL ? NULL : PyObject_GetAttrString(heapq, "heappop");
    Py_XDECREF(heapq);
    if (heappush == NULL || heappop == NULL) return NULL;
    if (PyType_Ready(&IdTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddObjectRef(m, "IdTable", (PyObject *)&IdTableType) < 0) Py_CLEAR(m);
    return m;
}
