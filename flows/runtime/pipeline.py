"""The pipeline's own metrics: what the runtime and the sources count (contract §4)."""

from __future__ import annotations

from flows.declare import CAPPED_LABELS, COUNTER, GAUGE, Metric, metric
from flows.decode import REJECT_REASONS
from flows.events import EVENT_TYPES

EVENT_NAMES = tuple(EVENT_TYPES)

EVENTS = metric(
    "cockpit_events_total",
    COUNTER,
    "Accepted events.",
    ("type",),
    contract=True,
    known=EVENT_NAMES,
)
REJECTED = metric(
    "cockpit_events_rejected_total",
    COUNTER,
    "Dead-lettered events.",
    ("reason",),
    contract=True,
    known=REJECT_REASONS,
)
DUPLICATE = metric(
    "cockpit_events_duplicate_total",
    COUNTER,
    "Duplicate events ignored.",
    ("type",),
    contract=True,
    known=EVENT_NAMES,
)
LATE = metric(
    "cockpit_events_late_total",
    COUNTER,
    "Late events ignored.",
    ("type",),
    contract=True,
    known=EVENT_NAMES,
)
WATERMARK = metric(
    "cockpit_watermark_timestamp_seconds",
    GAUGE,
    "Event-time watermark W as unix seconds.",
    unit="dateTimeAsEpoch",
    contract=True,
    merge="min",
)
LABEL_OVERFLOW = metric(
    "cockpit_label_overflow_total",
    COUNTER,
    "Label uses folded into 'other' by the label cap.",
    ("label",),
    contract=True,
    known=CAPPED_LABELS,
)
STATE_ENTRIES = metric(
    "cockpit_state_entries",
    GAUGE,
    "Entries held in state: orders, receipts, orphans, dedup ids, timers.",
    ("kind",),
)
KAFKA_UP = metric(
    "cockpit_kafka_up",
    GAUGE,
    "1 while the Kafka brokers answer this process, else 0.",
    merge="min",
)
KAFKA_LAG = metric(
    "cockpit_kafka_consumer_lag",
    GAUGE,
    "Messages in a partition not yet read by this process.",
    ("topic", "partition"),
)
KAFKA_SKIPPED = metric(
    "cockpit_kafka_records_skipped_total",
    COUNTER,
    "Records not written to a Kafka output topic: larger than a message there holds "
    "(each logged with its key).",
    ("topic",),
)

# Counted by the runtime of every shard.
SHARD_METRICS: tuple[Metric, ...] = (
    EVENTS,
    REJECTED,
    DUPLICATE,
    LATE,
    WATERMARK,
    LABEL_OVERFLOW,
    STATE_ENTRIES,
)
# Set by the Kafka source of each process.
SOURCE_METRICS: tuple[Metric, ...] = (KAFKA_UP, KAFKA_LAG)
# Counted by each Kafka output of each process.
SINK_METRICS: tuple[Metric, ...] = (KAFKA_SKIPPED,)
