"""The wall display in a real browser (headless Chromium) on `opscockpit run`: it
shows the live cockpit within 30 s, its figures are the ones /metrics and the API
give, coloured as the alert rules fire, they change as events arrive, nothing goes
wrong in the console, and it fits wall screens from 1280x720 to 4K and a phone."""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from selenium import webdriver

from flows.exposition import Board
from flows.ledger import Ledger
from flows.metrics import METRICS
from flows.runtime.pipeline import SHARD_METRICS, SOURCE_METRICS
from flows.web.figures import TILES
from flows.web.server import Server, serve
from tests.browser import (
    PHONE,
    WALL,
    WALLS,
    backfilled,
    chromium,
    has_data,
    missing,
    page_time,
    shown,
    viewport,
)
from tests.kafka_broker import free_port, unique
from tests.processes import (
    WaitFailed,
    cockpit,
    events_read,
    opscockpit,
    progress_at,
    wait_for,
)
from tests.reference import parse_exposition
from tests.test_web_security import PASSWORD, USER, certs, web_config  # noqa: F401 (fixture)
from tests.web import api, expected_figures, fetch, figure_differences

# Figures with a value at once on the simulator (the lead's families come later).
LIVE = ("ship_sla_compliance", "orders_past_ship_promise", "late_deliveries", "dock_to_stock_p90")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    problem = missing()
    if problem:
        pytest.skip(problem)
    with chromium(tmp_path / "profile") as driver:
        yield driver


# Figures the page shows as values, data or not; a stages tile shows its backlog's
# cells once it has series (STAGED), and marks bottlenecks in them.
SHOWN = {figure for tile in TILES if tile.kind != "stages" for figure in tile.figures}
STAGED = "stage_backlog"


def console_errors(driver: webdriver.Chrome) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def differences(page: list[dict[str, Any]], summary: dict[str, Any]) -> list[str]:
    """Where the page's figures differ from the summary's: number, colour and text,
    and a figure the page must show that it does not."""
    figures = {f["id"]: f for f in summary["figures"]}
    out = [f"{name}: not on the page" for name in SHOWN - {v["figure"] for v in page}]
    for value in page:
        figure = figures[value["figure"]]
        rows = {"": figure} | {"|".join(row["key"]): row for row in figure["by"]}
        row = rows.get(value["key"])
        if row is None:  # a cell of a table with no series
            if value["value"] != "":
                out.append(f"{value}: no such series")
            continue
        number = None if value["value"] == "" else float(value["value"])
        ranged = "range" in value["classes"] and row["value"] is None  # a ratio per fc
        if number != row["value"] and not ranged:
            out.append(f"{value['figure']} {value['key']!r}: page {number} != api {row['value']}")
        if (number is not None or ranged) and value["status"] != row["status"]:
            out.append(f"{value['figure']} {value['key']!r}: colour {value['status']}")
        if (number is not None or ranged) and value["status"] != "none":
            assert value["status"] in value["classes"], value
        out.extend(text_differences(value, figure["unit"], number))
    return out + order_differences(page, figures)


RANK = {"critical": 0, "warning": 1, "ok": 2, "none": 3}


def order_differences(page: list[dict[str, Any]], figures: dict[str, Any]) -> list[str]:
    """A breakdown lists its rows worst first (then cuts it to fit): by colour, then
    by value the worse way. (The SKUs tile listed its fcs alphabetically.)"""
    out = []
    for name, figure in figures.items():
        worse = figure["higher_is_worse"]
        rows = [v for v in page if v["figure"] == name and v["key"] and v["value"] != ""]
        if worse is None or any("|" in v["key"] for v in rows):  # none, or a table
            continue
        ranks = [(RANK[v["status"]], (-1 if worse else 1) * float(v["value"])) for v in rows]
        if ranks != sorted(ranks):
            out.append(f"{name}: not worst first: {[(v['key'], v['value']) for v in rows]}")
    return out


