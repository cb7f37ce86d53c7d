/* Tables keyed by str, for the runtime and the entities: generic mechanisms that
   know nothing of KPIs.

   - IdTable, the de-duplication table (flows/runtime/core.py, `Shard.process`):
     id -> the hour it was seen in. A dict of the ~330k ids of a day missed the
     CPU caches on most lookups, made at random.
   - KeyTable: str -> object, for records looked up by a key just decoded. A dict
     lookup on such a key chains three misses (index, entry, the stored key's
     text) before the value's own.

   Both keep hash, key and value in one slot (open addressing, linear probing, at
   most half full, backward-shift deletion), so a lookup touches one cache line,
   and `prefetch(keys)` loads a batch's slots, then their stored keys and values,
   so the misses of a batch overlap instead of queueing. Both pickle as a plain
   dict; `flows.runtime.ids` has the same interfaces on a dict where this module
   was not compiled. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "_prefetch.h"

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
    union {
        long long hour;  /* IdTable */
        PyObject *value; /* KeyTable: owned */
    };
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t mask; /* capacity - 1; the capacity is a power of two */
    Py_ssize_t used;
} Table;

static PyTypeObject IdTableType, KeyTableType;
#define HOLDS_OBJECTS(t) (Py_TYPE(t) == &KeyTableType)
#define MIN_CAPACITY 8

static int str_key(PyObject *t, PyObject *key, Py_hash_t *hash) {
    if (!PyUnicode_CheckExact(key)) {
        PyErr_Format(PyExc_TypeError, "%s keys are str, not %.100s", Py_TYPE(t)->tp_name,
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *hash = PyObject_Hash(key);
    return *hash == -1 ? -1 : 0;
}

/* Equal text of two exact strs (as a dict compares keys: CPython keeps a str in
   the narrowest kind its text needs, so equal texts have equal kinds). */
static inline int same_text(PyObject *a, PyObject *b) {
    Py_ssize_t length = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return length == PyUnicode_GET_LENGTH(b) && kind == (int)PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)length * kind) == 0;
}

/* The slot holding key, or the empty slot where it goes; *found says which. */
static size_t id_find(Table *t, PyObject *key, Py_hash_t hash, int *found) {
    size_t i = (size_t)hash & t->mask;
    for (;; i = (i + 1) & t->mask) {
        Slot *slot = &t->slots[i];
        if (slot->key == NULL) {
            *found = 0;
            return i;
        }
        /* Exact str keys: equal hashes, then equal text. */
        if (slot->hash == hash && (slot->key == key || same_text(slot->key, key))) {
            *found = 1;
            return i;
        }
    }
}

/* Slots, zeroed. A day of ids takes tens of MB, looked up at random: from 2 MiB
   on they are mapped on their own, in huge pages where the kernel allows
   (madvise), so lookups miss the TLB far less. */
#define HUGE_FROM (2u << 20)

static Slot *slots_alloc(size_t capacity) {
    size_t size = capacity * sizeof(Slot);
    if (size < HUGE_FROM) return PyMem_Calloc(capacity, sizeof(Slot));
    void *slots = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(slots, size, MADV_HUGEPAGE); /* a hint: without it, ordinary pages */
#endif
    return slots;
}

static void slots_free(Slot *slots, size_t capacity) {
    if (slots == NULL) return;
    size_t size = capacity * sizeof(Slot);
    if (size < HUGE_FROM)
        PyMem_Free(slots);
    else
        munmap(slots, size);
}

