"""`opscockpit import olist`: public Olist orders as TPS events.

Olist's Brazilian e-commerce dataset records what happened to real orders.
Converted with a fixed mapping and replayed, it gives delivery and ship-SLA
figures that anyone can recompute from the CSVs, which checks our KPIs on real
data. The mapping:

- times are Brazilian local time without offset, read as UTC-03:00;
- only orders with at least one item are imported; `fc` is `BR-` plus the
  state of the seller of item 1, `region` is that state;
- `order.placed` at the purchase time, one line per item (`sku` = product,
  `qty` = 1), `promised_ship_by` = the earliest shipping limit of its items,
  `promised_delivery_by` = the estimated delivery date at 23:59:59;
- `order.shipped` at the carrier hand-off, `delivery.updated` (`delivered`) at
  the customer delivery, when present;
- status `canceled` or `unavailable`: `order.cancelled` at the latest of the
  purchase, approval, carrier and customer times present.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, TextIO

from flows.commands import CliError, distinct, named, say, writable

BRAZIL = timezone(timedelta(hours=-3))
END_OF_DAY = time(23, 59, 59)
CANCELLED_STATUSES = ("canceled", "unavailable")

ORDERS_FILE = "olist_orders_dataset.csv"
ITEMS_FILE = "olist_order_items_dataset.csv"
SELLERS_FILE = "olist_sellers_dataset.csv"

ORDER_COLUMNS = (
    "order_id",
    "customer_id",
    "order_status",
    "order_purchase_timestamp",
    "order_approved_at",
    "order_delivered_carrier_date",
    "order_delivered_customer_date",
    "order_estimated_delivery_date",
)
ITEM_COLUMNS = ("order_id", "order_item_id", "product_id", "seller_id", "shipping_limit_date")
SELLER_COLUMNS = ("seller_id", "seller_state")

# Event id suffix -> event type. Events of one order at the same time are written in
# this order (which only makes the output deterministic: replay holds an order's
# events until its order.placed arrives).
KINDS = {
    "placed": "order.placed",
    "shipped": "order.shipped",
    "delivered": "delivery.updated",
    "cancelled": "order.cancelled",
}
KIND_RANK = {kind: rank for rank, kind in enumerate(KINDS)}

_OLIST_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")

Row = dict[str, str]


class OlistError(Exception):
    """A problem that stops the import (missing file, missing column): one line for the user."""


class BadRow(Exception):
    """A row to skip, with the reason."""


@dataclass(frozen=True)
class Order:
    """A row of the orders table; `line` locates it for error messages."""

    order_id: str
    customer_id: str
    status: str
    purchased: datetime
    approved: datetime | None
    handed_to_carrier: datetime | None
    delivered: datetime | None
    estimated_delivery: date
    line: int


@dataclass(frozen=True)
class Item:
    """A row of the order items table."""

    order_id: str
    number: int
    product_id: str
    seller_id: str
    shipping_limit: datetime
    line: int


@dataclass(frozen=True)
class Event:
    """A TPS event with the key it is sorted by."""

    moment: datetime
    order_id: str
    kind: str
    payload: dict[str, Any]

    def sort_key(self) -> tuple[datetime, str, int]:
        return self.moment, self.order_id, KIND_RANK[self.kind]


@dataclass(frozen=True)
class Conversion:
    """The sorted events, how many orders they describe, and the bad rows skipped."""

    events: list[Event]
    orders: int
    bad_rows: list[str]


def parse_local_time(text: str) -> datetime:
    """An Olist time such as '2017-10-02 10:56:33', at UTC-03:00."""
    if _OLIST_TIME.fullmatch(text) is None:
        raise ValueError(f"not a time of the form YYYY-MM-DD HH:MM:SS: {text!r}")
    return datetime.fromisoformat(text).replace(tzinfo=BRAZIL)


def read_table(
    path: Path, columns: Sequence[str], bad_rows: list[str]
) -> Iterator[tuple[int, Row]]:
    """(line number, row) for each well-formed row of a CSV file with these columns.

    Rows with a wrong number of fields or bytes that are not UTF-8 go to
    `bad_rows`; a missing file or column stops the import.
    """
    try:
        # surrogateescape lets one undecodable row be reported instead of failing the file.
        handle = path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise OlistError(f"cannot read {path}: no such file") from None
    except OSError as exc:
        raise OlistError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in columns if name not in header]
            if missing:
                raise OlistError(f"{path}: missing column(s) {', '.join(missing)}")
            twice = sorted({name for name in columns if header.count(name) > 1})
            if twice:  # which one holds the value is anyone's guess
                raise OlistError(f"{path}: column(s) {', '.join(twice)} more than once")
            line = reader.line_num + 1
            for fields in reader:
                if fields:
                    try:
                        yield line, _row(header, fields)
                    except BadRow as exc:
                        bad_rows.append(f"{path}:{line}: {exc}")
                line = reader.line_num + 1
        except csv.Error as exc:
            raise OlistError(f"{path}:{reader.line_num}: {exc}") from None
        except OSError as exc:  # a read that fails (EIO) after the open worked
            raise OlistError(f"cannot read {path}: {exc.strerror or exc}") from None


def _row(header: list[str], fields: list[str]) -> Row:
    if len(fields) != len(header):
        raise BadRow(f"{len(fields)} fields, expected {len(header)}")
    try:
        "".join(fields).encode("utf-8")
    except UnicodeEncodeError:
        raise BadRow("not UTF-8") from None
    return {name: value.strip() for name, value in zip(header, fields, strict=True)}


def _required(row: Row, column: str) -> str:
    value = row[column]
    if not value:
        raise BadRow(f"missing {column}")
    return value


def _time(row: Row, column: str) -> datetime:
    try:
        return parse_local_time(_required(row, column))
    except ValueError as exc:
        raise BadRow(f"bad {column}: {exc}") from None


def _optional_time(row: Row, column: str) -> datetime | None:
    return _time(row, column) if row[column] else None


def read_orders(path: Path, bad_rows: list[str]) -> list[Order]:
    """The orders table, without bad or repeated rows."""
    orders: dict[str, Order] = {}
    for line, row in read_table(path, ORDER_COLUMNS, bad_rows):
        try:
            order = Order(
                order_id=_required(row, "order_id"),
                customer_id=row["customer_id"],
                status=_required(row, "order_status"),
                purchased=_time(row, "order_purchase_timestamp"),
                approved=_optional_time(row, "order_approved_at"),
                handed_to_carrier=_optional_time(row, "order_delivered_carrier_date"),
                delivered=_optional_time(row, "order_delivered_customer_date"),
                estimated_delivery=_time(row, "order_estimated_delivery_date").date(),
                line=line,
            )
            first = orders.get(order.order_id)
            if first is not None:
                raise BadRow(f"order_id {order.order_id} repeats line {first.line}")
        except BadRow as exc:
            bad_rows.append(f"{path}:{line}: {exc}")
            continue
        orders[order.order_id] = order
    return list(orders.values())


def read_items(path: Path, bad_rows: list[str]) -> dict[str, list[Item]]:
    """The order items table by order_id, without bad or repeated rows."""
    items: dict[str, list[Item]] = {}
    for line, row in read_table(path, ITEM_COLUMNS, bad_rows):
        try:
            item = Item(
                order_id=_required(row, "order_id"),
                number=_item_number(_required(row, "order_item_id")),
                product_id=_required(row, "product_id"),
                seller_id=_required(row, "seller_id"),
                shipping_limit=_time(row, "shipping_limit_date"),
                line=line,
            )
            siblings = items.setdefault(item.order_id, [])
            for sibling in siblings:
                if sibling.number == item.number:
                    raise BadRow(
                        f"item {item.number} of order {item.order_id} repeats line {sibling.line}"
                    )
        except BadRow as exc:
            bad_rows.append(f"{path}:{line}: {exc}")
            continue
        siblings.append(item)
    return items


MAX_ITEM_DIGITS = 9  # an order of a billion lines is no order


def _item_number(text: str) -> int:
    """A line number of an order: ASCII digits (isdigit() takes "²", which int()
    refuses), few enough for int() (it refuses 5,000)."""
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_ITEM_DIGITS) or int(text) < 1:
        raise BadRow(f"bad order_item_id: {text[:32]!r}")
    return int(text)


def read_seller_states(path: Path, bad_rows: list[str]) -> dict[str, str]:
    """seller_id -> seller_state, without bad or repeated rows."""
    states: dict[str, str] = {}
    first_lines: dict[str, int] = {}
    for line, row in read_table(path, SELLER_COLUMNS, bad_rows):
        try:
            seller_id = _required(row, "seller_id")
            state = _required(row, "seller_state")
            if seller_id in states:
                raise BadRow(f"seller_id {seller_id} repeats line {first_lines[seller_id]}")
        except BadRow as exc:
            bad_rows.append(f"{path}:{line}: {exc}")
            continue
        states[seller_id] = state
        first_lines[seller_id] = line
    return states


def order_events(order: Order, items: Sequence[Item], seller_state: str) -> list[Event]:
    """The events of an order with at least one item; `seller_state` is that of item 1."""
    order_id, fc = order.order_id, f"BR-{seller_state}"
    by_number = sorted(items, key=lambda item: item.number)
    placed: dict[str, Any] = {
        "order_id": order_id,
        "fc": fc,
        "region": seller_state,
        "lines": [{"sku": item.product_id, "qty": 1} for item in by_number],
        "promised_ship_by": _rfc3339(min(item.shipping_limit for item in items)),
        "promised_delivery_by": _rfc3339(
            datetime.combine(order.estimated_delivery, END_OF_DAY, BRAZIL)
        ),
    }
    if order.customer_id:
        placed["customer_id"] = order.customer_id
    events = [_event(order_id, "placed", order.purchased, placed)]
    if order.handed_to_carrier is not None:
        shipped = {"order_id": order_id, "fc": fc}
        events.append(_event(order_id, "shipped", order.handed_to_carrier, shipped))
    if order.delivered is not None:
        delivered = {"order_id": order_id, "status": "delivered"}
        events.append(_event(order_id, "delivered", order.delivered, delivered))
    if order.status in CANCELLED_STATUSES:
        known = (order.purchased, order.approved, order.handed_to_carrier, order.delivered)
        latest = max(moment for moment in known if moment is not None)
        cancelled = {"order_id": order_id, "reason": order.status}
        events.append(_event(order_id, "cancelled", latest, cancelled))
    return events


def _event(order_id: str, kind: str, moment: datetime, fields: dict[str, Any]) -> Event:
    payload = {
        "event_id": f"{order_id}:{kind}",
        "type": KINDS[kind],
        "ts": _rfc3339(moment),
        **fields,
    }
    return Event(moment, order_id, kind, payload)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat()  # e.g. 2017-10-02T10:56:33-03:00


def convert(directory: Path) -> Conversion:
    """Every importable order of an Olist directory as events sorted by event time."""
    bad_rows: list[str] = []
    orders = read_orders(directory / ORDERS_FILE, bad_rows)
    items_by_order = read_items(directory / ITEMS_FILE, bad_rows)
    seller_states = read_seller_states(directory / SELLERS_FILE, bad_rows)
    events: list[Event] = []
    imported = 0
    known = {order.order_id for order in orders}
    for order_id, unplaced in items_by_order.items():
        if order_id not in known:  # missing from the orders table, or its row was bad
            bad_rows.append(
                f"{directory / ITEMS_FILE}:{unplaced[0].line}: order {order_id} is not among "
                f"the orders read from {ORDERS_FILE}: its items are skipped"
            )
    for order in orders:
        items = items_by_order.get(order.order_id)
        if not items:
            continue
        first = next((item for item in items if item.number == 1), None)
        if first is None:
            bad_rows.append(
                f"{directory / ORDERS_FILE}:{order.line}: order {order.order_id} "
                f"has no item with order_item_id 1"
            )
            continue
        state = seller_states.get(first.seller_id)
        if state is None:
            bad_rows.append(
                f"{directory / ITEMS_FILE}:{first.line}: unknown seller_id {first.seller_id}"
            )
            continue
        events.extend(order_events(order, items, state))
        imported += 1
    events.sort(key=Event.sort_key)
    return Conversion(events, imported, bad_rows)


def write_events(events: Sequence[Event], out: TextIO) -> None:
    """JSON Lines, one event per line."""
    for event in events:
        out.write(json.dumps(event.payload, separators=(",", ":")))
        out.write("\n")


def command_import_olist(args: argparse.Namespace) -> int:
    """Convert an Olist directory; bad rows are reported and skipped, not fatal."""
    directory = Path(args.directory)
    try:
        if not directory.is_dir():
            problem = "not a directory" if directory.exists() else "no such directory"
            raise OlistError(f"cannot read {directory}: {problem}")
        out = None if args.out == "-" else Path(args.out)
        writable(out)
        distinct(
            {"--out": out},
            {
                "the orders file": directory / ORDERS_FILE,
                "the order items file": directory / ITEMS_FILE,
                "the sellers file": directory / SELLERS_FILE,
            },
        )
        conversion = convert(directory)
        for problem in conversion.bad_rows:
            say(problem)
        if args.out == "-":
            try:
                write_events(conversion.events, sys.stdout)
                sys.stdout.flush()
            except OSError as exc:
                raise OlistError(f"cannot write to stdout: {exc.strerror or exc}") from None
        else:
            _write_file(conversion.events, Path(args.out))
    except (OlistError, CliError) as exc:
        say(f"opscockpit: error: {exc}")
        return 1
    if conversion.bad_rows:
        say(f"opscockpit: skipped {len(conversion.bad_rows):,} bad rows")
    destination = "stdout" if args.out == "-" else args.out
    say(
        f"opscockpit: wrote {len(conversion.events):,} events of {conversion.orders:,} "
        f"orders to {destination}"
    )
    return 0


def _write_file(events: Sequence[Event], path: Path) -> None:
    try:
        with path.open("w", encoding="utf-8") as out:
            write_events(events, out)
    except OSError as exc:
        raise OlistError(f"cannot write {path}: {exc.strerror or exc}") from None


def add_import_command(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register `import olist DIR --out FILE` on the CLI's subcommands."""
    importer = subparsers.add_parser(
        "import",
        help="convert a public dataset into TPS events",
        description="Convert a public dataset into TPS events (JSON Lines sorted by event "
        "time, ready for `opscockpit replay`).",
    )
    sources = importer.add_subparsers(dest="source", required=True, metavar="SOURCE")
    olist = sources.add_parser(
        "olist",
        help="the Olist Brazilian e-commerce orders (Kaggle olistbr/brazilian-ecommerce)",
        description="Convert the Olist orders, order items and sellers CSV files of DIR into "
        "order events. Times are read as UTC-03:00. Bad rows are reported on "
        "stderr with their file and line, and skipped.",
    )
    olist.add_argument(
        "directory", type=named, metavar="DIR", help="directory with the Olist CSV files"
    )
    olist.add_argument(
        "--out", type=named, required=True, help="JSON Lines file to write, or - for stdout"
    )
    olist.set_defaults(handler=command_import_olist)
