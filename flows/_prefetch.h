/* Prefetch hints shared by the C modules and, through flows/runtime/core.pxd
   (`prefetch_object`, `prefetch_list`, `prefetch_held`), the compiled Cython
   ones: start loading memory that is about to be read, so that the cache misses
   of several reads overlap instead of queueing. Nothing happens where the
   compiler has no prefetch. */
#ifndef FLOWS_PREFETCH_H
#define FLOWS_PREFETCH_H

#include <Python.h>  /* already included, first, by every module that includes this */
#include <stddef.h>
#include <stdint.h>

/* Each 64-byte block of the `size` bytes at `address` (its first one at least). */
static inline void prefetch_span(const void *address, ptrdiff_t size) {
#if defined(__GNUC__)
    uintptr_t block = (uintptr_t)address & ~(uintptr_t)63;
    uintptr_t last = (uintptr_t)address + (size > 1 ? (uintptr_t)size - 1 : 0);
    for (; block <= last; block += 64) __builtin_prefetch((const void *)block);
#else
    (void)address;
    (void)size;
#endif
}

/* The array of a list's item pointers, its first `count` at most (the list's own
   memory must have arrived: it is read). */
static inline void prefetch_list_array(PyObject *list, Py_ssize_t count) {
    Py_ssize_t size = PyList_GET_SIZE(list) < count ? PyList_GET_SIZE(list) : count;
    if (size > 0) prefetch_span(((PyListObject *)list)->ob_item, size * (Py_ssize_t)sizeof(PyObject *));
}

/* The first `size` bytes of each of the first `count` objects a list holds (its
   array must have arrived: prefetch_list_array first). */
static inline void prefetch_list_objects(PyObject *list, Py_ssize_t count, Py_ssize_t size) {
    Py_ssize_t last = PyList_GET_SIZE(list) < count ? PyList_GET_SIZE(list) : count;
    for (Py_ssize_t index = 0; index < last; index++)
        prefetch_span(PyList_GET_ITEM(list, index), size);
}

#endif