static int id_resize(Table *t, size_t capacity) {
    Slot *old = t->slots, *slots = slots_alloc(capacity);
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

/* A new key into the empty slot `at` that id_find gave, its value set by the
   caller; then the table grows if it is more than half full. */
static int id_insert_at(Table *t, size_t at, PyObject *key, Py_hash_t hash, Slot value) {
    value.hash = hash;
    value.key = Py_NewRef(key);
    t->slots[at] = value;
    t->used++;
    return (size_t)t->used * 2 > t->mask + 1 ? id_resize(t, (t->mask + 1) * 2) : 0;
}

/* A KeyTable is tracked by the garbage collector only once it holds a value that
   can be in a cycle (as a dict is): a table of acyclic records is never scanned. */
static void track_for(Table *t, PyObject *value) {
    if (PyObject_IS_GC(value) && !PyObject_GC_IsTracked((PyObject *)t) &&
        (!PyTuple_CheckExact(value) || PyObject_GC_IsTracked(value)))
        PyObject_GC_Track((PyObject *)t);
}

/* table[key] = hour, or value */
static int id_set(Table *t, PyObject *key, Py_hash_t hash, long long hour, PyObject *value) {
    int found;
    size_t i = id_find(t, key, hash, &found);
    Slot slot = {0};
    if (value == NULL) {
        slot.hour = hour;
    } else {
        track_for(t, value);
        slot.value = Py_NewRef(value);
    }
    if (!found) return id_insert_at(t, i, key, hash, slot);
    if (value == NULL) {
        t->slots[i].hour = hour;
    } else {
        PyObject *old = t->slots[i].value;
        t->slots[i].value = slot.value;
        Py_DECREF(old); /* last: its release may run code */
    }
    return 0;
}

/* Empty slot i, moving later slots of its probe run back (no tombstones). */
static void id_delete_at(Table *t, size_t i) {
    PyObject *key = t->slots[i].key;
    PyObject *value = HOLDS_OBJECTS(t) ? t->slots[i].value : NULL;
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
    Py_XDECREF(value); /* last: the table is whole again when its release runs code */
}

/* The capacity for `used` keys: a power of two, at most half full. */
static size_t capacity_for(Py_ssize_t used) {
    size_t capacity = MIN_CAPACITY;
    while (capacity < (size_t)used * 2 + 2) capacity *= 2;
    return capacity;
}

/* An IdTable's value as a C hour, with an error set when it is not one. */
static int hour_of(PyObject *value, long long *hour) {
    if (bounded(value, TS_BOUND, hour)) return 0;
    PyErr_SetString(PyExc_TypeError, "IdTable values are hours (int)");
    return -1;
}

/* table[key] = value, converted as the table keeps values. */
static int id_store(Table *t, PyObject *key, PyObject *value) {
    Py_hash_t hash;
    long long hour = 0;
    if (str_key((PyObject *)t, key, &hash) < 0) return -1;
    if (HOLDS_OBJECTS(t)) return id_set(t, key, hash, 0, value);
    return hour_of(value, &hour) < 0 ? -1 : id_set(t, key, hash, hour, NULL);
}

/* A slot's value as a new reference. */
static PyObject *value_at(Table *t, size_t i) {
    if (HOLDS_OBJECTS(t)) return Py_NewRef(t->slots[i].value);
    return PyLong_FromLongLong(t->slots[i].hour);
}

static PyObject *id_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *initial = NULL;
    if (!PyArg_ParseTuple(args, "|O!", &PyDict_Type, &initial)) return NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", type->tp_name);
        return NULL;
    }
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    if (PyObject_IS_GC((PyObject *)t)) PyObject_GC_UnTrack(t); /* tracked once it must be */
    if (id_resize(t, capacity_for(initial == NULL ? 0 : PyDict_GET_SIZE(initial))) < 0)
        goto error;
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (initial != NULL && PyDict_Next(initial, &position, &key, &value))
        if (id_store(t, key, value) < 0) goto error;
    return (PyObject *)t;
error:
    Py_DECREF(t);
    return NULL;
}

/* Every key and value let go, the slots freed (a KeyTable's clear too). */
static int id_clear(Table *t) {
    Slot *slots = t->slots;
    size_t capacity = t->mask + 1;
    int objects = HOLDS_OBJECTS(t);
    t->slots = NULL;
    t->mask = 0;
    t->used = 0;
    if (slots == NULL) return 0;
    for (size_t i = 0; i < capacity; i++) {
        if (slots[i].key == NULL) continue;
        Py_DECREF(slots[i].key);
        if (objects) Py_DECREF(slots[i].value);
    }
    slots_free(slots, capacity);
    return 0;
}

