"""Issue 7: `opscockpit import olist`, on tiny CSVs and end to end on the real sample.

The real-data tests recompute delivery and ship-SLA figures straight from the
CSVs (without flows.olist) and require the replayed metrics to match them exactly.
The sample is CC BY-NC-SA, so it stays outside the repository (OLIST_DIR).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flows.cli import main
from flows.decode import Reject, decode
from flows.exposition import render
from flows.olist import convert
from flows.replay import replay
from flows.settings import Settings
from flows.timeutil import parse_time

OLIST_DIR = Path(os.environ.get("OLIST_DIR", "/work/shared/data/olist"))

ORDERS_HEADER = (
    "order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,"
    "order_delivered_carrier_date,order_delivered_customer_date,order_estimated_delivery_date"
)
ITEMS_HEADER = "order_id,order_item_id,product_id,seller_id,shipping_limit_date,price,freight_value"
SELLERS_HEADER = '"seller_id","seller_zip_code_prefix","seller_city","seller_state"'
SELLERS = ['"s-sp","01000",sao paulo,SP', 's-pr,"80000",curitiba,PR']


def olist_dir(
    tmp_path: Path, orders: list[str], items: list[str], sellers: list[str] = SELLERS
) -> Path:
    """A directory with the three Olist tables, given as CSV lines without the header."""
    tmp_path.mkdir(exist_ok=True)
    for name, header, rows in (
        ("olist_orders_dataset.csv", ORDERS_HEADER, orders),
        ("olist_order_items_dataset.csv", ITEMS_HEADER, items),
        ("olist_sellers_dataset.csv", SELLERS_HEADER, sellers),
    ):
        (tmp_path / name).write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return tmp_path


def item(order_id: str, number: int, product: str, seller: str, limit: str) -> str:
    return f"{order_id},{number},{product},{seller},{limit},10.00,2.00"


def payloads(directory: Path) -> list[dict[str, object]]:
    return [event.payload for event in convert(directory).events]


def run_import(*argv: str) -> int:
    """`opscockpit import olist ARGV`, through the real command line."""
    return main(["import", "olist", *argv])


# --- the mapping, on tiny CSVs


def test_an_order_becomes_placed_shipped_and_delivered(tmp_path):
    directory = olist_dir(
        tmp_path,
        [
            "o1,c1,delivered,2018-03-01 10:00:00,2018-03-01 10:15:00,2018-03-02 16:00:00,"
            "2018-03-06 11:30:00,2018-03-10 00:00:00"
        ],
        # Item 2 comes first and has the earlier limit; item 1's seller decides the fc.
        [
            item("o1", 2, "p2", "s-sp", "2018-03-04 09:00:00"),
            item("o1", 1, "p1", "s-pr", "2018-03-05 09:00:00"),
        ],
    )
    assert payloads(directory) == [
        {
            "event_id": "o1:placed",
            "type": "order.placed",
            "ts": "2018-03-01T10:00:00-03:00",
            "order_id": "o1",
            "fc": "BR-PR",
            "region": "PR",
            "lines": [{"sku": "p1", "qty": 1}, {"sku": "p2", "qty": 1}],
            "promised_ship_by": "2018-03-04T09:00:00-03:00",
            "promised_delivery_by": "2018-03-10T23:59:59-03:00",
            "customer_id": "c1",
        },
        {
            "event_id": "o1:shipped",
            "type": "order.shipped",
            "ts": "2018-03-02T16:00:00-03:00",
            "order_id": "o1",
            "fc": "BR-PR",
        },
        {
            "event_id": "o1:delivered",
            "type": "delivery.updated",
            "ts": "2018-03-06T11:30:00-03:00",
            "order_id": "o1",
            "status": "delivered",
        },
    ]


def test_times_are_brazilian_local_time_at_utc_minus_three(tmp_path):
    directory = olist_dir(
        tmp_path,
        ["o1,c1,processing,2018-03-01 22:30:00,,,,2018-03-10 00:00:00"],
        [item("o1", 1, "p1", "s-sp", "2018-03-03 21:00:00")],
    )
    [placed] = payloads(directory)
    assert parse_time(placed["ts"]) == parse_time("2018-03-02T01:30:00Z")
    assert parse_time(placed["promised_ship_by"]) == parse_time("2018-03-04T00:00:00Z")
    # The estimated delivery date is promised until the end of that (local) day.
    assert parse_time(placed["promised_delivery_by"]) == parse_time("2018-03-11T02:59:59Z")


@pytest.mark.parametrize("status", ["canceled", "unavailable"])
def test_a_cancelled_order_is_cancelled_at_its_latest_known_time(tmp_path, status):
    # The carrier hand-off is recorded before the approval, as happens in the real data.
    directory = olist_dir(
        tmp_path,
        [
            f"o1,c1,{status},2018-03-01 10:00:00,2018-03-02 12:00:00,2018-03-02 08:00:00,,"
            "2018-03-10 00:00:00"
        ],
        [item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")],
    )
    events = payloads(directory)
    assert [(e["event_id"], e["ts"]) for e in events] == [
        ("o1:placed", "2018-03-01T10:00:00-03:00"),
        ("o1:shipped", "2018-03-02T08:00:00-03:00"),
        ("o1:cancelled", "2018-03-02T12:00:00-03:00"),
    ]
    assert events[-1] == {
        "event_id": "o1:cancelled",
        "type": "order.cancelled",
        "ts": "2018-03-02T12:00:00-03:00",
        "order_id": "o1",
        "reason": status,
    }


def test_an_order_cancelled_with_only_a_purchase_time_is_cancelled_then(tmp_path):
    directory = olist_dir(
        tmp_path,
        ["o1,c1,canceled,2018-03-01 10:00:00,,,,2018-03-10 00:00:00"],
        [item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")],
    )
    assert [(e["event_id"], e["ts"]) for e in payloads(directory)] == [
        ("o1:placed", "2018-03-01T10:00:00-03:00"),
        ("o1:cancelled", "2018-03-01T10:00:00-03:00"),
    ]


def test_without_a_carrier_date_there_is_no_shipment(tmp_path):
    directory = olist_dir(
        tmp_path,
        [
            "o1,c1,delivered,2018-03-01 10:00:00,2018-03-01 10:15:00,,2018-03-06 11:30:00,"
            "2018-03-10 00:00:00"
        ],
        [item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")],
    )
    assert [e["event_id"] for e in payloads(directory)] == ["o1:placed", "o1:delivered"]


def test_orders_without_items_are_not_imported(tmp_path):
    directory = olist_dir(
        tmp_path,
        [
            "o1,c1,unavailable,2018-03-01 10:00:00,2018-03-01 10:15:00,,,2018-03-10 00:00:00",
            "o2,c2,created,2018-03-01 11:00:00,,,,2018-03-10 00:00:00",
        ],
        [item("o2", 1, "p1", "s-sp", "2018-03-05 09:00:00")],
    )
    conversion = convert(directory)
    assert [e.payload["event_id"] for e in conversion.events] == ["o2:placed"]
    assert conversion.orders == 1
    assert conversion.bad_rows == []


def test_events_are_sorted_by_time_then_order_then_kind(tmp_path):
    directory = olist_dir(
        tmp_path,
        [
            "o3,c3,delivered,2018-03-02 09:00:00,,2018-03-03 10:00:00,2018-03-04 10:00:00,"
            "2018-03-10 00:00:00",
            "o2,c2,unavailable,2018-03-01 10:00:00,,,,2018-03-10 00:00:00",
            "o1,c1,delivered,2018-03-01 10:00:00,,2018-03-03 10:00:00,2018-03-03 10:00:00,"
            "2018-03-10 00:00:00",
        ],
        [item(order_id, 1, "p1", "s-sp", "2018-03-05 09:00:00") for order_id in ("o1", "o2", "o3")],
    )
    assert [e["event_id"] for e in payloads(directory)] == [
        "o1:placed",
        "o2:placed",
        "o2:cancelled",  # 03-01 10:00
        "o3:placed",  # 03-02 09:00
        "o1:shipped",
        "o1:delivered",
        "o3:shipped",  # 03-03 10:00
        "o3:delivered",
    ]


GOOD_ORDER = "2018-03-01 10:00:00,,,,2018-03-10 00:00:00"


def bad_input(tmp_path: Path) -> Path:
    return olist_dir(
        tmp_path,
        [
            f"o1,c1,created,{GOOD_ORDER}",  # line 2
            "o2,c2,created,,,,,2018-03-10 00:00:00",  # line 3: no purchase time
            "o3,c3,created,2018-03-01 10:00:00,,,,2018-02-30 00:00:00",  # line 4: no such day
            'o4,"two',  # lines 5-6: a quoted line break, then a good order
            f'lines",created,{GOOD_ORDER}',
            "o5,c5,created",  # line 7: too few fields
            f"o1,c9,created,{GOOD_ORDER}",  # line 8: repeated order
            f"o6,c6,created,{GOOD_ORDER}",  # line 9: has no item 1
            f"o7,c7,created,{GOOD_ORDER}",  # line 10: item 1 has an unknown seller
            f",c8,created,{GOOD_ORDER}",  # line 11: no order_id
            "o9,c9,created,2018-03-01T10:00:00Z,,,,2018-03-10 00:00:00",
        ],  # line 12: not Olist
        [
            item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00"),  # line 2
            item("o1", 2, "p2", "s-sp", "tomorrow"),  # line 3
            item("o4", 1, "p1", "s-sp", "2018-03-05 09:00:00"),  # line 4
            item("o4", 1, "p9", "s-sp", "2018-03-05 09:00:00"),  # line 5: repeated item
            item("o6", 2, "p1", "s-sp", "2018-03-05 09:00:00"),  # line 6
            item("o7", 1, "p1", "s-zz", "2018-03-05 09:00:00"),  # line 7
            item("o1", 0, "p1", "s-sp", "2018-03-05 09:00:00"),
        ],  # line 8: items count from 1
        [*SELLERS, "s-xx,12345,nowhere,"],  # line 4: no state
    )


def test_bad_rows_are_reported_with_file_and_line_and_skipped(tmp_path):
    directory = bad_input(tmp_path)
    conversion = convert(directory)
    orders = directory / "olist_orders_dataset.csv"
    items = directory / "olist_order_items_dataset.csv"
    sellers = directory / "olist_sellers_dataset.csv"
    assert conversion.bad_rows == [
        f"{orders}:3: missing order_purchase_timestamp",
        f"{orders}:4: bad order_estimated_delivery_date: day is out of range for month",
        f"{orders}:7: 3 fields, expected 8",
        f"{orders}:8: order_id o1 repeats line 2",
        f"{orders}:11: missing order_id",
        f"{orders}:12: bad order_purchase_timestamp: not a time of the form "
        "YYYY-MM-DD HH:MM:SS: '2018-03-01T10:00:00Z'",
        f"{items}:3: bad shipping_limit_date: not a time of the form YYYY-MM-DD HH:MM:SS: "
        "'tomorrow'",
        f"{items}:5: item 1 of order o4 repeats line 4",
        f"{items}:8: bad order_item_id: '0'",
        f"{sellers}:4: missing seller_state",
        f"{orders}:9: order o6 has no item with order_item_id 1",
        f"{items}:7: unknown seller_id s-zz",
    ]
    placed = [e.payload for e in conversion.events]
    assert [(e["order_id"], e["customer_id"], e["lines"]) for e in placed] == [
        ("o1", "c1", [{"sku": "p1", "qty": 1}]),
        ("o4", "two\nlines", [{"sku": "p1", "qty": 1}]),
    ]


def test_items_of_an_order_not_in_the_orders_table_are_reported(tmp_path):
    """They were dropped without a word (those of a bad order row are named too)."""
    directory = olist_dir(
        tmp_path,
        [f"o1,c1,created,{GOOD_ORDER}"],
        [
            item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00"),
            item("o8", 1, "p1", "s-sp", "2018-03-05 09:00:00"),
            item("o8", 2, "p1", "s-sp", "2018-03-05 09:00:00"),
        ],
    )
    conversion = convert(directory)
    assert conversion.bad_rows == [
        f"{directory / 'olist_order_items_dataset.csv'}:3: order o8 is not among the orders "
        "read from olist_orders_dataset.csv: its items are skipped"
    ]
    assert conversion.orders == 1


def test_the_command_reports_bad_rows_and_counts_them(tmp_path, capsys):
    out = tmp_path / "events.jsonl"
    assert run_import(str(bad_input(tmp_path)), "--out", str(out)) == 0
    report = capsys.readouterr().err.splitlines()
    assert len(report) == 14
    assert report[0].endswith("olist_orders_dataset.csv:3: missing order_purchase_timestamp")
    assert report[-2:] == [
        "opscockpit: skipped 12 bad rows",
        f"opscockpit: wrote 2 events of 2 orders to {out}",
    ]
    assert len(out.read_text().splitlines()) == 2


def test_a_row_that_is_not_utf8_is_a_bad_row(tmp_path):
    directory = olist_dir(
        tmp_path,
        [f"o1,c1,created,{GOOD_ORDER}", f"o2,c2,created,{GOOD_ORDER}"],
        [
            item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00"),
            item("o2", 1, "p1", "s-sp", "2018-03-05 09:00:00"),
        ],
    )
    orders = directory / "olist_orders_dataset.csv"
    orders.write_bytes(orders.read_bytes().replace(b"c2", b"c\xff"))
    conversion = convert(directory)
    assert conversion.bad_rows == [
        f"{orders}:3: not UTF-8",
        f"{directory / 'olist_order_items_dataset.csv'}:3: order o2 is not among the orders "
        "read from olist_orders_dataset.csv: its items are skipped",
    ]
    assert [e.payload["order_id"] for e in conversion.events] == ["o1"]


# --- the command


def test_the_command_writes_valid_events_to_a_file_or_stdout(tmp_path, capsys):
    directory = olist_dir(
        tmp_path,
        [
            "o1,c1,delivered,2018-03-01 10:00:00,2018-03-01 10:15:00,2018-03-02 16:00:00,"
            "2018-03-06 11:30:00,2018-03-10 00:00:00",
            "o2,c2,canceled,2018-03-01 09:00:00,,,,2018-03-10 00:00:00",
        ],
        [
            item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00"),
            item("o2", 1, "p1", "s-pr", "2018-03-05 09:00:00"),
        ],
    )
    out = tmp_path / "events.jsonl"
    assert run_import(str(directory), "--out", str(out)) == 0
    assert capsys.readouterr().err == f"opscockpit: wrote 5 events of 2 orders to {out}\n"
    assert run_import(str(directory), "--out", "-") == 0
    captured = capsys.readouterr()
    assert captured.out == out.read_text()
    assert captured.err == "opscockpit: wrote 5 events of 2 orders to stdout\n"
    lines = out.read_bytes().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [
        "o2:placed",
        "o2:cancelled",
        "o1:placed",
        "o1:shipped",
        "o1:delivered",
    ]
    assert not [decoded for decoded in map(decode, lines) if isinstance(decoded, Reject)]


def broken(directory: Path, how: str) -> Path:
    """The directory argument after breaking the Olist directory `how`."""
    if how == "absent directory":
        return directory / "absent"
    if how == "a file, not a directory":
        return directory / "olist_orders_dataset.csv"
    if how == "absent file":
        (directory / "olist_sellers_dataset.csv").unlink()
    elif how == "missing columns":
        (directory / "olist_order_items_dataset.csv").write_text("order_id,price\n")
    elif how == "empty file":
        (directory / "olist_orders_dataset.csv").write_text("")
    elif how == "a column twice":
        items = directory / "olist_order_items_dataset.csv"
        header, rest = items.read_text().split("\n", 1)
        items.write_text(f"{header},order_id\n{rest}")
    return directory


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("absent directory", "cannot read {d}/absent: no such directory"),
        ("a file, not a directory", "cannot read {d}/olist_orders_dataset.csv: not a directory"),
        ("absent file", "cannot read {d}/olist_sellers_dataset.csv: no such file"),
        (
            "missing columns",
            "{d}/olist_order_items_dataset.csv: missing column(s) "
            "order_item_id, product_id, seller_id, shipping_limit_date",
        ),
        (
            "a column twice",
            "{d}/olist_order_items_dataset.csv: column(s) order_id more than once",
        ),
        (
            "empty file",
            "{d}/olist_orders_dataset.csv: missing column(s) order_id, customer_id, "
            "order_status, order_purchase_timestamp, order_approved_at, "
            "order_delivered_carrier_date, order_delivered_customer_date, "
            "order_estimated_delivery_date",
        ),
    ],
)
def test_unusable_input_is_a_one_line_error_and_writes_nothing(tmp_path, capsys, how, message):
    directory = olist_dir(
        tmp_path / "olist",
        [f"o1,c1,created,{GOOD_ORDER}"],
        [item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")],
    )
    out = tmp_path / "events.jsonl"
    assert run_import(str(broken(directory, how)), "--out", str(out)) == 1
    assert capsys.readouterr().err == f"opscockpit: error: {message.format(d=directory)}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("absent/events.jsonl", "no directory {out.parent}"),
        (".", "is a directory"),
        ("link", "No such file or directory"),  # to a file in no directory
    ],
)
def test_an_unwritable_output_is_a_one_line_error_before_any_reading(
    tmp_path, capsys, where, problem
):
    """Checked first, as replay's outputs are: the bad row below would be reported
    had the files been read."""
    first = item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")
    bad = first.replace("o1,1,", "o1,x,", 1)
    directory = olist_dir(tmp_path, [f"o1,c1,created,{GOOD_ORDER}"], [first, bad])
    out = tmp_path / where
    (tmp_path / "link").symlink_to(tmp_path / "absent" / "events.jsonl")
    assert run_import(str(directory), "--out", str(out)) == 1
    expected = f"opscockpit: error: cannot write {out}: {problem.format(out=out)}\n"
    assert capsys.readouterr().err == expected


@pytest.mark.parametrize("name", ["olist_orders_dataset.csv", "olist_sellers_dataset.csv"])
def test_an_output_naming_a_file_it_reads_is_refused(tmp_path, capsys, name):
    """It was read, then written over with JSON Lines, and the import exited 0."""
    directory = olist_dir(
        tmp_path, [f"o1,c1,created,{GOOD_ORDER}"], [item("o1", 1, "p1", "s-sp", GOOD_ORDER[:19])]
    )
    before = (directory / name).read_bytes()
    assert run_import(str(directory), "--out", str(directory / name)) == 1
    what = "the orders file" if "orders" in name else "the sellers file"
    written_over = f"{directory / name}: it would be written over"
    assert capsys.readouterr().err == f"opscockpit: error: --out names {what}, {written_over}\n"
    assert (directory / name).read_bytes() == before


def test_a_file_that_fails_to_read_is_a_one_line_error(tmp_path, capsys):
    """Opened, then a read fails (/proc/self/mem at offset 0: EIO): a traceback before."""
    directory = olist_dir(tmp_path, [f"o1,c1,created,{GOOD_ORDER}"], [])
    items = directory / "olist_order_items_dataset.csv"
    items.unlink()
    items.symlink_to("/proc/self/mem")
    assert run_import(str(directory), "--out", str(tmp_path / "out.jsonl")) == 1
    error = capsys.readouterr().err
    assert error == f"opscockpit: error: cannot read {items}: Input/output error\n"


@pytest.mark.parametrize("number", ["\u00b2", "\u0663", "9" * 5000, "0001234567890"])
def test_an_item_number_int_cannot_read_or_too_long_is_a_bad_row(tmp_path, number):
    """isdigit() takes a superscript two or an Arabic-Indic three, which int()
    refuses; 5,000 digits pass Python's int limit. Each is a bad row, not a crash."""
    first = item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")
    odd = first.replace("o1,1,", f"o1,{number},", 1)
    directory = olist_dir(tmp_path, [f"o1,c1,created,{GOOD_ORDER}"], [first, odd])
    (problem,) = convert(directory).bad_rows
    assert problem.startswith(f"{directory / 'olist_order_items_dataset.csv'}:3: bad order_item_id")


