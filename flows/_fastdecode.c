/* The common case of decoding a batch, compiled: why and what in flows/decode.py
   (`decode_all`). For each payload: ASCII bytes within the size limit, decoded by
   the msgspec decoder given, with every time field an RFC 3339 text of the form
   YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+HH:MM|-HH:MM) or integer epoch milliseconds in range.
   Anything else is left to the Python path (returned as None, its position in
   `refused`), which owns every verdict about bad input. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

#define MAX_EPOCH_MS 253402214399999LL /* 9999-12-30T23:59:59.999Z, as in timeutil */
/* Event times lie in [0001-01-02, 9999-12-31) UTC (timeutil's FIRST_EVENT_US, END_EVENT_US) */
#define FIRST_EVENT_US (-62135510400000000LL)
#define END_EVENT_US 253402214400000000LL
#define US_PER_SECOND 1000000LL

static int is_ascii(const char *bytes, Py_ssize_t size) {
    uint64_t any = 0; /* every byte ORed together: one test at the end, no branch per word */
    Py_ssize_t i = 0;
    for (; i + 32 <= size; i += 32) {
        uint64_t words[4];
        memcpy(words, bytes + i, 32);
        any |= words[0] | words[1] | words[2] | words[3];
    }
    for (; i + 8 <= size; i += 8) {
        uint64_t word;
        memcpy(&word, bytes + i, 8);
        any |= word;
    }
    for (; i < size; i++) any |= (unsigned char)bytes[i];
    return (any & 0x8080808080808080ULL) == 0;
}

/* Parse `count` decimal digits; 0 when one is not a digit. */
static int digits(const char *text, int count, int *out) {
    int value = 0;
    for (int i = 0; i < count; i++) {
        if (text[i] < '0' || text[i] > '9') return 0;
        value = value * 10 + (text[i] - '0');
    }
    *out = value;
    return 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static long long days_from_civil(long long year, int month, int day) {
    year -= month <= 2;
    long long era = (year >= 0 ? year : year - 399) / 400;
    long long year_of_era = year - era * 400;
    long long day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    long long day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

/* RFC 3339 text to epoch microseconds; 0 when it has another form, is not a date or
   lies outside the event times. */
static int rfc3339_us(const char *s, Py_ssize_t n, long long *out) {
    static const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second, fraction = 0, offset = 0;
    /* The zone: Z, or +HH:MM / -HH:MM with HH 00-23 and MM 00-59. */
    if (n >= 20 && s[n - 1] == 'Z') {
        n -= 1;
    } else {
        int offset_hours, offset_minutes;
        if (n < 25 || (s[n - 6] != '+' && s[n - 6] != '-') || !digits(s + n - 5, 2, &offset_hours) ||
            s[n - 3] != ':' || !digits(s + n - 2, 2, &offset_minutes) || offset_hours > 23 ||
            offset_minutes > 59)
            return 0;
        offset = (s[n - 6] == '-' ? -1 : 1) * (offset_hours * 3600 + offset_minutes * 60);
        n -= 6;
    }
    /* What is left: YYYY-MM-DDTHH:MM:SS[.f{1,6}] */
    if (n < 19 || n > 26 || n == 20) return 0;
    if (!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day) || s[10] != 'T' || !digits(s + 11, 2, &hour) || s[13] != ':' ||
        !digits(s + 14, 2, &minute) || s[16] != ':' || !digits(s + 17, 2, &second))
        return 0;
    if (n > 19) {
        int count = (int)n - 20;
        if (s[19] != '.' || !digits(s + 20, count, &fraction)) return 0;
        for (; count < 6; count++) fraction *= 10;
    }
    if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59)
        return 0;
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] + (month == 2 && leap)) return 0;
    long long seconds =
        days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset;
    *out = seconds * US_PER_SECOND + fraction;
    return FIRST_EVENT_US <= *out && *out < END_EVENT_US;
}

/* An event time to microseconds; 0 leaves the value to the Python parser. */
static int time_us(PyObject *value, long long *out) {
    if (PyUnicode_CheckExact(value)) {
        if (!PyUnicode_IS_COMPACT_ASCII(value)) return 0;
        return rfc3339_us((const char *)PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), out);
    }
    if (PyLong_CheckExact(value)) { /* exact: never a bool */
        int overflow;
        long long ms = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || ms < 0 || ms > MAX_EPOCH_MS) return 0;
        *out = ms * 1000;
        return 1;
    }
    return 0;
}

/* The time fields of one event class: their names (from `time_fields`) and, where
   the class keeps a field in a member slot, its offset (-1: through getattr). A
   batch finds them once per class, not a dict lookup and a walk of the type for
   every event. */
#define MAX_TIME_FIELDS 8
#define MAX_CLASSES 32
typedef struct {
    PyTypeObject *type;
    PyObject *names; /* borrowed from time_fields, which outlives the batch */
    Py_ssize_t offsets[MAX_TIME_FIELDS];
} TimeFields;

