"""Input files for the benchmarks, generated once and kept in `.bench/data`.

Simulated files come from `opscockpit simulate` (deterministic for a seed and
the simulator's source, which both name the file, so a cached file is the same
file); synthetic ones are written here. A file is
written under a temporary name and renamed, so an interrupted run never leaves
a truncated file behind to be reused.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from flows import simulator
from flows.simulator import ORDER_HEAVY, rfc3339, write_lines
from flows.timeutil import parse_time
from tests.bench.common import DATA_DIR, BenchFailure, count_lines, log, opscockpit_command

SEED = 3
START_MS = parse_time("2026-11-20T00:00:00Z") // 1000
SECOND_MS = 1000
HOUR_MS = 3600 * SECOND_MS
DAY_MS = 24 * HOUR_MS
# In the names of simulated files: a changed simulator writes new files, not the old ones.
SIMULATOR = hashlib.sha256(Path(simulator.__file__).read_bytes()).hexdigest()[:8]


def _cached(name: str, make: Callable[[Path], None]) -> Path:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / name
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        make(partial)
        partial.replace(path)
    return path


def line_count(path: Path) -> int:
    """Lines of a data file, remembered next to it."""
    counted = path.with_name(path.name + ".lines")
    if counted.exists():
        return int(counted.read_text())
    lines = count_lines(path)
    counted.write_text(str(lines))
    return lines


def simulated(hours: float, seed: int = SEED) -> Path:
    """`opscockpit simulate --out F --hours H --seed S` (about 13,900 events per hour)."""

    def make(path: Path) -> None:
        log(f"simulating {hours:g} h (seed {seed}) into {path.name}")
        command = opscockpit_command(
            "simulate", "--out", str(path), "--hours", f"{hours:g}", "--seed", str(seed)
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BenchFailure(f"opscockpit simulate failed: {result.stderr}")

    return _cached(f"sim-{hours:g}h-seed{seed}-{SIMULATOR}.jsonl", make)


def order_heavy(hours: float, seed: int = SEED) -> Path:
    """A simulated period of the order-heavy mix."""

    def make(path: Path) -> None:
        log(f"simulating {hours:g} h of the order-heavy mix (seed {seed}) into {path.name}")
        start = START_MS * 1000
        with path.open("wb") as handle:
            write_lines(handle, seed, start, start + round(hours * HOUR_MS * 1000), ORDER_HEAVY)

    return _cached(f"orders-{hours:g}h-seed{seed}-{SIMULATOR}.jsonl", make)


def _write(path: Path, events: Iterator[dict[str, object]]) -> None:
    with path.open("wb") as handle:
        for event in events:
            handle.write(orjson.dumps(event) + b"\n")


def _stamp(ms: int) -> str:
    return rfc3339(ms)


def open_orders(count: int) -> Path:
    """`count` order.placed events, distinct orders, promises a year ahead: all stay open."""

    def events() -> Iterator[dict[str, object]]:
        ship_by, deliver_by = _stamp(START_MS + 365 * DAY_MS), _stamp(START_MS + 366 * DAY_MS)
        for n in range(count):
            yield {
                "event_id": f"bench-order-{n}",
                "type": "order.placed",
                "ts": _stamp(START_MS + n * 10),
                "order_id": f"ORD-BENCH-{n:08d}",
                "customer_id": f"C{n % 500_000:06d}",
                "fc": f"FC-{n % 5}",
                "region": f"region-{n % 6}",
                "lines": [{"sku": f"SKU-{n % 3000:05d}", "qty": 1}],
                "promised_ship_by": ship_by,
                "promised_delivery_by": deliver_by,
            }

    return _cached(f"open-orders-{count}.jsonl", lambda path: _write(path, events()))


def open_receipts(count: int) -> Path:
    """`count` inventory.received events, distinct receipts, never stowed."""

    def events() -> Iterator[dict[str, object]]:
        for n in range(count):
            yield {
                "event_id": f"bench-receipt-{n}",
                "type": "inventory.received",
                "ts": _stamp(START_MS + n * 10),
                "receipt_id": f"RCV-BENCH-{n:08d}",
                "fc": f"FC-{n % 5}",
                "sku": f"SKU-{n % 3000:05d}",
                "qty": 24,
                "supplier": f"SUP-{n % 40:03d}",
            }

    return _cached(f"open-receipts-{count}.jsonl", lambda path: _write(path, events()))


def tracked_items(items: int, days: int = 28) -> Path:
    """`items` inventory items (20 fcs) with `days` days of orders and three lots each:
    every item's state at its fullest (a demand history over the safety days).
    Each order takes 100 items of one fc and is cancelled at once, its promises an
    hour later, so that orders leave state and items stay."""
    fcs, per_order = 20, 100
    skus = items // fcs

    def item(n: int) -> tuple[str, str]:
        return f"FC-{n % fcs:02d}", f"SKU-{n // fcs:06d}"

    def events() -> Iterator[dict[str, object]]:
        for day in range(days):
            start = START_MS + day * DAY_MS
            if day % 10 == 0:  # a lot on days 0, 10 and 20
                for n in range(items):
                    fc, sku = item(n)
                    yield {
                        "event_id": f"bench-lot-{day}-{n}",
                        "type": "inventory.stowed",
                        "ts": _stamp(start + n),
                        "receipt_id": f"RCV-{day}-{n}",
                        "fc": fc,
                        "sku": sku,
                        "qty": 100,
                    }
            for order in range(items // per_order):
                ts = start + HOUR_MS + order * 10
                fc, chunk = order % fcs, order // fcs  # 100 skus of one fc
                placed = f"ORD-{day}-{order}"
                yield {
                    "event_id": f"bench-placed-{day}-{order}",
                    "type": "order.placed",
                    "ts": _stamp(ts),
                    "order_id": placed,
                    "fc": f"FC-{fc:02d}",
                    "region": "region-0",
                    "lines": [
                        {"sku": f"SKU-{sku:06d}", "qty": 1 + (day + sku) % 3}
                        for sku in range(chunk * per_order, (chunk + 1) * per_order)
                    ],
                    "promised_ship_by": _stamp(ts + HOUR_MS),
                    "promised_delivery_by": _stamp(ts + HOUR_MS),
                }
                yield {
                    "event_id": f"bench-cancelled-{day}-{order}",
                    "type": "order.cancelled",
                    "ts": _stamp(ts + 1),
                    "order_id": placed,
                }

    assert skus * fcs == items and skus % per_order == 0
    return _cached(f"tracked-items-{items}-{days}.jsonl", lambda path: _write(path, events()))


def page_views(count: int) -> Path:
    """`count` page views at the same times: the stateless baseline of the state files."""
    pages = ("home", "search", "category", "product", "cart", "checkout", "account", "deals")

    def events() -> Iterator[dict[str, object]]:
        for n in range(count):
            yield {
                "event_id": f"bench-view-{n}",
                "type": "page.viewed",
                "ts": _stamp(START_MS + n * 10),
                "session_id": f"S-BENCH-{n // 5:08d}",
                "page": pages[n % len(pages)],
                "load_ms": 100 + n % 900,
            }

    return _cached(f"page-views-{count}.jsonl", lambda path: _write(path, events()))


def label_cap(values: int) -> Path:
    """Every labelled series for `values` distinct fc, region, page and widget values.

    Per value i: orders on time, late, stuck at each stage, cancelled; a receipt
    stowed and one never stowed; adjustments both ways; a return; storefront
    events on page i and widget i. A final page view two days later passes every
    deadline and closes every window.
    """

    def events() -> list[tuple[int, dict[str, object]]]:
        out: list[tuple[int, dict[str, object]]] = []

        def at(ms: int, kind: str, **fields: object) -> None:
            event = {"event_id": f"cap-{len(out)}", "type": kind, "ts": _stamp(ms), **fields}
            out.append((ms, event))

        for i in range(values):
            fc, region = f"FC-{i:04d}", f"region-{i:04d}"
            page, widget, session = f"page-{i:04d}", f"widget-{i:04d}", f"S-CAP-{i:04d}"
            t = START_MS + i * SECOND_MS
            sku = f"SKU-{i:05d}"
            promises = {
                "promised_ship_by": _stamp(t + HOUR_MS),
                "promised_delivery_by": _stamp(t + 3 * HOUR_MS),
            }
            for fate in ("on_time", "late", "stuck", "picked", "packed", "cancelled"):
                order = f"ORD-CAP-{i:04d}-{fate}"
                at(
                    t,
                    "order.placed",
                    order_id=order,
                    fc=fc,
                    region=region,
                    lines=[{"sku": sku, "qty": 2}],
                    **promises,
                )
                if fate in {"on_time", "late", "picked", "packed"}:
                    at(t + 600_000, "inventory.picked", order_id=order, fc=fc, sku=sku, qty=2)
                if fate in {"on_time", "late", "packed"}:
                    at(t + 1_200_000, "inventory.packed", order_id=order, fc=fc)
                if fate == "cancelled":
                    at(t + 300_000, "order.cancelled", order_id=order, reason="customer_request")
                if fate in {"on_time", "late"}:
                    shipped = t + (HOUR_MS // 2 if fate == "on_time" else 2 * HOUR_MS)
                    delivered = t + (2 * HOUR_MS if fate == "on_time" else 5 * HOUR_MS)
                    at(shipped, "order.shipped", order_id=order, fc=fc, carrier="UPS")
                    at(
                        delivered - 600_000,
                        "delivery.updated",
                        order_id=order,
                        status=("out_for_delivery"),
                    )
                    at(delivered, "delivery.updated", order_id=order, status="delivered")
                if fate == "on_time":
                    at(t + 6 * HOUR_MS, "return.received", order_id=order, fc=fc, sku=sku, qty=1)
            at(t, "inventory.received", receipt_id=f"RCV-CAP-{i:04d}-a", fc=fc, sku=sku, qty=12)
            at(
                t + HOUR_MS,
                "inventory.stowed",
                receipt_id=f"RCV-CAP-{i:04d}-a",
                fc=fc,
                sku=sku,
                qty=12,
            )
            at(t, "inventory.received", receipt_id=f"RCV-CAP-{i:04d}-b", fc=fc, sku=sku, qty=6)
            at(t, "inventory.adjusted", fc=fc, sku=sku, delta=100, reason="opening_balance")
            at(t + 60_000, "inventory.adjusted", fc=fc, sku=sku, delta=-1, reason="damaged")
            at(t, "page.viewed", session_id=session, page=page, load_ms=250)
            at(
                t + 1000,
                "search.performed",
                session_id=session,
                query="q",
                results=0,
                latency_ms=80,
            )
            at(t + 2000, "cart.added", session_id=session, sku=sku, qty=1)
            at(t + 3000, "recommendation.shown", session_id=session, widget=widget, sku=sku)
            at(t + 4000, "recommendation.clicked", session_id=session, widget=widget, sku=sku)
        at(
            START_MS + 2 * DAY_MS,
            "page.viewed",
            session_id="S-CAP-END",
            page="page-0000",
            load_ms=250,
        )
        out.sort(key=lambda pair: pair[0])
        return out

    def make(path: Path) -> None:
        _write(path, (event for _ms, event in events()))

    return _cached(f"label-cap-{values}.jsonl", make)