def text_differences(value: dict[str, Any], unit: str, number: float | None) -> list[str]:
    """The shown text of a ratio or a count is the number, rounded as the page says."""
    if number is None:
        return [] if value["text"] == "no data yet" or "range" in value["classes"] else [str(value)]
    text = value["text"].removesuffix(" ▲")
    if unit == "ratio" and text != f"{number * 100:,.1f}%":
        return [f"{value['figure']}: {text} for {number}"]
    if unit == "count" and number == int(number) and text != f"{number:,.0f}":
        return [f"{value['figure']}: {text} for {number}"]
    return []


def layout_problems(driver: webdriver.Chrome, size: tuple[int, int]) -> list[str]:
    """Once the page is drawn at `size`: text cut off or overflowing (on a phone, a
    caption or list row cut short too), a figure hidden (outside its tile's box,
    which clips), a table or list emptied to its "and N more", tiles overlapping, a
    page wider than the screen."""
    drawn = page_time(driver)
    viewport(driver, size)
    wait_for(lambda: driver.execute_script("return window.innerWidth") == size[0], 10, "resize")
    wait_for(lambda: page_time(driver) > drawn, 30, "the page drawn at its new size")
    problems = driver.execute_script(
        """const out = [];
        const root = document.documentElement;
        if (root.scrollWidth > innerWidth) out.push(`page ${root.scrollWidth}px wide`);
        const tiles = [...document.querySelectorAll('.tile')].map(t => t.getBoundingClientRect());
        tiles.forEach((a, i) => tiles.slice(i + 1).forEach(b => {
          if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
            out.push(`tiles ${i} and another overlap`); }));
        for (const tile of document.querySelectorAll('.tile'))
          if (tile.scrollHeight > tile.clientHeight + 1)
            out.push(`${tile.querySelector('h2').textContent}: content cut off below`);
        for (const e of document.querySelectorAll('[data-figure], h2, .caption, .label, .scale *'))
          if (e.scrollWidth > e.clientWidth + 1) out.push(`cut off: ${e.textContent}`);
        if (innerWidth < 760)  // a phone scrolls: no caption, list row or status is cut short
          for (const e of document.querySelectorAll('.caption, ul.list li, .said > span'))
            if (e.scrollHeight > e.clientHeight + 1 || e.scrollWidth > e.clientWidth + 1)
              out.push(`cut short: ${e.textContent}`);
        for (const e of document.querySelectorAll('[data-figure], .scale :not(:empty)')) {
          const tile = e.closest('.tile');
          const box = tile.getBoundingClientRect();
          const top = box.top + tile.clientTop, left = box.left + tile.clientLeft;
          const r = e.getBoundingClientRect();
          if (!r.width || !r.height || r.top < top - 1 || r.left < left - 1 ||
              r.bottom > top + tile.clientHeight + 1 || r.right > left + tile.clientWidth + 1)
            out.push(`hidden: ${e.dataset.figure} ${e.dataset.key} ${e.textContent}`);
        }
        for (const list of document.querySelectorAll('[data-total]'))
          if (Number(list.dataset.total) > 0 && !list.querySelector('.row'))
            out.push(`emptied: ${list.closest('.tile').querySelector('h2').textContent}`);
        return out;"""
    )
    return list(problems)


def page_height(driver: webdriver.Chrome) -> int:
    return int(driver.execute_script("return document.documentElement.scrollHeight"))


def test_the_cockpit_is_live_in_the_browser_within_30_seconds(browser, tmp_path):
    """`make run`: the embedded simulator, a browser at /, live figures in 30 s that are
    those of /metrics (each compared while its inputs stood still), changing live."""
    started = time.monotonic()
    with cockpit(ready_timeout=30) as running:
        base = f"http://127.0.0.1:{running.port}"
        browser.get(base + "/")

        def live() -> dict[str, Any] | None:
            page = {v["figure"]: v for v in shown(browser) if v["key"] == ""}
            return page if page and all(page[name]["value"] for name in LIVE) else None

        page = wait_for(live, 30 - (time.monotonic() - started), f"{LIVE} on the page")
        assert time.monotonic() - started < 30
        assert {v["figure"] for v in shown(browser)} >= SHOWN | {STAGED}
        checked: set[str] = set()

        def twelve_still() -> bool:
            checked.update(compare_while_still(browser, base))
            return len(checked) >= 12

        try:
            what = "12 figures to stand still and be compared"
            wait_for(twelve_still, 90, what, every=0, progress=lambda: len(checked))
        except WaitFailed as failure:
            only = f"only {sorted(checked)} stood still long enough"
            raise AssertionError(f"{only}: {failure}") from None
        events = page["events"]["value"]
        wait_for(
            lambda: next(v for v in shown(browser) if v["figure"] == "events")["value"] != events,
            30,
            "the page to count live events",
        )
        for size in (WALL, PHONE):
            assert layout_problems(browser, size) == [], size
            browser.save_screenshot(str(tmp_path / f"page-{size[0]}x{size[1]}.png"))
            assert size != WALL or page_height(browser) <= WALL[1], "the wall scrolls"
        assert console_errors(browser) == []