def test_stdout_that_cannot_be_written_is_a_one_line_error(tmp_path):
    directory = olist_dir(
        tmp_path,
        [f"o1,c1,created,{GOOD_ORDER}"],
        [item("o1", 1, "p1", "s-sp", "2018-03-05 09:00:00")],
    )
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "flows", "import", "olist", str(directory), "--out", "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == "opscockpit: error: cannot write to stdout: No space left on device\n"


def test_the_command_needs_out(capsys):
    assert run_import("somewhere") == 2
    assert "the following arguments are required: --out" in capsys.readouterr().err


# --- the real sample, checked against figures computed straight from its CSVs


@dataclass
class Expected:
    """What the replay must show, computed from the CSVs by the mapping's definitions."""

    events: int
    orders: int
    deliveries: Counter[tuple[str, str]]  # (region, on_time)
    late_deliveries: Counter[tuple[str]]  # (region,)
    shipped: Counter[tuple[str, str]]  # (fc, on_time)
    breaches: Counter[tuple[str]]  # (fc,)
    ship_outcomes_known: int


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def expected_from_csv(directory: Path) -> Expected:
    """Every time in the data has the same offset, so naive local times compare exactly."""

    def local(text: str) -> datetime | None:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S") if text else None

    seller_state = {
        row["seller_id"]: row["seller_state"]
        for row in read_csv(directory / "olist_sellers_dataset.csv")
    }
    shipping_limits: dict[str, list[datetime]] = defaultdict(list)
    state_of_order: dict[str, str] = {}
    for row in read_csv(directory / "olist_order_items_dataset.csv"):
        shipping_limits[row["order_id"]].append(local(row["shipping_limit_date"]))
        if row["order_item_id"] == "1":
            state_of_order[row["order_id"]] = seller_state[row["seller_id"]]

    orders = []
    for row in read_csv(directory / "olist_orders_dataset.csv"):
        order_id = row["order_id"]
        if order_id not in shipping_limits:
            continue
        placed = local(row["order_purchase_timestamp"])
        shipped = local(row["order_delivered_carrier_date"])
        delivered = local(row["order_delivered_customer_date"])
        cancelled = None
        if row["order_status"] in ("canceled", "unavailable"):
            known = [placed, local(row["order_approved_at"]), shipped, delivered]
            cancelled = max(moment for moment in known if moment is not None)
        orders.append(
            {
                "state": state_of_order[order_id],
                "ship_by": min(shipping_limits[order_id]),
                "deliver_by": local(row["order_estimated_delivery_date"][:10] + " 23:59:59"),
                "times": (placed, shipped, delivered, cancelled),
            }
        )

    # At the end of a replay the watermark is the latest event time.
    all_times = [moment for order in orders for moment in order["times"] if moment is not None]
    end = max(all_times)
    expected = Expected(len(all_times), len(orders), Counter(), Counter(), Counter(), Counter(), 0)
    for order in orders:
        state, fc = order["state"], "BR-" + order["state"]
        _, shipped, delivered, cancelled = order["times"]
        ship_by, deliver_by = order["ship_by"], order["deliver_by"]
        if delivered is not None:
            expected.deliveries[state, str(delivered <= deliver_by).lower()] += 1
        delivery_settled = min((t for t in (delivered, cancelled) if t), default=None)
        if end > deliver_by and (delivery_settled is None or delivery_settled > deliver_by):
            expected.late_deliveries[(state,)] += 1
        if shipped is not None:
            expected.shipped[fc, str(shipped <= ship_by).lower()] += 1
        ship_settled = min((t for t in (shipped, cancelled) if t), default=None)
        settled_in_time = ship_settled is not None and ship_settled <= ship_by
        if end > ship_by and not settled_in_time:
            expected.breaches[(fc,)] += 1
        if end > ship_by or settled_in_time:
            expected.ship_outcomes_known += 1
    return expected


