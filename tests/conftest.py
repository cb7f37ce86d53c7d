"""Shared test set-up. In CI (OPSCOCKPIT_REQUIRE_ALL=1) a skipped test fails the run."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kafka_broker import broker, keyed
from tests.processes import opscockpit
from tests.reference import parse_exposition

REQUIRE_ALL = os.environ.get("OPSCOCKPIT_REQUIRE_ALL") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {report.longrepr}"


@pytest.fixture(scope="session")
def kafka() -> Iterator[str]:
    """Bootstrap address of a real Kafka-protocol broker for the whole session."""
    with broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def day(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A simulated day, its Kafka messages and its replay (metrics, dead letters,
    alerts, KPIs), as the oracle of the Kafka, outage and recovery tests. Made once
    for the session: each of their modules simulated and replayed it again."""
    root = tmp_path_factory.mktemp("day")
    events = root / "day.jsonl"
    opscockpit("simulate", "--out", str(events), "--hours", "24", "--seed", "7")
    outputs = {name: root / f"{name}.jsonl" for name in ("dlq", "alerts", "kpis")}
    opscockpit(
        "replay",
        str(events),
        "--metrics-file",
        str(root / "replay.prom"),
        *(arg for name, path in outputs.items() for arg in (f"--{name}", str(path))),
    )
    lines = events.read_bytes().splitlines()
    return {
        "lines": lines,
        "messages": [keyed(line) for line in lines],
        "metrics": parse_exposition((root / "replay.prom").read_text()),
        **{
            name: [json.loads(x) for x in path.read_text().splitlines()]
            for name, path in outputs.items()
        },
    }