def test_every_figure_shows_whole_on_every_wall_screen(browser, tmp_path):
    """Laptops, a browser window on a 1920x1080 screen, 4K: the wall fits each without
    scrolling and hides no figure. Where the figures cannot fit (lines this high on
    a 1920x1080 screen), the page scrolls rather than cut one off."""
    with cockpit(ready_timeout=30) as running:
        viewport(browser, WALL)
        backfilled(browser, running.port)
        scales = browser.execute_script(
            "return [...document.querySelectorAll('.tile')].map((tile) => [tile.querySelector"
            "('h2').firstChild.textContent, tile.querySelector('.scale')?.textContent ?? null]);"
        )
        trends = ("Ship SLA", "Deliveries", "Inbound", "SKUs", "Customers", "Pipeline")
        assert all(dict(scales)[title] for title in trends), scales  # a trend's scale
        for width, height in WALLS:
            assert layout_problems(browser, (width, height)) == [], (width, height)
            browser.save_screenshot(str(tmp_path / f"wall-{width}x{height}.png"))
            assert page_height(browser) <= height, f"{width}x{height} scrolls"
        browser.execute_script("document.documentElement.style.lineHeight = '3'")
        assert layout_problems(browser, WALL) == []
        browser.save_screenshot(str(tmp_path / "wall-cramped.png"))
        assert page_height(browser) > WALL[1]
        assert console_errors(browser) == []


# Long names for the simulator's short ones, in every answer of the API the page reads.
LONG_NAMES = r"""
const fetched = window.fetch;
window.fetch = async (...request) => {
  const answer = await fetched(...request);
  const text = (await answer.text())
    .split("FC-ORD1").join("FC-CHICAGO-OHARE-CROSSDOCK-NORTH-BUILDING-7-MEZZANINE-2")
    .split("us-west").join("us-west-pacific-and-alaska-extended-delivery-zone");
  return new Response(text, {status: answer.status, headers: answer.headers});
};
"""


def test_long_names_on_a_phone_cut_the_name_not_the_values(browser, tmp_path):
    """On a phone, one long fc or region name pushed every value of its table out of
    the tile, and the status in words of a tile's title was cut to "critical · S…"."""
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": LONG_NAMES}
    )
    try:
        with cockpit(ready_timeout=30) as running:
            viewport(browser, PHONE)
            backfilled(browser, running.port)
            names = browser.execute_script(
                "return [...document.querySelectorAll('td:first-child')].map((e) => e.textContent)"
            )
            assert any(name.startswith("FC-CHICAGO-OHARE") for name in names), names
            assert layout_problems(browser, PHONE) == []
            browser.save_screenshot(str(tmp_path / "phone-long-names.png"))
    finally:
        browser.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", script)


