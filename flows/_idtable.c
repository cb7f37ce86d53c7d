/* The runtime's de-duplication table (flows/runtime/core.py, `Shard.process`):
   event id -> hour of its ts. A generic mechanism that knows nothing of KPIs.

   A dict of the ~330k ids of a day of traffic missed the CPU caches on most
   events, looked up at random. This table keeps hash, id and hour in one slot
   (open addressing, linear probing, at most half full, backward-shift deletion),
   so a lookup touches one cache line. It pickles as a plain dict, and
   `flows.runtime.ids.IdDict` is the same interface on a dict where this module
   was not compiled. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <sys/mman.h>

#define TS_BOUND (1LL << 62) /* every hour and ts the runtime keeps lies within +-TS_BOUND */

/* An int within +-bound as a C long long; 0 (no error set) when it is not one. */
static int bounded(PyObject *value, long long bound, long long *out) {
    int overflow;
    if (!PyLong_CheckExact(value)) return 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || v < -bound || v > bound) return 0;
    *out = v;
    return 1;
}

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

/* Slots, zeroed. A day of ids takes tens of MB, looked up at random: from 2 MiB
   on they are mapped on their own, in huge pages where the kernel allows
   (madvise), so lookups miss the TLB far less. */
#define HUGE_FROM (2u << 20)

static IdSlot *slots_alloc(size_t capacity) {
    size_t size = capacity * sizeof(IdSlot);
    if (size < HUGE_FROM) return PyMem_Calloc(capacity, sizeof(IdSlot));
    void *slots = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(slots, size, MADV_HUGEPAGE); /* a hint: without it, ordinary pages */
#endif
    return slots;
}

static void slots_free(IdSlot *slots, size_t capacity) {
    if (slots == NULL) return;
    size_t size = capacity * sizeof(IdSlot);
    if (size < HUGE_FROM)
        PyMem_Free(slots);
    else
        munmap(slots, size);
}

static int id_resize(IdTable *t, size_t capacity) {
    IdSlot *old = t->slots, *slots = slots_alloc(capacity);
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
    slots_free(old, old_capacity);
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
        slots_free(t->slots, t->mask + 1);
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

/* seen.remember(id, hour, since): True when id was seen in an hour >= since (a
   duplicate); otherwise id is remembered as seen in `hour` and the answer is False.
   One call per event instead of `in`, `[]` and `[]=`. */
static PyObject *id_remember(IdTable *t, PyObject *const *args, Py_ssize_t nargs) {
    long long hour, since;
    Py_hash_t hash;
    if (nargs != 3 || !bounded(args[1], TS_BOUND, &hour) || !bounded(args[2], TS_BOUND, &since)) {
        PyErr_SetString(PyExc_TypeError, "remember(id: str, hour: int, since: int)");
        return NULL;
    }
    if (str_key(args[0], &hash) < 0) return NULL;
    int found;
    size_t i = id_find(t, args[0], hash, &found);
    if (found) {
        if (t->slots[i].hour >= since) Py_RETURN_TRUE;
        t->slots[i].hour = hour;
        Py_RETURN_FALSE;
    }
    if (id_insert_at(t, i, args[0], hash, hour) < 0) return NULL;
    Py_RETURN_FALSE;
}

/* seen.prefetch(ids): hash each id (str caches it) and prefetch its slot, so the
   slots of a batch load from memory together, not one miss after another, before
   `remember` looks each up. Anything but a str is skipped. */
static PyObject *id_prefetch(IdTable *t, PyObject *ids) {
    if (!PyList_Check(ids)) {
        PyErr_SetString(PyExc_TypeError, "prefetch(ids: list)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(ids); i++) {
        PyObject *id = PyList_GET_ITEM(ids, i);
        if (!PyUnicode_CheckExact(id)) continue;
        Py_hash_t hash = PyObject_Hash(id);
        if (hash == -1) return NULL;
#if defined(__GNUC__)
        __builtin_prefetch(&t->slots[(size_t)hash & t->mask]);
#endif
    }
    Py_RETURN_NONE;
}

/* seen.forget(ids, hour): for id in ids: if seen.get(id) == hour: del seen[id] */
static PyObject *id_forget(IdTable *seen, PyObject *const *args, Py_ssize_t nargs) {
    long long hour;
    if (nargs != 2 || !PyList_Check(args[0]) || !bounded(args[1], TS_BOUND, &hour)) {
        PyErr_SetString(PyExc_TypeError, "forget(ids: list[str], hour: int)");
        return NULL;
    }
    PyObject *ids = args[0];
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

static PyMethodDef id_methods[] = {
    {"remember", (PyCFunction)(void (*)(void))id_remember, METH_FASTCALL,
     "remember(id, hour, since) -> True for a duplicate (seen in an hour >= since)"},
    {"prefetch", (PyCFunction)id_prefetch, METH_O, "prefetch(ids): load their slots"},
    {"forget", (PyCFunction)(void (*)(void))id_forget, METH_FASTCALL,
     "forget(ids, hour): forget the ids seen in hour, unless seen again later"},
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
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flows._idtable.IdTable",
    .tp_basicsize = sizeof(IdTable),
    .tp_dealloc = (destructor)id_dealloc,
    .tp_as_mapping = &id_mapping,
    .tp_as_sequence = &id_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "IdTable(dict=None): event id -> hour, for de-duplication (see _idtable.c)",
    .tp_methods = id_methods,
    .tp_iter = (getiterfunc)id_iter,
    .tp_new = id_new,
};


static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_idtable", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__idtable(void) {
    if (PyType_Ready(&IdTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "IdTable", (PyObject *)&IdTableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
