/* The per-event loop of `ShardEngine.process`, compiled: why in flows/engine.py
   (`ShardEngine.process`). It is the Python loop (`ShardEngine._admit`) line for
   line, on the engine's own Python state (so snapshots do not change): rejects,
   de-duplication, lateness, the watermark and its timers, then the event's
   handler. The storefront handlers, which take most events (page.viewed,
   recommendation.shown, search.performed, cart.added), run here; every other
   handler, timer and label is the engine's Python method. An event it cannot take (a ts that is not an int
   within +-2^62, a 65th kind in one batch) ends the call: the Python loop goes
   on from there. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define HOUR 3600000000LL
#define TS_BOUND (1LL << 62) /* engine.MAX_TS: every ts, W and max ts lie within +-TS_BOUND */
#define MAX_KINDS 64
#define LIMIT (1LL << 60) /* lateness and horizon; W may lie LIMIT beyond TS_BOUND */

enum { CALL_HANDLER, PAGE_VIEWED, RECOMMENDATION_SHOWN, SEARCH_PERFORMED, CART_ADDED };

typedef struct {
    PyObject *kind, *handler; /* owned; the handler is NULL for a kind without one */
    int inline_as;
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
    *s_duplicate, *s_late, *s_events, *s_handlers, *s_timers, *s_fire_due, *s_reject,
    *s_label, *s_pages, *s_page_load, *s_page_buckets, *s_widgets, *s_shown, *s_others_min,
    *s_latency_ms, *s_results, *s_qty, *s_search_latency,
    *s_search_buckets, *s_zero_results, *s_cart_units, *zero, *one, *thousand, *no_labels;

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
    PyObject *raw = PyObject_GetAttr(event, name);
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
    PyObject *ms = PyObject_GetAttr(event, ms_name);
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
    PyObject *results = PyObject_GetAttr(event, s_results);
    int none_found = results == NULL ? -1 : PyObject_RichCompareBool(results, zero, Py_EQ);
    Py_XDECREF(results);
    return none_found <= 0 ? none_found : add(s->zero_results, no_labels, one);
}

static int cart_added(Storefront *s, PyObject *event) {
    PyObject *qty = PyObject_GetAttr(event, s_qty);
    int status = qty == NULL ? -1 : add(s->cart_units, no_labels, qty);
    Py_XDECREF(qty);
    return status;
}

/* The slot of an event kind; NULL with no error set when the table is full. */
static KindSlot *slot_of(KindSlot *slots, int *count, PyObject *handlers, PyObject *kind) {
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
    if (PyUnicode_CheckExact(kind)) {
        if (PyUnicode_CompareWithASCIIString(kind, "page.viewed") == 0)
            slot->inline_as = PAGE_VIEWED;
        else if (PyUnicode_CompareWithASCIIString(kind, "recommendation.shown") == 0)
            slot->inline_as = RECOMMENDATION_SHOWN;
        else if (PyUnicode_CompareWithASCIIString(kind, "search.performed") == 0)
            slot->inline_as = SEARCH_PERFORMED;
        else if (PyUnicode_CompareWithASCIIString(kind, "cart.added") == 0)
            slot->inline_as = CART_ADDED;
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

/* W passed: fire the due timers, if the earliest one is due. */
static int fire_if_due(Watermark *w, PyObject *timers, PyObject *fire_due) {
    if (PyList_GET_SIZE(timers) == 0) return 0;
    PyObject *first = PySequence_GetItem(PyList_GET_ITEM(timers, 0), 0);
    if (first == NULL) return -1;
    long long at;
    int due;
    if (bounded(first, TS_BOUND, &at)) {
        due = at <= w->watermark;
    } else {
        PyObject *now = PyLong_FromLongLong(w->watermark);
        due = now == NULL ? -1 : PyObject_RichCompareBool(first, now, Py_LE);
        Py_XDECREF(now);
    }
    Py_DECREF(first);
    return due <= 0 ? due : call(w, fire_due, NULL);
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
    PyObject *fire_due, *reject, *reject_type;
    IdTable *seen;
    PyObject **ids;    /* owned: each event's id, read ahead (NULL: read it in the loop) */
    Py_hash_t *hashes; /* their hashes */
    Py_ssize_t read_ahead;
    Storefront storefront;
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
    PyObject *ts_obj = PyObject_GetAttr(item, s_ts);
    if (ts_obj == NULL) return -1;
    long long ts;
    int in_range = bounded(ts_obj, TS_BOUND, &ts);
    Py_DECREF(ts_obj);
    if (!in_range) return 1;
    PyObject *kind = PyObject_GetAttr(item, s_kind);
    if (kind == NULL) return -1;
    KindSlot *slot = slot_of(b->slots, &b->kinds, b->handlers, kind);
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
        if ((event_id = PyObject_GetAttr(item, s_event_id)) == NULL) return -1;
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
            if (fire_if_due(&b->w, b->timers, b->fire_due) < 0) return -1;
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
        PyObject *id = PyObject_GetAttr(item, s_event_id);
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
    GET(b.fire_due, engine, s_fire_due);
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
    if (!PyList_CheckExact(b.timers) || !PyTuple_CheckExact(b.storefront.page_buckets) ||
        !PyTuple_CheckExact(b.storefront.search_buckets))
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
        !bounded(watermark_obj, TS_BOUND + LIMIT, &b.w.watermark)) {
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
        {&s_fire_due, "_fire_due"},
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
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].target = PyUnicode_InternFromString(names[i].text)) == NULL) return NULL;
    if ((zero = PyLong_FromLong(0)) == NULL || (one = PyLong_FromLong(1)) == NULL ||
        (thousand = PyLong_FromLong(1000)) == NULL || (no_labels = PyTuple_New(0)) == NULL)
        return NULL;
    if (PyType_Ready(&IdTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddObjectRef(m, "IdTable", (PyObject *)&IdTableType) < 0) Py_CLEAR(m);
    return m;
}