def test_a_figure_per_fc_is_coloured_as_its_rule_fires_per_fc(browser):
    """Each of 3 fcs has 40 receipts awaiting stow: 120 in all, over the critical 100,
    yet no fc's alert fires, so green; the cancellation ratios (a range, no total)
    are red where one fc's alert fires. The header says the watermark is ahead of a
    clock behind it."""
    board, ledger = Board(), Ledger(METRICS)
    board.publish("test", ledger)
    board.ready.set()
    for fc in ("FC1", "FC2", "FC3"):
        ledger["cockpit_receipts_awaiting_stow"][fc] = 40
    ledger["cockpit_cancellation_ratio"]["FC1"] = 0.01
    ledger["cockpit_cancellation_ratio"]["FC2"] = 0.03
    now = 1_800_000_000.0
    ledger["cockpit_watermark_timestamp_seconds"][()] = now + 600
    port = free_port()
    server = serve(board, "127.0.0.1", port, clock=lambda: now)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: page_time(browser) == now, 30, "the page to show the board")
        page = {(v["figure"], v["key"]): v for v in shown(browser)}
        stow, cancelled = page["receipts_awaiting_stow", ""], page["cancellation_ratio", ""]
        assert (stow["text"], stow["status"]) == ("120", "ok") and "ok" in stow["classes"]
        assert cancelled["text"] == "1.0% \u2013 3.0%" and "critical" in cancelled["classes"]
        assert differences(shown(browser), api(f"http://127.0.0.1:{port}", "summary")) == []
        header = browser.execute_script("return document.getElementById('watermark').textContent")
        assert header.endswith("ahead of the clock by 10.0 min"), header
        # A trend over fcs draws no alert levels: the rule compares each fc, not it.
        levels_drawn = browser.execute_script(
            "state.trend = [{t: 1, values: {x: 1}}, {t: 2, values: {x: 3}}];"
            "const limit = {warning: 1, critical: 2};"
            "return [[{}], []].map((by) => sparkline({id: 'x', limit, by})"
            ".querySelectorAll('line').length);"
        )
        assert levels_drawn == [0, 2]
        assert console_errors(browser) == []
    finally:
        server.shutdown()


def empty_board_served() -> tuple[Board, int, Server]:
    """A board with nothing on it, ready, served on a free port."""
    board = Board()
    board.ready.set()
    port = free_port()
    return board, port, serve(board, "127.0.0.1", port)


@contextmanager
def empty_page(browser: webdriver.Chrome) -> Iterator[None]:
    """The page of a board with nothing on it, loaded: its functions to call."""
    _board, port, server = empty_board_served()
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: browser.execute_script("return state.lastOk > 0"), 30, "the page")
        yield
        assert console_errors(browser) == []
    finally:
        server.shutdown()


def tile_headers(driver: webdriver.Chrome) -> dict[str, dict[str, Any]]:
    """Each tile by its title: its status (border), and the status its header says in
    words, with how that text is laid out."""
    return dict(  # type: ignore[no-any-return]
        driver.execute_script(
            """return [...document.querySelectorAll('.tile')].map((tile) => {
              const head = tile.querySelector('h2'), said = head.querySelector('.said');
              const box = said.getBoundingClientRect(), inner = tile.getBoundingClientRect();
              return [head.firstChild.textContent, {
                border: tile.className, status: said.dataset.status, text: said.textContent,
                colour: getComputedStyle(said).color,
                cut: [...said.children].filter((e) => e.scrollWidth > e.clientWidth)
                  .map((e) => e.textContent),
                lines: head.offsetHeight / head.firstChild.offsetHeight,
                inside: box.right <= inner.right - tile.clientLeft + 0.5 && box.width > 0}];
            });"""
        )
    )


