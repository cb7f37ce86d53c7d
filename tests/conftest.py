"""Shared test set-up. In CI (OPSCOCKPIT_REQUIRE_ALL=1) a skipped test fails the run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.kafka_broker import broker

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