Series = dict[str, dict[tuple[str, ...], int]]


@dataclass
class RealRun:
    lines: list[bytes]
    metrics: Series
    expected: Expected


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> RealRun:
    if not OLIST_DIR.is_dir():
        pytest.skip(f"the Olist sample is not at {OLIST_DIR} (set OLIST_DIR to its directory)")
    out = tmp_path_factory.mktemp("olist") / "olist.jsonl"
    assert run_import(str(OLIST_DIR), "--out", str(out)) == 0
    board = replay(Settings(), str(out))
    return RealRun(
        out.read_bytes().splitlines(), metric_series(render(board)), expected_from_csv(OLIST_DIR)
    )


def metric_series(exposition: bytes) -> Series:
    """{sample name: {label values in label-name order: value}}, without zero series."""
    series: Series = defaultdict(dict)
    for family in text_string_to_metric_families(exposition.decode()):
        for sample in family.samples:
            if sample.value:
                labels = tuple(value for _, value in sorted(sample.labels.items()))
                series[sample.name][labels] = int(sample.value)
    return series


def total(series: dict[tuple[str, ...], int]) -> int:
    return sum(series.values())


def test_the_real_sample_imports_into_sorted_valid_events(real_run):
    expected = real_run.expected
    assert len(real_run.lines) == expected.events
    times = []
    for line in real_run.lines:
        event = decode(line)
        assert not isinstance(event, Reject), event
        times.append(parse_time(json.loads(line)["ts"]))
    assert times == sorted(times)
    metrics = real_run.metrics
    assert total(metrics["cockpit_events_total"]) == expected.events
    assert metrics["cockpit_events_total"][("order.placed",)] == expected.orders
    for ignored in ("rejected", "duplicate", "late"):
        assert not metrics[f"cockpit_events_{ignored}_total"]
    assert not metrics["cockpit_orphan_events_total"]