def test_each_tile_says_its_worst_status_in_words(browser, tmp_path):
    """A status was a colour only (red, amber, green): nothing for a colour-blind
    operator or one across the room, and "Cancellations 0.0% - 4.7%" in red did not
    say which fc. The header of a tile says the worst status of its figures, the
    figure and its worst fc, in the status colour, cut short on one line; the border
    is that worst status too (the Customers tile had a red value and a grey border,
    coloured by its first figure only)."""
    board, ledger = Board(), Ledger(METRICS)
    board.publish("test", ledger)
    board.ready.set()
    ledger["cockpit_cancellation_ratio"]["FC-ATL1"] = 0.0
    ledger["cockpit_cancellation_ratio"]["FC-DAL1"] = 0.047
    ledger["cockpit_cancellation_ratio"]["FC-BER1"] = 0.02  # over the warning level
    ledger["cockpit_receipts_awaiting_stow"]["FC1"] = 40
    ledger["cockpit_receipts_awaiting_stow"]["FC2"] = 60
    backlog, marks = ledger["cockpit_stage_backlog"], ledger["cockpit_bottleneck"]
    backlog["FC-RNO1", "ship"], backlog["FC-ORD1", "ship"], backlog["FC-ORD1", "pick"] = 213, 240, 9
    marks["FC-RNO1", "ship"], marks["FC-ORD1", "ship"], marks["FC-ORD1", "pick"] = 1, 1, 0
    port = free_port()
    server = serve(board, "127.0.0.1", port)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: browser.execute_script("return state.lastOk > 0"), 30, "the page")
        tiles = tile_headers(browser)
        red, amber = "rgb(248, 81, 73)", "rgb(210, 153, 34)"
        customers = tiles["Customers"]
        assert customers["border"] == "tile critical", customers  # was none: page load's
        assert (customers["status"], customers["colour"]) == ("critical", red)
        assert customers["text"] == "critical \u00b7 Cancellations FC-DAL1 4.7%"
        assert customers["cut"] == [], customers
        inbound = tiles["Inbound"]  # dock-to-stock has no data, the backlog warns
        assert (inbound["border"], inbound["status"], inbound["colour"]) == (
            "tile warning",
            "warning",
            amber,
        )
        assert inbound["text"] == "warning \u00b7 Awaiting stow FC2 60"
        stages = tiles["Backlog by stage"]
        assert stages["border"] == "tile critical" and stages["cut"] == [], stages
        assert stages["text"] == "critical \u00b7 bottleneck FC-ORD1 ship"
        for quiet in ("Ship SLA", "Deliveries", "Pipeline", "Recent alerts"):
            assert tiles[quiet]["text"] == "" and tiles[quiet]["border"] == "tile none", quiet
        # An fc too long for the header: one line, ending in an ellipsis, inside the tile.
        ledger["cockpit_cancellation_ratio"]["FC-" + "VERY-LONG-NAME-" * 20] = 0.5
        for size in ((1280, 720), WALL):
            assert layout_problems(browser, size) == [], size
            browser.save_screenshot(str(tmp_path / f"said-{size[0]}x{size[1]}.png"))
            assert page_height(browser) <= size[1], f"{size} scrolls"
            customers = tile_headers(browser)["Customers"]
            assert customers["text"].startswith("critical \u00b7 Cancellations FC-VERY-LONG")
            # The title gives way first, then the fc: the status stays whole.
            long_name = "FC-" + "VERY-LONG-NAME-" * 20 + " 50.0%"
            assert customers["cut"] == ["Cancellations", long_name], customers
            assert customers["inside"], customers
            assert customers["lines"] < 1.5, customers
            title = "return getComputedStyle(document.querySelector('.said .title'))"
            assert browser.execute_script(title + ".textOverflow") == "ellipsis"
        assert console_errors(browser) == []
    finally:
        server.shutdown()


def test_a_right_to_left_override_in_event_text_reorders_nothing_beside_it(browser):
    """An fc spelt with U+202E (right-to-left override) reversed the rest of its
    line: the order id and the time of an alert read backwards ("FC-24:40 70-21-6202
    · <41>O · LTR"). Each event text is a bidi run of its own: the time stays whole,
    first (a long line loses its end, not its time), left of the fc and order id."""
    with empty_page(browser):
        placed = browser.execute_script(
            "const list = alertList({alerts: [{alert: 'late_delivery', fc: 'FC-\u202eRTL',"
            " order_id: 'O<14>', decided_ts: '2026-12-07T06:04:00Z'}], total: 1});"
            "document.body.prepend(list);"
            "const li = list.firstChild, time = li.firstChild;"
            "const left = (node) => node.getBoundingClientRect().left;"
            "return {time: time.textContent, right: time.getBoundingClientRect().right,"
            " runs: [...li.querySelectorAll('bdi')].map((run) => [run.textContent, left(run)])};"
        )
    assert placed["time"] == "12-07 06:04 UTC"
    assert [text for text, _left in placed["runs"]] == ["FC-\u202eRTL", "O<14>"]
    assert all(left >= placed["right"] - 0.5 for _text, left in placed["runs"]), placed


