/* Tables keyed by str, for the runtime and the entities: generic mechanisms that
   know nothing of KPIs.

   - IdTable, the de-duplication table (flows/runtime/core.py, `Shard.process`):
     id -> the hour it was seen in. A dict of the ~330k ids of a day missed the
     CPU caches on most lookups, made at random; and holding each id's str for a
     day (with a list of them per hour, to forget them) kept the heap growing, so
     that every new object went to memory no cache held. It keeps each id's text
     in its own arena instead, and forgets an hour the horizon passed by ignoring
     its ids until their slots are reused or the table is rebuilt. It doubles in
     place (`id_grow`): no second table, no copy of the text, and only the new
     half is fresh memory, whose zeroing is dear in a virtual machine (6-8% of a
     day's default-mix replay on the test host).
   - KeyTable: str -> object, for records looked up by a key just decoded. A dict
     lookup on such a key chains three misses (index, entry, the stored key's
     text) before the value's own.

   Both keep the hash and what identifies the key in one slot (open addressing,
   linear probing, at most half full), so a lookup touches one cache line, and
   `prefetch(keys)` loads a batch's slots (a KeyTable's stored keys and values
   too), so the misses of a batch overlap instead of queueing. Both pickle as a
   plain dict; `flows.runtime.ids` has the same interfaces on a dict where this
   module was not compiled. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "_prefetch.h"

#define TS_BOUND (1LL << 62) /* every hour and ts the runtime keeps lies within +-TS_BOUND */
#define MIN_CAPACITY 8

/* An int within +-bound as a C long long; 0 (no error set) when it is not one. */
static int bounded(PyObject *value, long long bound, long long *out) {
    int overflow;
    if (!PyLong_CheckExact(value)) return 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow || v < -bound || v > bound) return 0;
    *out = v;
    return 1;
}

static int str_key(PyObject *t, PyObject *key, Py_hash_t *hash) {
    if (!PyUnicode_CheckExact(key)) {
        PyErr_Format(PyExc_TypeError, "%s keys are str, not %.100s", Py_TYPE(t)->tp_name,
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *hash = PyObject_Hash(key);
    return *hash == -1 ? -1 : 0;
}

/* The capacity for `used` keys: a power of two, at most half full. */
static size_t capacity_for(Py_ssize_t used) {
    size_t capacity = MIN_CAPACITY;
    while (capacity < (size_t)used * 2 + 2) capacity *= 2;
    return capacity;
}

/* Zeroed memory for slots. A day of ids takes tens of MB, looked up at random:
   from 2 MiB on it is mapped on its own, in huge pages where the kernel allows
   (madvise), so lookups miss the TLB far less. */
#define HUGE_FROM (2u << 20)

static void *advise_huge(void *slots, size_t size) {
#ifdef MADV_HUGEPAGE
    madvise(slots, size, MADV_HUGEPAGE); /* a hint: without it, ordinary pages */
#endif
    return slots;
}

static void *slots_alloc(size_t size) {
    if (size < HUGE_FROM) return PyMem_Calloc(1, size);
    void *slots = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return slots == MAP_FAILED ? NULL : advise_huge(slots, size);
}

static void slots_free(void *slots, size_t size) {
    if (slots == NULL) return;
    if (size < HUGE_FROM)
        PyMem_Free(slots);
    else
        munmap(slots, size);
}

/* The slots at `slots` (`size` bytes) in twice the room, the first half kept and
   the second zeroed; NULL (the old slots intact) when there is no memory. A
   mapping is grown by the kernel (mremap), so only the new half is fresh memory,
   which the kernel must zero, and no copy is made. */
static void *slots_grow(void *slots, size_t size) {
    void *grown = NULL;
    if (size >= HUGE_FROM) {
#ifdef MREMAP_MAYMOVE
        grown = mremap(slots, size, 2 * size, MREMAP_MAYMOVE);
        return grown == MAP_FAILED ? NULL : advise_huge(grown, 2 * size);
#endif
    } else if (2 * size < HUGE_FROM) {
        grown = PyMem_Realloc(slots, 2 * size);
        if (grown != NULL) memset((char *)grown + size, 0, size);
        return grown;
    }
    grown = slots_alloc(2 * size); /* from the heap to a mapping of its own */
    if (grown == NULL) return NULL;
    memcpy(grown, slots, size);
    slots_free(slots, size);
    return grown;
}

/* Hash each str in the list `keys` (str caches it) and load its home slot:
   the misses of a batch's lookups then overlap instead of queueing. */
static int prefetch_homes(PyObject *keys, const char *slots, size_t mask, size_t slot_size) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *key = PyList_GET_ITEM(keys, i);
        if (!PyUnicode_CheckExact(key)) continue;
        Py_hash_t hash = PyObject_Hash(key);
        if (hash == -1) return -1;
        prefetch_span(slots + ((size_t)hash & mask) * slot_size, (ptrdiff_t)slot_size);
    }
    return 0;
}

