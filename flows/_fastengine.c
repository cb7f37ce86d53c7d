/* The per-event loop of `ShardEngine.process`, compiled: why in flows/engine.py
   (`ShardEngine.process`). It is the Python loop (`ShardEngine._admit`) line for
   line, on the engine's own Python state (so snapshots do not change): rejects,
   de-duplication, lateness, the watermark and its timers, then the event's
   handler. The two storefront handlers that take most events (page.viewed,
   recommendation.shown) run here; every other handler, timer and label is the
   engine's Python method. An event it cannot take (a ts that is not an int
   within +-2^62, a 65th kind in one batch) ends the call: the Python loop goes
   on from there. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define HOUR 3600000000LL
#define TS_BOUND (1LL << 62) /* engine.MAX_TS: every ts, W and max ts lie within +-TS_BOUND */
#define MAX_KINDS 64
#define LIMIT (1LL << 60) /* lateness and horizon; W may lie LIMIT beyond TS_BOUND */

enum { CALL_HANDLER, PAGE_VIEWED, RECOMMENDATION_SHOWN };

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
    *s_page_label, *s_widget_label, *one, *thousand;

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
    PyObject *counts = PyDict_GetItemWithError(series, key);
    if (counts == NULL) {
        if (PyErr_Occurred()) return -1;
        Py_ssize_t size = PyTuple_GET_SIZE(buckets) + 2;
        counts = PyList_New(size);
        if (counts == NULL) return -1;
        for (Py_ssize_t i = 0; i < size; i++) PyList_SET_ITEM(counts, i, PyLong_FromLong(0));
        int status = PyDict_SetItem(series, key, counts);
        Py_DECREF(counts); /* the series holds it */
        if (status < 0) return -1;
    }
    Py_ssize_t low = 0, high = PyTuple_GET_SIZE(buckets); /* bisect_left */
    while (low < high) {
        Py_ssize_t mid = (low + high) / 2;
        int less = PyObject_RichCompareBool(PyTuple_GET_ITEM(buckets, mid), value, Py_LT);
        if (less < 0) return -1;
        if (less) low = mid + 1;
        else high = mid;
    }
    Py_ssize_t size = PySequence_Size(counts);
    if (size < 0 || sequence_add(counts, low, one) < 0) return -1;
    return sequence_add(counts, size - 1, value);
}

/* known.get(raw) or engine._label(name, raw), as a new reference */
static PyObject *label(Watermark *w, PyObject *known, PyObject *name, PyObject *raw) {
    PyObject *value = PyDict_GetItemWithError(known, raw);
    if (value == NULL && PyErr_Occurred()) return NULL;
    if (value != NULL) {
        int truth = PyObject_IsTrue(value);
        if (truth < 0) return NULL;
        if (truth) return Py_NewRef(value);
    }
    if (sync_watermark(w) < 0) return NULL;
    return PyObject_CallMethodObjArgs(w->engine, s_label, name, raw, NULL);
}

typedef struct {
    PyObject *pages, *page_load, *page_buckets, *widgets, *shown;
} Storefront;

static int page_viewed(Watermark *w, Storefront *s, PyObject *event) {
    PyObject *raw = PyObject_GetAttr(event, s_page);
    if (raw == NULL) return -1;
    PyObject *page = label(w, s->pages, s_page_label, raw);
    Py_DECREF(raw);
    if (page == NULL) return -1;
    PyObject *load_ms = PyObject_GetAttr(event, s_load_ms);
    PyObject *seconds = load_ms == NULL ? NULL : PyNumber_TrueDivide(load_ms, thousand);
    Py_XDECREF(load_ms);
    int status = seconds == NULL ? -1 : observe(s->page_load, s->page_buckets, page, seconds);
    Py_DECREF(page);
    Py_XDECREF(seconds);
    return status;
}

static int recommendation_shown(Watermark *w, Storefront *s, PyObject *event) {
    PyObject *raw = PyObject_GetAttr(event, s_widget);
    if (raw == NULL) return -1;
    PyObject *widget = label(w, s->widgets, s_widget_label, raw);
    Py_DECREF(raw);
    if (widget == NULL) return -1;
    int status = add(s->shown, widget, one);
    Py_DECREF(widget);
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
    }
    return slot;
}

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

/* engine._remembered(hour): 1, 0, or -1 on error */
static int remembered(PyObject *hour_obj, long long watermark, long long horizon) {
    long long hour, cut = floor_div(watermark - horizon, HOUR);
    if (bounded(hour_obj, TS_BOUND, &hour)) return hour >= cut;
    PyObject *cut_obj = PyLong_FromLongLong(cut); /* not an hour this code wrote */
    int result = cut_obj == NULL ? -1 : PyObject_RichCompareBool(hour_obj, cut_obj, Py_GE);
    Py_XDECREF(cut_obj);
    return result;
}

/* The seen-ids bucket of the hour of ts: seen_hours.setdefault(hour, []) */
typedef struct {
    long long start, end;
    PyObject *hour, *ids; /* owned */
} Bucket;

