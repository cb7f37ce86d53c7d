"""The README's metric and alert tables are the declarations."""

from __future__ import annotations

from pathlib import Path

from flows.cockpit.rules import with_alerts_table
from flows.metrics import with_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_every_metric_as_declared():
    text = README.read_text()
    assert text == with_table(text), "run: make generate"


def test_readme_lists_every_alert_as_declared():
    text = README.read_text()
    assert text == with_alerts_table(text), "run: make generate"


def test_readme_shows_the_two_set_up_commands():
    text = README.read_text()
    assert "make run" in text and "make test" in text