def test_a_trend_line_shows_its_scale(browser):
    """A trend was a shape without numbers: beside it, its top and bottom values (the
    line's highest and lowest, or an alert level beyond them) in the figure's unit,
    as text (not in the SVG, stretched to its box); in its tooltip, the time it covers.
    A line flat to the precision shown is drawn flat: 94.11% to 94.14% filled the
    height, under a scale of "94.1%" and "94.1%"."""
    with empty_page(browser):
        scales = browser.execute_script(
            "state.trend = [{t: 0, values: {x: 0.923}}, {t: 1800, values: {x: 0.949}},"
            " {t: 3600, values: {x: null}}, {t: 3600, values: {x: 0.93}}];"
            "const shown = (figure) => {"
            "  const box = sparkline(Object.assign({id: 'x', unit: 'ratio', by: []}, figure));"
            "  document.body.prepend(box);"
            "  const [svg, scale] = box.children, high = scale.children[0];"
            "  const out = [[...scale.children].map((e) => e.textContent), box.title,"
            "    !!high && high.getBoundingClientRect().left >= svg.getBoundingClientRect().right];"
            "  box.remove();"
            "  return out;"
            "};"
            "const one = shown({title: 'Ship-SLA compliance', limit: null});"
            "const limit = {warning: 0.98, critical: 0.95};"
            "const levels = shown({title: 'Ship-SLA compliance', limit});"
            "state.trend = [{t: 0, values: {x: 12}}, {t: 300, values: {x: 12}}];"
            "const flat = shown({unit: 'count', limit: null});"
            "state.trend = [{t: 0, values: {x: 0.9411}}, {t: 300, values: {x: 0.9414}}];"
            "const noise = shown({title: 'Ship-SLA compliance', limit: null});"
            "const path = sparkline({id: 'x', unit: 'ratio', by: [], limit: null})"
            ".querySelector('path').getAttribute('d');"
            "state.trend = [{t: 0, values: {x: 12}}];"
            "return [one, levels, flat, noise, path, shown({limit: null})];"
        )
    assert scales == [
        [["94.9%", "92.3%"], "Ship-SLA compliance: 92.3% to 94.9%, last 1.0 h", True],
        [["98.0%", "92.3%"], "Ship-SLA compliance: 92.3% to 98.0%, last 1.0 h", True],
        [["12"], "trend: 12, last 5.0 min", True],
        # Flat to the precision shown: one value, and drawn flat, not top to bottom.
        [["94.1%"], "Ship-SLA compliance: 94.1%, last 5.0 min", True],
        "M0.00,20.00L100.00,20.00",
        [[], "", False],  # no line yet: no scale
    ]


def test_an_item_row_names_its_worst_state_only(browser):
    """ "out of stock, below safety stock" left no room for the figures on a wall."""
    with empty_page(browser):
        row = browser.execute_script(
            "const kind = itemList({items: [{fc: 'FC1', sku: 'S1', on_hand: 0, cover_days: 0,"
            " states: ['out_of_stock', 'below_safety_stock']}], total: 1})"
            ".querySelector('.kind');"
            "return [kind.textContent, kind.title, kind.parentNode.textContent];"
        )
    assert row == [
        "out of stock",
        "out of stock, below safety stock",
        "out of stockFC1 \u00b7 S1 \u00b7 0 on hand \u00b7 0.0 d cover",
    ]


def test_the_page_says_when_kafka_is_unreachable(browser):
    """The header said "live" in full colour while no event could come."""
    board, kafka = Board(), Ledger(SOURCE_METRICS)
    board.publish("kafka:t:0", kafka)
    board.ready.set()
    kafka["cockpit_kafka_up"][()] = 0
    port = free_port()
    server = serve(board, "127.0.0.1", port)

    def said() -> list[str]:
        return browser.execute_script(
            "const node = document.getElementById('connection');"
            "return [node.textContent, node.dataset.state, getComputedStyle(node).color];"
        )

    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: said()[1] == "stale", 30, "the page to say Kafka is unreachable")
        text, _state, colour = said()
        assert text.startswith("Kafka unreachable: no new events · updated "), text
        assert colour == "rgb(210, 153, 34)"  # the warning amber
        kafka["cockpit_kafka_up"][()] = 1
        wait_for(lambda: said()[0].startswith("live · updated "), 30, "the page to say live")
        assert console_errors(browser) == []
    finally:
        server.shutdown()