static void id_dealloc(Table *t) {
    if (PyObject_IS_GC((PyObject *)t)) PyObject_GC_UnTrack(t);
    id_clear(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int key_traverse(Table *t, visitproc visit, void *arg) {
    for (size_t i = 0; t->slots != NULL && i <= t->mask; i++)
        if (t->slots[i].key != NULL) Py_VISIT(t->slots[i].value);
    return 0;
}

static Py_ssize_t id_length(Table *t) { return t->used; }

/* The slot of key, or -1: with an error set when key is not a str. */
static Py_ssize_t id_slot_of(Table *t, PyObject *key) {
    Py_hash_t hash;
    int found;
    if (t->slots == NULL) return -1; /* cleared by the collector */
    if (str_key((PyObject *)t, key, &hash) < 0) return -1;
    size_t i = id_find(t, key, hash, &found);
    return found ? (Py_ssize_t)i : -1;
}

static int id_contains(Table *t, PyObject *key) {
    Py_ssize_t i = id_slot_of(t, key);
    return i >= 0 ? 1 : PyErr_Occurred() ? -1 : 0;
}

/* table[key]: a missing key is a KeyError in an IdTable, None in a KeyTable (the
   owner asks for records it may not have: one call, no exception to raise). */
static PyObject *id_getitem(Table *t, PyObject *key) {
    Py_ssize_t i = id_slot_of(t, key);
    if (i >= 0) return value_at(t, (size_t)i);
    if (PyErr_Occurred()) return NULL;
    if (HOLDS_OBJECTS(t)) Py_RETURN_NONE;
    PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static int id_setitem(Table *t, PyObject *key, PyObject *value) {
    if (value != NULL) {
        if (t->slots == NULL && id_resize(t, MIN_CAPACITY) < 0) return -1;
        return id_store(t, key, value);
    }
    Py_ssize_t i = id_slot_of(t, key);
    if (i < 0) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    id_delete_at(t, (size_t)i);
    return 0;
}

static PyObject *id_get(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
        return NULL;
    }
    Py_ssize_t i = id_slot_of(t, args[0]);
    if (i >= 0) return value_at(t, (size_t)i);
    if (PyErr_Occurred()) return NULL;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

/* The keys, the values, (key, value) pairs or a dict of them: copies, so the
   table may change while they are walked. */
enum view { KEYS, VALUES, ITEMS, DICT };

static PyObject *id_view(Table *t, enum view view) {
    PyObject *result = view == DICT ? PyDict_New() : PyList_New(0);
    for (size_t i = 0; result != NULL && t->slots != NULL && i <= t->mask; i++) {
        if (t->slots[i].key == NULL) continue;
        PyObject *key = t->slots[i].key, *value = value_at(t, i), *entry = NULL;
        int failed = value == NULL;
        if (!failed && view == DICT) {
            failed = PyDict_SetItem(result, key, value) < 0;
        } else if (!failed) {
            entry = view == KEYS     ? Py_NewRef(key)
                    : view == VALUES ? Py_NewRef(value)
                                     : PyTuple_Pack(2, key, value);
            failed = entry == NULL || PyList_Append(result, entry) < 0;
        }
        Py_XDECREF(entry);
        Py_XDECREF(value);
        if (failed) Py_CLEAR(result);
    }
    return result;
}

static PyObject *id_to_dict(Table *t, PyObject *unused) { return id_view(t, DICT); }
static PyObject *id_values(Table *t, PyObject *unused) { return id_view(t, VALUES); }
static PyObject *id_items(Table *t, PyObject *unused) { return id_view(t, ITEMS); }

static PyObject *id_iter(Table *t) {
    PyObject *keys = id_view(t, KEYS);
    PyObject *iterator = keys == NULL ? NULL : PyObject_GetIter(keys);
    Py_XDECREF(keys);
    return iterator;
}

static PyObject *id_sizeof(Table *t, PyObject *unused) {
    size_t slots = t->slots == NULL ? 0 : t->mask + 1;
    return PyLong_FromSize_t(Py_TYPE(t)->tp_basicsize + slots * sizeof(Slot));
}

static PyObject *id_reduce(Table *t, PyObject *unused) {
    return Py_BuildValue("(O(N))", (PyObject *)&PyDict_Type, id_to_dict(t, NULL));
}

/* seen.remember(id, hour, since): True when id was seen in an hour >= since (a
   duplicate); otherwise id is remembered as seen in `hour` and the answer is False.
   One call per id instead of `in`, `[]` and `[]=`. */
static PyObject *id_remember(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    long long hour, since;
    Py_hash_t hash;
    if (nargs != 3 || !bounded(args[1], TS_BOUND, &hour) || !bounded(args[2], TS_BOUND, &since)) {
        PyErr_SetString(PyExc_TypeError, "remember(id: str, hour: int, since: int)");
        return NULL;
    }
    if (str_key((PyObject *)t, args[0], &hash) < 0) return NULL;
    int found;
    size_t i = id_find(t, args[0], hash, &found);
    if (found) {
        if (t->slots[i].hour >= since) Py_RETURN_TRUE;
        t->slots[i].hour = hour;
        Py_RETURN_FALSE;
    }
    if (id_insert_at(t, i, args[0], hash, (Slot){.hour = hour}) < 0) return NULL;
    Py_RETURN_FALSE;
}

/* table.prefetch(keys[, size]): hash each key (str caches it) and load its slot;
   then, in a KeyTable, those slots loaded meanwhile, load the stored key (read to
   confirm a match) and the first `size` bytes (64 by default) of the value whose
   hash matches. The misses of a batch then overlap instead of queueing when each
   key is looked up. (An IdTable stops at the slots: most ids are new, and a new
   id's lookup reads nothing more.) Anything but a str is skipped. */
static PyObject *prefetch_keys(Table *t, PyObject *keys, Py_ssize_t size) {
    if (!PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "prefetch(keys: list)");
        return NULL;
    }
    if (t->slots == NULL) Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyUnicode_CheckExact(key)) continue;
        Py_hash_t hash = PyObject_Hash(key);
        if (hash == -1) return NULL;
        prefetch_span(&t->slots[(size_t)hash & t->mask], sizeof(Slot));
    }
    for (Py_ssize_t i = 0; HOLDS_OBJECTS(t) && i < n && i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyUnicode_CheckExact(key)) continue;
        Py_hash_t hash = PyObject_Hash(key); /* cached in the str above */
        for (size_t j = (size_t)hash & t->mask; t->slots[j].key != NULL; j = (j + 1) & t->mask) {
            if (t->slots[j].hash != hash) continue;
            if (t->slots[j].key != key) prefetch_span(t->slots[j].key, 64);
            prefetch_span(t->slots[j].value, size);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *id_prefetch(Table *t, PyObject *keys) { return prefetch_keys(t, keys, 0); }

static PyObject *key_prefetch(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t size = 64;
    if (nargs < 1 || nargs > 2 || (nargs == 2 && (size = PyLong_AsSsize_t(args[1])) < 0)) {
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "prefetch(keys: list, size: int = 64)");
        }
        return NULL;
    }
    return prefetch_keys(t, args[0], size);
}