def test_real_deliveries_match_the_csv(real_run):
    metrics, expected = real_run.metrics, real_run.expected
    # Labels in name order: (on_time, region).
    deliveries = {
        (region, on_time): count
        for (on_time, region), count in metrics["cockpit_deliveries_total"].items()
    }
    assert deliveries == dict(expected.deliveries)
    assert metrics["cockpit_late_deliveries_total"] == dict(expected.late_deliveries)
    delivered = total(metrics["cockpit_deliveries_total"])
    late = sum(
        count
        for (on_time, _), count in metrics["cockpit_deliveries_total"].items()
        if on_time == "false"
    )
    # Late means delivered after the estimated date (its README: about 6.6%; 6.4% here).
    assert 0.06 < late / delivered < 0.07


def test_real_ship_sla_matches_the_csv(real_run):
    metrics, expected = real_run.metrics, real_run.expected
    shipped = {
        (fc, on_time): count
        for (fc, on_time), count in metrics["cockpit_orders_shipped_total"].items()
    }
    assert shipped == dict(expected.shipped)
    assert metrics["cockpit_ship_sla_breaches_total"] == dict(expected.breaches)
    # Orders whose ship outcome is not known yet: awaiting shipment, promise not passed.
    pending = total(metrics["cockpit_orders_awaiting_shipment"]) - total(
        metrics["cockpit_orders_past_ship_promise"]
    )
    known = metrics["cockpit_events_total"][("order.placed",)] - pending
    assert known == expected.ship_outcomes_known
    compliance = 1 - total(metrics["cockpit_ship_sla_breaches_total"]) / known
    assert 0.85 < compliance < 0.95