def connection_said(browser: webdriver.Chrome) -> dict[str, Any]:
    """What the header says of the connection, and how the tiles look."""
    return browser.execute_script(  # type: ignore[no-any-return]
        "const node = document.getElementById('connection');"
        "const tiles = getComputedStyle(document.querySelector('main'));"
        "return {text: node.textContent, state: node.dataset.state, title: document.title,"
        " stale: document.body.dataset.stale || '', opacity: tiles.opacity,"
        " watermark: document.getElementById('watermark').innerText};"
    )


def test_a_stale_page_greys_its_figures_and_says_since_when(browser):
    """Its server gone, the page said "live" for ~10 s, then only a small "stale:
    Failed to fetch" in a corner, the figures in full colour and the time of the
    last update gone; and the header went on saying how far event time trailed
    the clock, as of the last answer."""
    board, pipeline = Board(), Ledger(SHARD_METRICS)
    board.publish("shard", pipeline)
    board.ready.set()
    pipeline["cockpit_watermark_timestamp_seconds"][()] = time.time() - 60
    port = free_port()
    server = serve(board, "127.0.0.1", port)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: connection_said(browser)["state"] == "live", 30, "the page to say live")
        updated = connection_said(browser)["text"].removeprefix("live · updated ")
        assert " · trails the clock by " in connection_said(browser)["watermark"]
    finally:
        server.shutdown()
        server.server_close()  # its port, for the server started again below
    wait_for(lambda: connection_said(browser)["stale"], 30, "the page to go stale")
    said = connection_said(browser)
    assert said["state"] == "stale" and said["opacity"] == "0.35", said
    assert said["text"].startswith("stale: not updated for "), said
    # Then why: waiting for an answer, none within 10 s, or refused at once.
    assert f"figures as of {updated} · " in said["text"], said
    assert said["text"].endswith("; retrying"), said
    assert said["title"].startswith("stale · opscockpit")
    assert said["watermark"].startswith("Event time: ") and "clock" not in said["watermark"]
    server = serve(board, "127.0.0.1", port)  # back: live again, in colour
    try:
        wait_for(lambda: connection_said(browser)["state"] == "live", 30, "the page to say live")
        said = connection_said(browser)
        assert not said["stale"] and said["opacity"] == "1", said
        assert not said["title"].startswith("stale")
        assert " · trails the clock by " in said["watermark"]
    finally:
        server.shutdown()


def test_a_page_far_behind_the_clock_says_so_rather_than_live(browser):
    """Catching up on two days of backlog, the header said "live" beside figures
    (and alerts) two days old."""
    board, pipeline = Board(), Ledger(SHARD_METRICS)
    board.publish("shard", pipeline)
    board.ready.set()
    pipeline["cockpit_watermark_timestamp_seconds"][()] = time.time() - 2 * 86400
    port = free_port()
    server = serve(board, "127.0.0.1", port)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait_for(lambda: connection_said(browser)["state"] == "behind", 30, "the page")
        text = connection_said(browser)["text"]
        assert text.startswith("behind: event time trails the clock by 2.0 d · updated "), text
        pipeline["cockpit_watermark_timestamp_seconds"][()] = time.time() - 60
        wait_for(lambda: connection_said(browser)["state"] == "live", 30, "the page to say live")
        assert console_errors(browser) == []
    finally:
        server.shutdown()


def compare_while_still(driver: webdriver.Chrome, base: str) -> set[str]:
    """Compare the page's figures with two scrapes around its update; only figures
    whose inputs did not change between the scrapes can be held to one of them.
    The figures compared with a value."""
    before = parse_exposition(fetch(base + "/metrics")[2].decode())
    asked = time.time()
    wait_for(lambda: page_time(driver) > asked, 30, "the next update of the page")
    page = shown(driver)
    after = parse_exposition(fetch(base + "/metrics")[2].decode())
    first, second = expected_figures(before), expected_figures(after)
    still = {name for name in first if first[name] == second[name] and name != "watermark"}
    compared = set()
    for value in page:
        if value["figure"] in still and value["key"] == "":
            expected = first[value["figure"]][0]
            number = None if value["value"] == "" else float(value["value"])
            assert number == expected or (
                number is not None and expected is not None and math.isclose(number, expected)
            ), (value, expected)
            if expected is not None:  # else nothing to show: no comparison of a figure
                compared.add(value["figure"])
    return compared


