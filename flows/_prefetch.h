/* A prefetch hint shared by the C modules and, through flows/runtime/core.pxd
   (`prefetch_object`), the compiled Cython ones: start loading memory that is
   about to be read, so that the cache misses of several reads overlap instead of
   queueing. Nothing happens where the compiler has no prefetch. */
#ifndef OPSCOCKPIT_PREFETCH_H
#define OPSCOCKPIT_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

/* Each 64-byte block of the `size` bytes at `address` (its first one at least). */
static inline void opscockpit_prefetch(const void *address, ptrdiff_t size) {
#if defined(__GNUC__)
    uintptr_t block = (uintptr_t)address & ~(uintptr_t)63;
    uintptr_t last = (uintptr_t)address + (size > 1 ? (uintptr_t)size - 1 : 0);
    for (; block <= last; block += 64) __builtin_prefetch((const void *)block);
#else
    (void)address;
    (void)size;
#endif
}

#endif