typedef struct {
    TimeFields classes[MAX_CLASSES];
    int count;
} Classes;

/* The offset of a member slot holding an object, or -1. Reading and writing it is
   what msgspec's attribute access does for an int, without the attribute
   machinery on every event: msgspec's setattr adds only GC tracking, for
   container values (decode.py's Structs are not frozen). */
static Py_ssize_t member_offset(PyTypeObject *type, PyObject *name) {
    PyObject *found = _PyType_Lookup(type, name);
    if (found == NULL || !Py_IS_TYPE(found, &PyMemberDescr_Type)) return -1;
    PyMemberDef *member = ((PyMemberDescrObject *)found)->d_member;
    return member->type == T_OBJECT_EX ? member->offset : -1;
}

/* The time fields of an event's class; NULL without an exception: not an event
   class `time_fields` knows (or too many of them), left to Python. */
static TimeFields *time_fields_of(Classes *known, PyTypeObject *type, PyObject *time_fields) {
    for (int i = 0; i < known->count; i++)
        if (known->classes[i].type == type) return &known->classes[i];
    PyObject *names = PyDict_GetItemWithError(time_fields, (PyObject *)type);
    if (names == NULL || !PyTuple_CheckExact(names) || PyTuple_GET_SIZE(names) > MAX_TIME_FIELDS)
        return NULL;
    if (known->count == MAX_CLASSES) return NULL;
    TimeFields *found = &known->classes[known->count++];
    found->type = type;
    found->names = names;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++)
        found->offsets[i] = member_offset(type, PyTuple_GET_ITEM(names, i));
    return found;
}

/* 1 with *out a new event, 0 to leave the payload to Python, -1 with an exception set. */
static int fast_event(PyObject *payload, Py_ssize_t max_bytes, PyObject *decoder,
                      PyObject *time_fields, Classes *known, PyObject *retry, PyObject **out) {
    *out = NULL;
    if (!PyBytes_CheckExact(payload)) return 0;
    Py_ssize_t size = PyBytes_GET_SIZE(payload);
    /* msgspec skips unknown fields without checking their UTF-8: ASCII payloads only. */
    if ((max_bytes != 0 && size > max_bytes) || !is_ascii(PyBytes_AS_STRING(payload), size)) return 0;
    PyObject *event = PyObject_CallOneArg(decoder, payload);
    if (event == NULL) {
        if (!PyErr_ExceptionMatches(retry)) return -1;
        PyErr_Clear();
        return 0;
    }
    TimeFields *fields = time_fields_of(known, Py_TYPE(event), time_fields);
    if (fields == NULL) {
        Py_DECREF(event);
        return PyErr_Occurred() ? -1 : 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields->names); i++) {
        PyObject *name = PyTuple_GET_ITEM(fields->names, i);
        PyObject **slot = NULL;
        if (fields->offsets[i] >= 0) {
            slot = (PyObject **)((char *)event + fields->offsets[i]);
            if (*slot == NULL) slot = NULL; /* unset: getattr says why */
        }
        PyObject *value = slot != NULL ? Py_NewRef(*slot) : PyObject_GetAttr(event, name);
        if (value == NULL) {
            Py_DECREF(event);
            return -1;
        }
        long long us;
        int parsed = time_us(value, &us);
        Py_DECREF(value);
        if (!parsed) {
            Py_DECREF(event);
            return 0;
        }
        PyObject *number = PyLong_FromLongLong(us);
        if (number != NULL && slot != NULL) {
            Py_SETREF(*slot, number);
            continue;
        }
        if (number == NULL || PyObject_SetAttr(event, name, number) < 0) {
            Py_XDECREF(number);
            Py_DECREF(event);
            return -1;
        }
        Py_DECREF(number);
    }
    *out = event;
    return 1;
}

static PyObject *decode_batch(PyObject *module, PyObject *args) {
    PyObject *payloads, *decoder, *time_fields, *retry;
    Py_ssize_t max_bytes;
    if (!PyArg_ParseTuple(args, "O!nOO!O:decode_batch", &PyList_Type, &payloads, &max_bytes,
                          &decoder, &PyDict_Type, &time_fields, &retry))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    Classes known = {.count = 0};
    PyObject *items = PyList_New(count);
    PyObject *refused = PyList_New(0);
    if (items == NULL || refused == NULL) goto error;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *event;
        if (fast_event(PyList_GET_ITEM(payloads, i), max_bytes, decoder, time_fields, &known,
                       retry, &event) < 0)
            goto error;
        if (event == NULL) {
            PyObject *position = PyLong_FromSsize_t(i);
            int failed = position == NULL || PyList_Append(refused, position) < 0;
            Py_XDECREF(position);
            if (failed) goto error;
            event = Py_NewRef(Py_None);
        }
        PyList_SET_ITEM(items, i, event);
    }
    return Py_BuildValue("(NN)", items, refused);
