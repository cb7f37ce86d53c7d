"""Times and timer slots of the runtime, for Python code. The compiled build reads
the same values as C constants from `core.pxd` (a test keeps the two equal)."""

from __future__ import annotations

from flows.timeutil import US_PER_SECOND

MIN_TS = -(1 << 62)  # before any event: W of a shard that has seen nothing
MAX_TS = 1 << 62
NEVER = MAX_TS  # the time of a fact not (yet) known: later than any event
HOUR = 3600 * US_PER_SECOND
# Timer slots: a family's index in the shard, then one of 16 tags of its own.
TAG_BITS = 4
TAG_MASK = (1 << TAG_BITS) - 1
# Timers wait unsorted in buckets of this much event time until W reaches them.
TIMER_BUCKET = 60 * US_PER_SECOND
# Durations beyond this are refused: ts, W and sums of them stay exact in 64 bits.
MAX_DURATION = 1 << 60
