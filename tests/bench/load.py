"""A paced background load for the latency benchmark, run as its own process.

`python -m tests.bench.load --bootstrap B --topic T --file F --count N --rate R`

Takes the first N lines of a simulated file, leaves out every `cart.added`
(the latency probes are the only cart units), re-stamps event k with the
wall-clock time it is due, S + k / R (order promises keep their distance to
`ts`), and produces it keyed by entity id at that time. Everything is prepared
before S (each event split around its ts), so stamping and pacing cost little
CPU. Prints `ready <S in epoch seconds>` once prepared, and a JSON summary when
done. Lines that are not valid JSON objects with a valid ts go out unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from flows.kafka import produce
from flows.simulator import rfc3339
from flows.timeutil import US_PER_MS, parse_time
from tests.kafka_broker import keyed

PROBE_TYPE = b'"cart.added"'
PROMISES = ("promised_ship_by", "promised_delivery_by")
MARK = "@@bench-ts@@"
QUOTED_MARK = f'"{MARK}"'.encode()

# A prepared message: (partition, key, template). A template is (prefix, suffix, text):
# payload = prefix + new ts + suffix, ts as RFC 3339 text or epoch ms as the original
# was; or (event, None, None) for events with promises, re-serialised at send time;
# or (payload, None, None) with event None for malformed lines, sent unchanged.
Template = tuple[Any, Any, Any]


def template(line: bytes) -> Template:
    """Split an event around its ts, so that stamping it at send time costs little."""
    try:
        event = orjson.loads(line)
        parse_time(event["ts"])  # an invalid time stays invalid: sent unchanged
        text = isinstance(event["ts"], str)
        if any(name in event for name in PROMISES):
            return (event, None, None)
        event["ts"] = MARK
        prefix, suffix = orjson.dumps(event).split(QUOTED_MARK)
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        return (line, None, None)
    return (prefix, suffix, text)


def stamp(prepared: Template, ts_ms: int) -> bytes:
    """The payload of a prepared event with `ts` = ts_ms (promises shifted alike)."""
    first, suffix, text = prepared
    if suffix is not None:
        ts = f'"{rfc3339(ts_ms)}"' if text else str(ts_ms)
        return bytes(first + ts.encode() + suffix)
    if type(first) is bytes:
        return first  # malformed: rejected whatever its time
    event = dict(first)
    shift = ts_ms * US_PER_MS - parse_time(event["ts"])
    event["ts"] = rfc3339(ts_ms) if isinstance(event["ts"], str) else ts_ms
    for name in PROMISES:
        if name in event:
            with contextlib.suppress(TypeError, ValueError):  # an invalid one stays so
                event[name] = rfc3339((parse_time(event[name]) + shift) // US_PER_MS)
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
    prepared = []
    for line in lines:
        partition, key, _line = keyed(line, args.partitions)
        prepared.append((partition, key, template(line)))
    del lines
    start_ms = int((time.time() + 1.0) * 1000)  # prepared: S can be close
    print(f"ready {start_ms / 1000:.3f}", flush=True)

    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    start_s, max_lag, produced = start_ms / 1000, 0.0, 0
    topic, step = args.topic, 1 / args.rate
    for k, (partition, key, prepared_event) in enumerate(prepared):
        due = start_s + k * step
        payload = stamp(prepared_event, start_ms + int(k * 1000 / args.rate))
        now = time.time()
        if due > now + 0.002:
            producer.poll(0)
            time.sleep(due - now)
        elif now - due > max_lag:
            max_lag = now - due
        produce(producer, topic, payload, key, partition=partition, wait_s=0.05)
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
    }
    print(orjson.dumps(summary).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