@pytest.mark.kafka
def test_every_figure_on_the_page_is_the_api_s_and_the_metrics(kafka, browser, tmp_path):
    """From Kafka, once the input is drained nothing moves: the page, the API and
    /metrics must agree on every figure; new events move all three."""
    topic = unique("web")
    admin = AdminClient({"bootstrap.servers": kafka})
    for future in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        future.result(30)

    def produce(start: str, hours: str, seed: str) -> int:
        args = ("--kafka", kafka, "--topic", topic, "--start", start, "--seed", seed)
        result = opscockpit("simulate", *args, "--hours", hours)
        return int(
            re.search(r"produced ([\d,]+) events", result.stderr.decode())[1].replace(",", "")
        )

    produced = produce("2026-11-20T00:00:00Z", "8", "7")
    with cockpit("--kafka", kafka, "--topic", topic, "--idle-timeout", "1s") as running:
        base = f"http://127.0.0.1:{running.port}"
        browser.get(base + "/")
        for round_ in range(2):
            summary = settle(running.port, produced)
            wait_for(lambda s=summary: page_time(browser) > s["now"], 30, "the page to update")
            page = shown(browser)
            assert differences(page, summary) == []
            samples = parse_exposition(fetch(base + "/metrics")[2].decode())
            assert figure_differences(summary, samples) == []
            assert {v["figure"] for v in page} >= SHOWN | {STAGED}
            if round_ == 0:
                events = summary_value(summary, "events")
                produced += produce("2026-11-20T08:00:00Z", "1", "8")
        assert summary_value(summary, "events") > events
        assert console_errors(browser) == []


def summary_value(summary: dict[str, Any], name: str) -> Any:
    return next(f["value"] for f in summary["figures"] if f["id"] == name)


def settle(port: int, produced: int) -> dict[str, Any]:
    """The summary once every produced event is counted and three in a row, over 4 s,
    are equal: a partition idles up to ~2.5 s after its last event (its idle timeout,
    then its broker's next answer, seen in statistics every second), and W moves then."""
    base = f"http://127.0.0.1:{port}"

    def counted() -> bool:
        return produced == events_read(parse_exposition(fetch(base + "/metrics")[2].decode()))

    progress = partial(progress_at, port)
    wait_for(counted, 120, f"all {produced} events counted", progress=progress)
    last: list[Any] = []

    def unchanged() -> Any:
        summary = api(base, "summary")
        last[:] = [*last[-2:], (summary["figures"], summary["watermark"]["timestamp"])]
        return summary if len(last) == 3 and last[0] == last[1] == last[2] else None

    return wait_for(unchanged, 60, "the figures to settle", every=2, progress=progress)


def test_the_page_works_over_tls_with_basic_auth(browser, certs):  # noqa: F811
    config = web_config(certs.directory)
    context = certs.trusting()

    def probe(port: int) -> object:
        return fetch(f"https://127.0.0.1:{port}/-/ready", USER, PASSWORD, context=context)[0] == 200

    with cockpit("--backfill", "6h", "--web-config", str(config), probe=probe) as running:
        base = f"https://127.0.0.1:{running.port}"
        browser.get(base + "/")
        assert 'id="tiles"' not in browser.page_source  # a password prompt, no page
        # A kiosk's usual address for a page behind basic auth: the page loaded, and
        # each of its requests failed (fetch refuses a URL with credentials, and a
        # relative one resolved against this address has them).
        console_errors(browser)  # read, so the log holds only what follows (not the 401)
        browser.get(f"https://{USER}:{PASSWORD}@127.0.0.1:{running.port}/")
        wait_for(lambda: has_data(browser), 60, "data on the page opened with credentials")
        assert not console_errors(browser)
        # What the browser sends once a person has answered its password prompt.
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        browser.execute_cdp_cmd("Network.enable", {})
        headers = {"headers": {"Authorization": f"Basic {token}"}}
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", headers)
        browser.get(base + "/")
        wait_for(lambda: has_data(browser), 60, "data on the page over TLS")
        summary = api(base, "summary", user=USER, password=PASSWORD, context=context)
        assert summary["figures"]