error:
    Py_XDECREF(items); /* its unset slots are NULL, which list dealloc skips */
    Py_XDECREF(refused);
    return NULL;
}

/* Reading a decoded event's fields. The families read them by name (`event.fc`),
   which went through the generic lookup: the type's method cache, the member
   descriptor and its getter, ~150 instructions and a few cache lines a read.
   `fast_fields` gives each event class a getattro that finds an interned name among
   the class's own fields and reads its slot; anything else (a class attribute, an
   unset field, a name not interned, a subclass) goes the generic way, so every read
   gives what it gave before. */
#define MAX_FIELDS 16
#define FIELD_TABLES 64 /* a power of two; at most half of them used */

typedef struct {
    PyTypeObject *type; /* owned; NULL: an empty entry */
    int count;
    PyObject *names[MAX_FIELDS]; /* interned, owned */
    Py_ssize_t offsets[MAX_FIELDS];
} FieldTable;

static FieldTable field_tables[FIELD_TABLES];
static int field_classes;

/* The class's entry, or the empty one where it would go. */
static FieldTable *fields_of(PyTypeObject *type) {
    size_t i = (size_t)(((uint64_t)(uintptr_t)type * 0x9E3779B97F4A7C15ULL) >> 58);
    for (;; i = (i + 1) & (FIELD_TABLES - 1)) {
        FieldTable *table = &field_tables[i];
        if (table->type == type || table->type == NULL) return table;
    }
}

static PyObject *field_getattro(PyObject *obj, PyObject *name) {
    /* A family reads several fields of one event in a row: the last class's table
       is kept (no lookup). */
    static FieldTable *last = &field_tables[0];
    FieldTable *table = last->type == Py_TYPE(obj) ? last : (last = fields_of(Py_TYPE(obj)));
    for (int i = 0; i < table->count; i++) {
        if (table->names[i] == name) {
            PyObject *value = *(PyObject **)((char *)obj + table->offsets[i]);
            if (value != NULL) return Py_NewRef(value);
            break;
        }
    }
    return PyObject_GenericGetAttr(obj, name);
}

/* Give one class the getattro above; 0 leaves it as it was (not a class whose
   fields are all member slots, or too many fields or classes). */
static int give_fast_fields(PyTypeObject *type) {
    FieldTable *table = fields_of(type);
    if (table->type == type) return 1;
    if (type->tp_getattro != PyObject_GenericGetAttr || field_classes >= FIELD_TABLES / 2) return 0;
    PyObject *fields = PyObject_GetAttrString((PyObject *)type, "__struct_fields__");
    if (fields == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
        PyErr_Clear(); /* not a Struct */
        return 0;
    }
    int given = 0;
    if (PyTuple_CheckExact(fields) && PyTuple_GET_SIZE(fields) <= MAX_FIELDS) {
        FieldTable found = {.type = type, .count = 0};
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(fields); i++) {
            PyObject *name = PyTuple_GET_ITEM(fields, i);
            Py_ssize_t offset = PyUnicode_CheckExact(name) ? member_offset(type, name) : -1;
            if (offset < 0) break;
            Py_INCREF(name);
            PyUnicode_InternInPlace(&name);
            found.names[found.count] = name;
            found.offsets[found.count++] = offset;
        }
        if (found.count == PyTuple_GET_SIZE(fields)) {
            Py_INCREF(type);
            *table = found;
            field_classes++;
            type->tp_getattro = field_getattro;
            PyType_Modified(type);
            given = 1;
        } else {
            for (int i = 0; i < found.count; i++) Py_DECREF(found.names[i]);
        }
    }
    Py_DECREF(fields);
    return given;
}

static PyObject *fast_fields(PyObject *module, PyObject *classes) {
    if (!PyTuple_Check(classes)) {
        PyErr_SetString(PyExc_TypeError, "fast_fields takes a tuple of classes");
        return NULL;
    }
    PyObject *given = PyList_New(0);
    if (given == NULL) return NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(classes); i++) {
        PyObject *cls = PyTuple_GET_ITEM(classes, i);
        if (!PyType_Check(cls)) {
            PyErr_Format(PyExc_TypeError, "not a class: %.100R", cls);
            Py_DECREF(given);
            return NULL;
        }
        int done = give_fast_fields((PyTypeObject *)cls);
        if (done < 0 || (done && PyList_Append(given, cls) < 0)) {
            Py_DECREF(given);
            return NULL;
        }
    }
    return given;
}

static PyMethodDef methods[] = {
    {"decode_batch", decode_batch, METH_VARARGS,
     "decode_batch(payloads, max_bytes, decoder, time_fields, retry) -> (items, refused)"},
    {"fast_fields", fast_fields, METH_O,
     "fast_fields(classes) -> the classes whose fields now read from their slots directly"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "flows._fastdecode",
                                    "The compiled common case of flows.decode.decode_all.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__fastdecode(void) { return PyModule_Create(&module); }