/* ---- KeyTable: str -> object, the key and value held */

typedef struct {
    Py_hash_t hash;
    PyObject *key;   /* owned; NULL: an empty slot */
    PyObject *value; /* owned */
} Slot;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t mask; /* capacity - 1; the capacity is a power of two */
    Py_ssize_t used;
} Table;

static PyTypeObject IdTableType, KeyTableType;

/* Equal text of two exact strs (as a dict compares keys: CPython keeps a str in
   the narrowest kind its text needs, so equal texts have equal kinds). */
static inline int same_text(PyObject *a, PyObject *b) {
    Py_ssize_t length = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return length == PyUnicode_GET_LENGTH(b) && kind == (int)PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)length * kind) == 0;
}

/* The slot holding key, or the empty slot where it goes; *found says which. */
static size_t key_find(Table *t, PyObject *key, Py_hash_t hash, int *found) {
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

static int key_resize(Table *t, size_t capacity) {
    Slot *old = t->slots, *slots = slots_alloc(capacity * sizeof(Slot));
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
    slots_free(old, old_capacity * sizeof(Slot));
    return 0;
}

/* A KeyTable is tracked by the garbage collector only once it holds a value that
   can be in a cycle (as a dict is): a table of acyclic records is never scanned. */
static void track_for(Table *t, PyObject *value) {
    if (PyObject_IS_GC(value) && !PyObject_GC_IsTracked((PyObject *)t) &&
        (!PyTuple_CheckExact(value) || PyObject_GC_IsTracked(value)))
        PyObject_GC_Track((PyObject *)t);
}

/* table[key] = value; then the table grows if it is more than half full. */
static int key_set(Table *t, PyObject *key, PyObject *value) {
    Py_hash_t hash;
    int found;
    if (str_key((PyObject *)t, key, &hash) < 0) return -1;
    size_t i = key_find(t, key, hash, &found);
    track_for(t, value);
    if (found) {
        PyObject *old = t->slots[i].value;
        t->slots[i].value = Py_NewRef(value);
        Py_DECREF(old); /* last: its release may run code */
        return 0;
    }
    t->slots[i] = (Slot){hash, Py_NewRef(key), Py_NewRef(value)};
    t->used++;
    return (size_t)t->used * 2 > t->mask + 1 ? key_resize(t, (t->mask + 1) * 2) : 0;
}

/* Empty slot i, moving later slots of its probe run back (no tombstones). */
static void key_delete_at(Table *t, size_t i) {
    PyObject *key = t->slots[i].key, *value = t->slots[i].value;
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
    Py_DECREF(value); /* last: the table is whole again when its release runs code */
}

/* Every key and value let go, the slots freed (the collector's clear too). */
static int key_clear(Table *t) {
    Slot *slots = t->slots;
    size_t capacity = t->mask + 1;
    t->slots = NULL;
    t->mask = 0;
    t->used = 0;
    if (slots == NULL) return 0;
    for (size_t i = 0; i < capacity; i++) {
        if (slots[i].key == NULL) continue;
        Py_DECREF(slots[i].key);
        Py_DECREF(slots[i].value);
    }
    slots_free(slots, capacity * sizeof(Slot));
    return 0;
}

static void key_dealloc(Table *t) {
    PyObject_GC_UnTrack(t);
    key_clear(t);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int key_traverse(Table *t, visitproc visit, void *arg) {
    for (size_t i = 0; t->slots != NULL && i <= t->mask; i++)
        if (t->slots[i].key != NULL) Py_VISIT(t->slots[i].value);
    return 0;
}

static Py_ssize_t key_length(Table *t) { return t->used; }

/* The slot of key, or -1: with an error set when key is not a str. */
static Py_ssize_t key_slot_of(Table *t, PyObject *key) {
    Py_hash_t hash;
    int found;
    if (t->slots == NULL) return -1; /* cleared by the collector */
    if (str_key((PyObject *)t, key, &hash) < 0) return -1;
    size_t i = key_find(t, key, hash, &found);
    return found ? (Py_ssize_t)i : -1;
}

static int key_contains(Table *t, PyObject *key) {
    Py_ssize_t i = key_slot_of(t, key);
    return i >= 0 ? 1 : PyErr_Occurred() ? -1 : 0;
}

/* table[key]: None when missing (the owner asks for records it may not have: one
   call, no exception to raise). */
static PyObject *key_getitem(Table *t, PyObject *key) {
    Py_ssize_t i = key_slot_of(t, key);
    if (i >= 0) return Py_NewRef(t->slots[i].value);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static int key_setitem(Table *t, PyObject *key, PyObject *value) {
    if (value != NULL) {
        if (t->slots == NULL && key_resize(t, MIN_CAPACITY) < 0) return -1;
        return key_set(t, key, value);
    }
    Py_ssize_t i = key_slot_of(t, key);
    if (i < 0) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
        return -1;
    }
    key_delete_at(t, (size_t)i);
    return 0;
}

/* get(key, default=None) of either table: its arguments checked, then the value
   found (a new reference) or the default. */
static int get_arguments(Py_ssize_t nargs) {
    if (nargs >= 1 && nargs <= 2) return 0;
    PyErr_SetString(PyExc_TypeError, "get(key, default=None)");
    return -1;
}

static PyObject *found_or_default(PyObject *found, PyObject *const *args, Py_ssize_t nargs) {
    if (found != NULL || PyErr_Occurred()) return found;
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *key_get(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    if (get_arguments(nargs) < 0) return NULL;
    Py_ssize_t i = key_slot_of(t, args[0]);
    return found_or_default(i >= 0 ? Py_NewRef(t->slots[i].value) : NULL, args, nargs);
}

/* The keys, the values, (key, value) pairs or a dict of them: copies, so the
   table may change while they are walked. */
enum view { KEYS, VALUES, ITEMS, DICT };

/* A new list or dict to fill with a view, and how to add an entry to it. */
static PyObject *view_new(enum view view) { return view == DICT ? PyDict_New() : PyList_New(0); }

static int view_add(PyObject *result, enum view view, PyObject *key, PyObject *value) {
    if (view == DICT) return PyDict_SetItem(result, key, value);
    PyObject *entry = view == KEYS     ? Py_NewRef(key)
                      : view == VALUES ? Py_NewRef(value)
                                       : PyTuple_Pack(2, key, value);
    int failed = entry == NULL || PyList_Append(result, entry) < 0;
    Py_XDECREF(entry);
    return failed ? -1 : 0;
}

static PyObject *key_view(Table *t, enum view view) {
    PyObject *result = view_new(view);
    for (size_t i = 0; result != NULL && t->slots != NULL && i <= t->mask; i++) {
        if (t->slots[i].key == NULL) continue;
        if (view_add(result, view, t->slots[i].key, t->slots[i].value) < 0) Py_CLEAR(result);
    }
    return result;
}

static PyObject *key_to_dict(Table *t, PyObject *unused) { return key_view(t, DICT); }
static PyObject *key_values(Table *t, PyObject *unused) { return key_view(t, VALUES); }
static PyObject *key_items(Table *t, PyObject *unused) { return key_view(t, ITEMS); }

/* An iterator over a list of the keys (a copy). */
static PyObject *iter_of(PyObject *keys) {
    PyObject *iterator = keys == NULL ? NULL : PyObject_GetIter(keys);
    Py_XDECREF(keys);
    return iterator;
}

static PyObject *key_iter(Table *t) { return iter_of(key_view(t, KEYS)); }

static PyObject *key_sizeof(Table *t, PyObject *unused) {
    size_t slots = t->slots == NULL ? 0 : t->mask + 1;
    return PyLong_FromSize_t(Py_TYPE(t)->tp_basicsize + slots * sizeof(Slot));
}

/* Pickled as a plain dict (both tables). */
static PyObject *reduce_as_dict(PyObject *dict) {
    return dict == NULL ? NULL : Py_BuildValue("(O(N))", (PyObject *)&PyDict_Type, dict);
}

static PyObject *key_reduce(Table *t, PyObject *unused) { return reduce_as_dict(key_to_dict(t, NULL)); }

/* table.prefetch(keys[, size]): hash each key (str caches it) and load its slot;
   then, those slots loaded meanwhile, load the stored key (read to confirm a
   match) and the first `size` bytes (64 by default) of the value whose hash
   matches. The misses of a batch then overlap instead of queueing when each key
   is looked up. Anything but a str is skipped. */
static PyObject *key_prefetch(Table *t, PyObject *const *args, Py_ssize_t nargs) {
    Py_ssize_t size = 64;
    if (nargs < 1 || nargs > 2 || !PyList_Check(args[0]) ||
        (nargs == 2 && (size = PyLong_AsSsize_t(args[1])) < 0)) {
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError, "prefetch(keys: list, size: int = 64)");
        }
        return NULL;
    }
    PyObject *keys = args[0];
    if (t->slots == NULL) Py_RETURN_NONE;
    if (prefetch_homes(keys, (const char *)t->slots, t->mask, sizeof(Slot)) < 0) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(keys); i++) {
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

/* ---- IdTable: id -> hour, the ids' text in the table's arena; ids seen in an
   hour before `since` (the latest remember() or expire() was given: W never goes
   back, so neither does it) are forgotten */

typedef struct { /* 16 bytes, four to a cache line: a day's ids are ~8 MB of slots */
    uint32_t hash;   /* the low half of the id's hash: its home, and a first test */
    int32_t hour;    /* an hour of a ts within +-TS_BOUND fits: +-1.3e9 */
    uint32_t offset; /* of its text in the arena */
    uint32_t shape;  /* bytes of text << 3 | the str's kind (1, 2 or 4); 0: an empty slot */
} IdSlot;
_Static_assert(sizeof(IdSlot) == 16, "an IdTable slot is a quarter of a cache line");
#define HOUR_BOUND INT32_MAX /* the hours a slot holds */

typedef struct {
    long long hour;
    Py_ssize_t count;
} HourCount;

typedef struct {
    PyObject_HEAD
    IdSlot *slots;
    size_t mask;
    Py_ssize_t occupied; /* slots in use, forgotten ids' included */
    char *text;          /* the arena: each id's text, forgotten ones' until a rebuild */
    size_t text_used, text_size, garbage;
    long long since;
    HourCount *hours; /* ids remembered per hour >= since, by hour */
    Py_ssize_t hour_count, hours_size;
    Py_ssize_t live; /* ids not forgotten */
} Ids;

#define MAX_TEXT (UINT32_MAX >> 3) /* bytes of one id's text */
#define NONE ((size_t)-1)
#define TOO_MUCH_TEXT "IdTable: the ids' text exceeds 4 GiB" /* offsets are 32-bit */

/* The text of a str key: its data, and its shape as a slot keeps it. */
static int id_text(Ids *t, PyObject *key, Py_hash_t *hash, const char **data, uint32_t *shape) {
    if (str_key((PyObject *)t, key, hash) < 0) return -1;
    size_t size = (size_t)PyUnicode_GET_LENGTH(key) * PyUnicode_KIND(key);
    if (size > MAX_TEXT) {
        PyErr_SetString(PyExc_ValueError, "IdTable ids are at most 512 MiB");
        return -1;
    }
    *data = PyUnicode_DATA(key);
    *shape = (uint32_t)size << 3 | (uint32_t)PyUnicode_KIND(key);
    return 0;
}

/* The slot holding the id (forgotten or not), or NONE; `*empty` is the empty
   slot ending its probe run and `*reusable` the first forgotten one on it (or
   NONE), where a new id may go. */
static size_t id_find(Ids *t, Py_hash_t hash, const char *data, uint32_t shape, size_t *empty,
                      size_t *reusable) {
    *reusable = NONE;
    for (size_t i = (size_t)(uint32_t)hash & t->mask;; i = (i + 1) & t->mask) {
        IdSlot *slot = &t->slots[i];
        if (slot->shape == 0) {
            *empty = i;
            return NONE;
        }
        if (slot->hash == (uint32_t)hash && slot->shape == shape &&
            memcmp(t->text + slot->offset, data, shape >> 3) == 0)
            return i;
        if (*reusable == NONE && slot->hour < t->since) *reusable = i;
    }
}

/* One more id remembered in `hour` (>= since). */
static int count_hour(Ids *t, long long hour) {
    Py_ssize_t low = 0, high = t->hour_count;
    while (low < high) { /* the first entry with an hour >= `hour` */
        Py_ssize_t middle = (low + high) / 2;
        if (t->hours[middle].hour < hour)
            low = middle + 1;
        else
            high = middle;
    }
    if (low == t->hour_count || t->hours[low].hour != hour) {
        if (t->hour_count == t->hours_size) {
            Py_ssize_t size = t->hours_size ? t->hours_size * 2 : 64;
            HourCount *grown = PyMem_Realloc(t->hours, (size_t)size * sizeof(HourCount));
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            t->hours = grown;
            t->hours_size = size;
        }
        memmove(&t->hours[low + 1], &t->hours[low], (size_t)(t->hour_count - low) * sizeof(HourCount));
        t->hours[low] = (HourCount){hour, 0};
        t->hour_count++;
    }
    t->hours[low].count++;
    t->live++;
    return 0;
}

/* The horizon moved on: the ids of hours before `since` are forgotten. */
static void forget_before(Ids *t, long long since) {
    if (since <= t->since) return;
    t->since = since;
    Py_ssize_t gone = 0;
    while (gone < t->hour_count && t->hours[gone].hour < since) t->live -= t->hours[gone++].count;
    memmove(t->hours, &t->hours[gone], (size_t)(t->hour_count - gone) * sizeof(HourCount));
    t->hour_count -= gone;
}

/* Room for `more` bytes of text. */
static int text_reserve(Ids *t, size_t more) {
    if (t->text_used + more <= t->text_size) return 0;
    size_t size = t->text_size ? t->text_size : 4096;
    while (size < t->text_used + more) size *= 2;
    char *grown = PyMem_Realloc(t->text, size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->text = grown;
    t->text_size = size;
    return 0;
}

/* The first empty slot from `home` on, round past the end. */
static size_t empty_from(const IdSlot *slots, size_t home, size_t mask) {
    while (slots[home].shape != 0) home = (home + 1) & mask;
    return home;
}

/* An empty slot of a table (NONE: none). No probe run crosses it. */
static size_t empty_slot(const IdSlot *slots, size_t capacity) {
    for (size_t i = 0; i < capacity; i++)
        if (slots[i].shape == 0) return i;
    return NONE;
}

/* Slots for `capacity` and an arena of the ids not forgotten only. At the same
   capacity (the steady state: new ids take the forgotten ones' room) the slots
   are rebuilt in place, with no fresh memory to fault in and zero and no second
   table held meanwhile: walked from just past an empty slot (no probe run
   crosses it), each id is taken out and put back at the first empty slot from
   its home, which is never after its own. Every slot before it on the walk is
   final by then, so its probe run stays unbroken. */
static int id_rebuild(Ids *t, size_t capacity) {
    IdSlot *old = t->slots;
    size_t old_capacity = old == NULL ? 0 : t->mask + 1, size = 0;
    size_t start = capacity == old_capacity ? empty_slot(old, old_capacity) : NONE;
    IdSlot *slots = start != NONE ? old : slots_alloc(capacity * sizeof(IdSlot));
    for (size_t i = 0; i < old_capacity; i++)
        if (old[i].shape && old[i].hour >= t->since) size += old[i].shape >> 3;
    size_t room = size * 2 + 4096; /* for the ids to come, as the slots have */
    char *text = PyMem_Malloc(room);
    if (slots == NULL || text == NULL || size > UINT32_MAX) {
        if (slots != old) slots_free(slots, capacity * sizeof(IdSlot));
        PyMem_Free(text);
        if (size > UINT32_MAX)
            PyErr_SetString(PyExc_MemoryError, TOO_MUCH_TEXT);
        else
            PyErr_NoMemory();
        return -1;
    }
    size_t used = 0, mask = capacity - 1;
    Py_ssize_t kept = 0;
    for (size_t step = 0; step < old_capacity; step++) {
        size_t i = start != NONE ? (start + 1 + step) & mask : step;
        IdSlot slot = old[i];
        if (slot.shape == 0) continue;
        old[i].shape = 0; /* taken out (in place: its slot is empty till it comes back) */
        if (slot.hour < t->since) continue;
        size_t j = empty_from(slots, slot.hash & mask, mask);
        slots[j] = slot;
        slots[j].offset = (uint32_t)used;
        memcpy(text + used, t->text + slot.offset, slot.shape >> 3);
        used += slot.shape >> 3;
        kept++;
    }
    if (slots != old) slots_free(old, old_capacity * sizeof(IdSlot));
    PyMem_Free(t->text);
    t->slots = slots;
    t->mask = mask;
    t->occupied = kept;
    t->text = text;
    t->text_used = used;
    t->text_size = room;
    t->garbage = 0;
    return 0;
}

/* Whether growing keeps the slot's id: one forgotten is dropped, its text garbage. */
static int grown_keeps(Ids *t, IdSlot slot) {
    if (slot.hour >= t->since) return 1;
    t->garbage += slot.shape >> 3;
    return 0;
}

/* The table at twice its capacity, in place (slots_grow): ids forgotten are
   dropped, their text left as garbage. An id's new home is its old one, or that
   plus the old capacity. First the ids on the run that starts at slot 0 (it may
   have wrapped around the end) are set aside, so that every other id lies at or
   after its home. Then, from the top down, each id whose home moved up is put at
   the first empty slot from that home: only ids already moved lie there (one
   whose run would reach past the end is set aside too). Then, from the bottom
   up, each id that stays is put back at the first empty slot from its home,
   never after its own: every slot from its home to it is final by then. Last,
   the ids set aside are put in. */
static int id_grow(Ids *t) {
    size_t capacity = t->mask + 1, mask = 2 * capacity - 1, first_empty = empty_slot(t->slots, capacity);
    if (first_empty == NONE) return id_rebuild(t, 2 * capacity); /* never: at most half full */
    /* Room to set every id aside; only the pages written are ever touched. */
    IdSlot *aside = PyMem_Malloc(capacity * sizeof(IdSlot));
    IdSlot *slots = aside == NULL ? NULL : slots_grow(t->slots, capacity * sizeof(IdSlot));
    if (slots == NULL) {
        PyMem_Free(aside);
        PyErr_NoMemory();
        return -1;
    }
    t->slots = slots;
    t->mask = mask;
    size_t set_aside = 0;
    Py_ssize_t kept = 0;
    for (size_t i = 0; i < first_empty; i++) {
        aside[set_aside++] = slots[i];
        slots[i].shape = 0;
    }
    for (size_t i = capacity; i-- > first_empty;) {
        IdSlot slot = slots[i];
        if (slot.shape == 0 || !(slot.hash & capacity)) continue;
        slots[i].shape = 0;
        if (!grown_keeps(t, slot)) continue;
        size_t home = slot.hash & mask, j = empty_from(slots, home, mask);
        if (j < home) /* round past the end: onto ids not moved yet */
            aside[set_aside++] = slot;
        else
            slots[j] = slot, kept++;
    }
    for (size_t i = first_empty; i < capacity; i++) {
        IdSlot slot = slots[i];
        if (slot.shape == 0) continue;
        slots[i].shape = 0;
        if (grown_keeps(t, slot)) slots[empty_from(slots, slot.hash & mask, mask)] = slot, kept++;
    }
    for (size_t k = 0; k < set_aside; k++) {
        IdSlot slot = aside[k];
        if (grown_keeps(t, slot)) slots[empty_from(slots, slot.hash & mask, mask)] = slot, kept++;
    }
    PyMem_Free(aside);
    t->occupied = kept;
    return 0;
}

/* A new id, remembered in `hour` (>= since) in the slot id_find gave: a forgotten
   one's when there is one on its probe run, else the empty one. The table is
   rebuilt when more than half full, or when forgotten text is most of its arena. */
static int id_add(Ids *t, Py_hash_t hash, const char *data, uint32_t shape, long long hour,
                  size_t empty, size_t reusable) {
    size_t size = shape >> 3;
    if (t->text_used + size > UINT32_MAX) { /* offsets are 32-bit: make room first */
        if (id_rebuild(t, t->mask + 1) < 0) return -1;
        id_find(t, hash, data, shape, &empty, &reusable); /* none forgotten now */
        if (t->text_used + size > UINT32_MAX) {
            PyErr_SetString(PyExc_MemoryError, TOO_MUCH_TEXT);
            return -1;
        }
    }
    if (text_reserve(t, size) < 0 || count_hour(t, hour) < 0) return -1;
    size_t at = reusable;
    if (at == NONE) {
        at = empty;
        t->occupied++;
    } else {
        t->garbage += t->slots[at].shape >> 3;
    }
    t->slots[at] = (IdSlot){(uint32_t)hash, (int32_t)hour, (uint32_t)t->text_used, shape};
    memcpy(t->text + t->text_used, data, size);
    t->text_used += size;
    if ((size_t)t->occupied * 2 > t->mask + 1) { /* rebuilt at most 3/8 full */
        size_t capacity = capacity_for(t->live);
        if ((size_t)t->live * 8 > capacity * 3) capacity *= 2;
        return capacity == 2 * (t->mask + 1) ? id_grow(t) : id_rebuild(t, capacity);
    }
    if (t->garbage > (1u << 20) && t->garbage * 2 > t->text_used)
        return id_rebuild(t, t->mask + 1);
    return 0;
}

/* seen.remember(id, hour, since): True when id was seen in an hour >= since (a
   duplicate); otherwise it is remembered as seen in `hour` (unless that hour is
   before `since`: it would be forgotten at once) and the answer is False. */
static PyObject *id_remember(Ids *t, PyObject *const *args, Py_ssize_t nargs) {
    long long hour, since;
    Py_hash_t hash;
    const char *data;
    uint32_t shape;
    if (nargs != 3 || !bounded(args[1], HOUR_BOUND, &hour) || !bounded(args[2], TS_BOUND, &since)) {
        PyErr_SetString(PyExc_TypeError, "remember(id: str, hour: int, since: int)");
        return NULL;
    }
    if (id_text(t, args[0], &hash, &data, &shape) < 0) return NULL;
    forget_before(t, since);
    size_t empty = NONE, reusable, i = id_find(t, hash, data, shape, &empty, &reusable);
    if (i != NONE && t->slots[i].hour >= t->since) Py_RETURN_TRUE;
    if (hour < t->since) Py_RETURN_FALSE;
    if (i != NONE) { /* forgotten: remembered anew in its slot */
        if (count_hour(t, hour) < 0) return NULL;
        t->slots[i].hour = (int32_t)hour;
        Py_RETURN_FALSE;
    }
    if (id_add(t, hash, data, shape, hour, empty, reusable) < 0) return NULL;
    Py_RETURN_FALSE;
}

/* seen.expire(since): forget the ids seen in an hour before `since` (the gauge of
   ids held follows W while no event comes). */
static PyObject *id_expire(Ids *t, PyObject *value) {
    long long since;
    if (!bounded(value, TS_BOUND, &since)) {
        PyErr_SetString(PyExc_TypeError, "expire(since: int)");
        return NULL;
    }
    forget_before(t, since);
    Py_RETURN_NONE;
}

/* The slot of an id not forgotten, or -1: with an error set when it is not a str. */
static Py_ssize_t id_slot_of(Ids *t, PyObject *key) {
    Py_hash_t hash;
    const char *data;
    uint32_t shape;
    if (id_text(t, key, &hash, &data, &shape) < 0) return -1;
    size_t empty, reusable, i = id_find(t, hash, data, shape, &empty, &reusable);
    return i != NONE && t->slots[i].hour >= t->since ? (Py_ssize_t)i : -1;
}

static int id_contains(Ids *t, PyObject *key) {
    Py_ssize_t i = id_slot_of(t, key);
    return i >= 0 ? 1 : PyErr_Occurred() ? -1 : 0;
}

static PyObject *id_getitem(Ids *t, PyObject *key) {
    Py_ssize_t i = id_slot_of(t, key);
    if (i >= 0) return PyLong_FromLongLong(t->slots[i].hour);
    if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

static PyObject *id_get(Ids *t, PyObject *const *args, Py_ssize_t nargs) {
    if (get_arguments(nargs) < 0) return NULL;
    Py_ssize_t i = id_slot_of(t, args[0]);
    return found_or_default(i >= 0 ? PyLong_FromLongLong(t->slots[i].hour) : NULL, args, nargs);
}

static Py_ssize_t id_length(Ids *t) { return t->live; }

/* The ids not forgotten (a list) or {id: hour} (a dict): copies. */
static PyObject *id_view(Ids *t, enum view view) {
    PyObject *result = view_new(view);
    for (size_t i = 0; result != NULL && i <= t->mask; i++) {
        IdSlot *slot = &t->slots[i];
        if (slot->shape == 0 || slot->hour < t->since) continue;
        int kind = (int)(slot->shape & 7);
        PyObject *key = PyUnicode_FromKindAndData(kind, t->text + slot->offset,
                                                  (Py_ssize_t)(slot->shape >> 3) / kind);
        PyObject *hour = key == NULL ? NULL : PyLong_FromLongLong(slot->hour);
        if (hour == NULL || view_add(result, view, key, hour) < 0) Py_CLEAR(result);
        Py_XDECREF(key);
        Py_XDECREF(hour);
    }
    return result;
}

static PyObject *id_to_dict(Ids *t, PyObject *unused) { return id_view(t, DICT); }
static PyObject *id_iter(Ids *t) { return iter_of(id_view(t, KEYS)); }
static PyObject *id_reduce(Ids *t, PyObject *unused) { return reduce_as_dict(id_to_dict(t, NULL)); }

static PyObject *id_sizeof(Ids *t, PyObject *unused) {
    return PyLong_FromSize_t(Py_TYPE(t)->tp_basicsize + (t->mask + 1) * sizeof(IdSlot) +
                             t->text_size + (size_t)t->hours_size * sizeof(HourCount));
}

/* seen.prefetch(ids): hash each id (str caches it) and load its slot: the misses
   of a batch then overlap instead of queueing. (Most ids are new, and a new id's
   lookup reads nothing more.) Anything but a str is skipped. */
static PyObject *id_prefetch(Ids *t, PyObject *keys) {
    if (!PyList_Check(keys)) {
        PyErr_SetString(PyExc_TypeError, "prefetch(ids: list)");
        return NULL;
    }
    if (prefetch_homes(keys, (const char *)t->slots, t->mask, sizeof(IdSlot)) < 0) return NULL;
    Py_RETURN_NONE;
}

static void id_dealloc(Ids *t) {
    slots_free(t->slots, (t->mask + 1) * sizeof(IdSlot));
    PyMem_Free(t->text);
    PyMem_Free(t->hours);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

/* The dict a table is made from (NULL: none); -1 with an error for anything else. */
static int initial_dict(PyTypeObject *type, PyObject *args, PyObject *kwargs, PyObject **initial) {
    *initial = NULL;
    if (!PyArg_ParseTuple(args, "|O!", &PyDict_Type, initial)) return -1;
    if (kwargs == NULL || PyDict_GET_SIZE(kwargs) == 0) return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes no keyword arguments", type->tp_name);
    return -1;
}

/* IdTable({id: hour}): a snapshot's ids, none forgotten yet. */
static PyObject *id_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *initial;
    if (initial_dict(type, args, kwargs, &initial) < 0) return NULL;
    Ids *t = (Ids *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    t->since = LLONG_MIN;
    Py_ssize_t count = initial == NULL ? 0 : PyDict_GET_SIZE(initial);
    if (id_rebuild(t, capacity_for(count)) < 0) goto error;
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (initial != NULL && PyDict_Next(initial, &position, &key, &value)) {
        long long hour;
        Py_hash_t hash;
        const char *data;
        uint32_t shape;
        if (!bounded(value, HOUR_BOUND, &hour)) {
            PyErr_SetString(PyExc_TypeError, "IdTable values are hours (int)");
            goto error;
        }
        if (id_text(t, key, &hash, &data, &shape) < 0) goto error;
        size_t empty = NONE, reusable;
        if (id_find(t, hash, data, shape, &empty, &reusable) == NONE &&
            id_add(t, hash, data, shape, hour, empty, NONE) < 0)
            goto error;
    }
    return (PyObject *)t;
error:
    Py_DECREF(t);
    return NULL;
}

/* ---- the types */

static PyObject *key_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *initial;
    if (initial_dict(type, args, kwargs, &initial) < 0) return NULL;
    Table *t = (Table *)type->tp_alloc(type, 0);
    if (t == NULL) return NULL;
    PyObject_GC_UnTrack(t); /* tracked once it must be */
    if (key_resize(t, capacity_for(initial == NULL ? 0 : PyDict_GET_SIZE(initial))) < 0)
        goto error;
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (initial != NULL && PyDict_Next(initial, &position, &key, &value))
        if (key_set(t, key, value) < 0) goto error;
    return (PyObject *)t;
error:
    Py_DECREF(t);
    return NULL;
}

static PyMethodDef id_methods[] = {
    {"remember", (PyCFunction)(void (*)(void))id_remember, METH_FASTCALL,
     "remember(id, hour, since) -> True for a duplicate (seen in an hour >= since)"},
    {"expire", (PyCFunction)id_expire, METH_O, "expire(since): forget ids seen before hour since"},
    {"prefetch", (PyCFunction)id_prefetch, METH_O, "prefetch(ids): load their slots"},
    {"get", (PyCFunction)(void (*)(void))id_get, METH_FASTCALL, "get(id, default=None)"},
    {"to_dict", (PyCFunction)id_to_dict, METH_NOARGS, "the ids not forgotten, as a dict"},
    {"__sizeof__", (PyCFunction)id_sizeof, METH_NOARGS, "bytes, slots and text included"},
    {"__reduce__", (PyCFunction)id_reduce, METH_NOARGS, "pickles as a plain dict"},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef key_methods[] = {
    {"prefetch", (PyCFunction)(void (*)(void))key_prefetch, METH_FASTCALL,
     "prefetch(keys, size=64): load their slots, then their stored keys and values"},
    {"get", (PyCFunction)(void (*)(void))key_get, METH_FASTCALL, "get(key, default=None)"},
    {"values", (PyCFunction)key_values, METH_NOARGS, "a list of the values"},
    {"items", (PyCFunction)key_items, METH_NOARGS, "a list of (key, value)"},
    {"to_dict", (PyCFunction)key_to_dict, METH_NOARGS, "the contents as a dict"},
    {"__sizeof__", (PyCFunction)key_sizeof, METH_NOARGS, "bytes, slots included"},
    {"__reduce__", (PyCFunction)key_reduce, METH_NOARGS, "pickles as a plain dict"},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods id_mapping = {(lenfunc)id_length, (binaryfunc)id_getitem, NULL};
static PySequenceMethods id_sequence = {.sq_contains = (objobjproc)id_contains};
static PyMappingMethods key_mapping = {(lenfunc)key_length, (binaryfunc)key_getitem,
                                       (objobjargproc)key_setitem};
static PySequenceMethods key_sequence = {.sq_contains = (objobjproc)key_contains};

static PyTypeObject IdTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "flows._idtable.IdTable",
    .tp_basicsize = sizeof(Ids),
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
    .tp_dealloc = (destructor)key_dealloc,
    .tp_as_mapping = &key_mapping,
    .tp_as_sequence = &key_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "KeyTable(dict=None): str -> object; a missing key reads as None (see _idtable.c)",
    .tp_traverse = (traverseproc)key_traverse,
    .tp_clear = (inquiry)key_clear,
    .tp_methods = key_methods,
    .tp_iter = (getiterfunc)key_iter,
    .tp_new = key_new,
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