/* seen.forget(ids, hour): for id in ids: if seen.get(id) == hour: del seen[id] */
static PyObject *id_forget(Table *seen, PyObject *const *args, Py_ssize_t nargs) {
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
        if (str_key((PyObject *)seen, PyList_GET_ITEM(ids, i), &hashes[i]) < 0) {
            PyMem_Free(hashes);
            return NULL;
        }
        prefetch_span(&seen->slots[(size_t)hashes[i] & seen->mask], sizeof(Slot));
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

static PyMethodDef key_methods[] = {
    {"prefetch", (PyCFunction)(void (*)(void))key_prefetch, METH_FASTCALL,
     "prefetch(keys, size=64): load their slots, then their stored keys and values"},
    {"get", (PyCFunction)(void (*)(void))id_get, METH_FASTCALL, "get(key, default=None)"},
    {"values", (PyCFunction)id_values, METH_NOARGS, "a list of the values"},
    {"items", (PyCFunction)id_items, METH_NOARGS, "a list of (key, value)"},
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
    .tp_basicsize = sizeof(Table),
    .tp_dealloc = (destructor)id_dealloc,
    .tp_as_mapping = &id_mapping,
    .tp_as_sequence = &id_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "IdTable(dict=None): id -> hour, for de-duplication (see _idtable.c)",
    .tp_methods = id_methods,
    .tp_iter = (getiterfunc)id_iter,
    .tp_new = id_new,
};

static PyTypeObject KeyTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flows._idtable.KeyTable",
    .tp_basicsize = sizeof(Table),
    .tp_dealloc = (destructor)id_dealloc,
    .tp_as_mapping = &id_mapping,
    .tp_as_sequence = &id_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "KeyTable(dict=None): str -> object; a missing key reads as None (see _idtable.c)",
    .tp_traverse = (traverseproc)key_traverse,
    .tp_clear = (inquiry)id_clear,
    .tp_methods = key_methods,
    .tp_iter = (getiterfunc)id_iter,
    .tp_new = id_new,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_idtable", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__idtable(void) {
    if (PyType_Ready(&IdTableType) < 0 || PyType_Ready(&KeyTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "IdTable", (PyObject *)&IdTableType) < 0 ||
        PyModule_AddObjectRef(m, "KeyTable", (PyObject *)&KeyTableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
