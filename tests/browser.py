"""Headless Chromium (Debian's chromium and chromium-driver) driven by selenium, for
the wall display's tests and `make screenshot`:

    python -m tests.browser grafana/screenshots/wall-display.png

starts `opscockpit run` on the embedded simulator, waits until the page shows the
live network, and saves the page at 1920x1080.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.processes import cockpit, wait_for

# Without the background-networking flags Chromium waits on the closed network here.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
WALL = (1920, 1080)
# Screens the wall layout takes (1280x700 and up): laptops, a browser window on a
# 1920x1080 screen, 4K.
WALLS = ((1280, 720), (1366, 768), (1920, 940), WALL, (3840, 2160))
PHONE = (390, 844)


def missing() -> str | None:
    """What is not installed for the browser tests, if anything."""
    for command, package in (("chromium", "chromium"), ("chromedriver", "chromium-driver")):
        if shutil.which(command) is None:
            return f"{command} is not installed (Debian package {package}: make system-deps)"
    return None


@contextmanager
def chromium(directory: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium with its own profile, keeping the console log."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(shutil.which("chromium"))
    for flag in (*FLAGS, f"--user-data-dir={directory}", f"--window-size={WALL[0]},{WALL[1]}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.accept_insecure_certs = True  # the TLS test's certificate is its own CA's
    driver = webdriver.Chrome(options=options, service=Service(str(shutil.which("chromedriver"))))
    try:
        yield driver
    finally:
        driver.quit()


def viewport(driver: webdriver.Chrome, size: tuple[int, int]) -> None:
    """Exactly this many CSS pixels; a phone's is a touch screen."""
    width, height = size
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 800},
    )


def shown(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """Every figure value on the page: what it is, its text, number and colour."""
    return list(
        driver.execute_script(
            """return [...document.querySelectorAll('[data-figure]')].map(e => ({
                figure: e.dataset.figure, key: e.dataset.key, value: e.dataset.value,
                status: e.dataset.status, text: e.textContent, classes: [...e.classList]}));"""
        )
    )


def page_time(driver: webdriver.Chrome) -> float:
    """The server time of the summary the page shows (0 before the first)."""
    return float(driver.execute_script("return Number(document.body.dataset.now || 0)"))


def has_data(driver: webdriver.Chrome) -> bool:
    """Whether the page shows the network's ship-SLA compliance."""
    return any(
        v["figure"] == "ship_sla_compliance" and v["key"] == "" and v["value"]
        for v in shown(driver)
    )


def backfilled(driver: webdriver.Chrome, port: int) -> None:
    """Open the page of the cockpit on `port` and wait until it shows data, the
    backfill is done and a few live updates came."""
    driver.get(f"http://127.0.0.1:{port}/")
    wait_for(lambda: has_data(driver), 60, "the page to show data")

    def shown_w() -> float:
        return float(
            driver.execute_script(
                "return Number(document.getElementById('watermark').dataset.value)"
            )
        )

    # Progress: the W the page shows (the cockpit's own never stops: a live simulator
    # follows the backfill).
    wait_for(lambda: time.time() - shown_w() < 300, 120, "the backfill to end", progress=shown_w)
    started = page_time(driver)
    wait_for(lambda: page_time(driver) > started + 10, 60, "a few live updates")


def screenshot(out: Path) -> None:
    """The README's picture: the live cockpit at 1920x1080 once the backfill is done."""
    with (
        cockpit() as running,
        tempfile.TemporaryDirectory() as profile,
        chromium(Path(profile)) as driver,
    ):
        viewport(driver, WALL)
        backfilled(driver, running.port)
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    problem = missing()
    if problem:
        sys.exit(f"make screenshot: {problem}")
    screenshot(Path(sys.argv[1]))