static int bucket_for(Bucket *b, PyObject *seen_hours, long long ts) {
    if (b->ids != NULL && b->start <= ts && ts < b->end) return 0;
    long long hour = floor_div(ts, HOUR);
    b->start = hour * HOUR;
    b->end = b->start + HOUR;
    Py_CLEAR(b->hour);
    Py_CLEAR(b->ids);
    if ((b->hour = PyLong_FromLongLong(hour)) == NULL) return -1;
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) return -1;
    b->ids = Py_XNewRef(PyDict_SetDefault(seen_hours, b->hour, fresh));
    Py_DECREF(fresh);
    if (b->ids != NULL && !PyList_CheckExact(b->ids))
        PyErr_SetString(PyExc_TypeError, "_fastengine: seen_hours holds a non-list");
    return b->ids != NULL && PyList_CheckExact(b->ids) ? 0 : -1;
}

/* Drop the references a batch held (safe on a batch that took none). */
static void release(Bucket *bucket, KindSlot *slots, int kinds) {
    Py_CLEAR(bucket->hour);
    Py_CLEAR(bucket->ids);
    for (int i = 0; i < kinds; i++) {
        Py_CLEAR(slots[i].kind);
        Py_CLEAR(slots[i].handler);
    }
}

/* What one call of `admit` works on: the engine's state, and the loop's locals. */
typedef struct {
    PyObject *max_ts, *seen, *seen_hours, *duplicate, *late, *events, *handlers, *timers;
    PyObject *fire_due, *reject, *reject_type;
    Storefront storefront;
    Watermark w;
    long long lateness, horizon, others, own_max, late_below;
    Bucket bucket;
    KindSlot slots[MAX_KINDS], *ranks[MAX_KINDS];
    int kinds, ranked;
} Batch;

/* One item of the loop: 0 when done with it, 1 to hand it (and the rest) to
   Python, -1 with an exception set. */
static int admit_one(Batch *b, PyObject *item) {
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
    PyObject *event_id = PyObject_GetAttr(item, s_event_id);
    if (event_id == NULL) return -1;
    /* De-duplication: seen[id] is the hour of its ts; remembered while >= the horizon. */
    PyObject *known = PyDict_GetItemWithError(b->seen, event_id);
    int status = known == NULL ? (PyErr_Occurred() ? -1 : 0)
                               : remembered(known, b->w.watermark, b->horizon);
    if (status == 0) status = bucket_for(&b->bucket, b->seen_hours, ts);
    if (status == 0) status = PyDict_SetItem(b->seen, event_id, b->bucket.hour);
    if (status == 0) status = PyList_Append(b->bucket.ids, event_id);
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
    default:
        if (slot->handler != NULL) return call(&b->w, slot->handler, item);
        PyErr_SetObject(PyExc_KeyError, kind);
        return -1;
    }
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
    PyObject *config, *lateness_obj, *horizon_obj, *watermark_obj;
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
    DICT(b.seen, engine, s_seen);
    DICT(b.seen_hours, engine, s_seen_hours);
    DICT(b.duplicate, engine, s_duplicate);
    DICT(b.late, engine, s_late);
    DICT(b.events, engine, s_events);
    DICT(b.handlers, engine, s_handlers);
    DICT(b.storefront.pages, engine, s_pages);
    DICT(b.storefront.page_load, engine, s_page_load);
    DICT(b.storefront.widgets, engine, s_widgets);
    DICT(b.storefront.shown, engine, s_shown);
    if (!PyList_CheckExact(b.timers) || !PyTuple_CheckExact(b.storefront.page_buckets))
        goto wrong_type;
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
    int status = 0;
    for (; taken < PyList_GET_SIZE(items); taken++) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(items, taken));
        status = admit_one(&b, item);
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
    Py_XDECREF(others_obj);
    Py_DECREF(keep);
    return result;
}

/* engine._forget_ids: for id in ids: if seen.get(id) == hour: del seen[id] */
static PyObject *forget(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_CheckExact(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "forget(seen: dict, ids: list, hour)");
        return NULL;
    }
    PyObject *seen = args[0], *ids = args[1], *hour = args[2];
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ids); i++) {
        PyObject *id = Py_NewRef(PyList_GET_ITEM(ids, i));
        PyObject *known = PyDict_GetItemWithError(seen, id);
        int same = known == NULL ? (PyErr_Occurred() ? -1 : 0)
                   : known == hour ? 1
                                   : PyObject_RichCompareBool(known, hour, Py_EQ);
        if (same == 1) same = PyDict_DelItem(seen, id);
        Py_DECREF(id);
        if (same < 0) return NULL;
    }
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
        {&s_page_label, "page"},
        {&s_widget_label, "widget"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].target = PyUnicode_InternFromString(names[i].text)) == NULL) return NULL;
    if ((one = PyLong_FromLong(1)) == NULL || (thousand = PyLong_FromLong(1000)) == NULL)
        return NULL;
    return PyModule_Create(&module);
}
