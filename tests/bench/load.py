"""A paced background load for the latency benchmark, run as its own process.

`python -m tests.bench.load --bootstrap B --topic T --file F --count N --rate R`

Takes the first N lines of a simulated file, leaves out every `cart.added`
(the latency probes are the only cart units), re-stamps event k with the
wall-clock time it is due, S + k / R (order promises keep their distance to
`ts`), and produces it keyed by entity id at that time. Everything is prepared
before S, so pacing costs little CPU. Prints `ready <S in epoch seconds>` once
prepared, and a JSON summary when done.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import orjson
from confluent_kafka import Producer

from flows.events import entity_key
from flows.simulator import rfc3339
from flows.timeutil import US_PER_MS, parse_time

PROBE_TYPE = b'"cart.added"'
PROMISES = ("promised_ship_by", "promised_delivery_by")


def keyed(line: bytes, partitions: int) -> tuple[int, bytes]:
    """(partition, key) like a real producer: crc32 of the entity id (tests/test_kafka.py)."""
    try:
        key = entity_key(orjson.loads(line)).encode()
    except (orjson.JSONDecodeError, AttributeError):
        key = b"malformed"
    return zlib.crc32(key) % partitions, key


def restamp(line: bytes, ts_ms: int) -> bytes:
    """The event with `ts` = ts_ms (promises shifted alike); malformed lines unchanged."""
    try:
        event = orjson.loads(line)
        shift = ts_ms * US_PER_MS - parse_time(event["ts"])
        event["ts"] = rfc3339(ts_ms) if isinstance(event["ts"], str) else ts_ms
        for name in PROMISES:
            if name in event:
                event[name] = rfc3339((parse_time(event[name]) + shift) // US_PER_MS)
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        return line
    return orjson.dumps(event)


def read(path: Path, count: int) -> list[bytes]:
    lines: list[bytes] = []
    with path.open("rb") as handle:
        for line in handle:
            if PROBE_TYPE not in line:
                lines.append(line.rstrip(b"\n"))
                if len(lines) == count:
                    break
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()

    lines = read(args.file, args.count)
    if len(lines) < args.count:
        print(f"only {len(lines)} usable lines in {args.file}", file=sys.stderr)
        return 1
    # Calibrate the preparation cost, then choose S so that all is ready before it.
    sample = lines[:20_000]
    started = time.perf_counter()
    for line in sample:
        keyed(restamp(line, 1_800_000_000_000), args.partitions)
    per_line = (time.perf_counter() - started) / len(sample)
    start_ms = int((time.time() + 2 + 1.5 * per_line * len(lines)) * 1000)
    messages = []
    for k, line in enumerate(lines):
        payload = restamp(line, start_ms + int(k * 1000 / args.rate))
        partition, key = keyed(payload, args.partitions)
        messages.append((partition, key, payload))
    del lines
    late_start = max(0.0, time.time() - start_ms / 1000)
    print(f"ready {start_ms / 1000:.3f}", flush=True)

    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    start_s, max_lag, produced = start_ms / 1000, 0.0, 0
    topic, step = args.topic, 1 / args.rate
    for k, (partition, key, payload) in enumerate(messages):
        due = start_s + k * step
        now = time.time()
        if due > now + 0.002:
            producer.poll(0)
            time.sleep(due - now)
        elif now - due > max_lag:
            max_lag = now - due
        while True:
            try:
                producer.produce(topic, payload, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        produced += 1
        if produced % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    finished = time.time()
    summary = {
        "produced": produced - remaining,
        "seconds": finished - start_s,
        "rate": produced / max(finished - start_s, 1e-9),
        "max_lag_s": max_lag,
        "late_start_s": late_start,
        "prepare_us_per_line": per_line * 1e6,
    }
    print(orjson.dumps(summary).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
