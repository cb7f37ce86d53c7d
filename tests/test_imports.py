"""Imports between modules: the tooling under flows.cockpit stands on its own.

flows/cli.py imports flows.cockpit.cli (to add the grafana command); the
cockpit's modules once imported flows.cli back, a cycle that made importing
either first fail or half-initialise the other. Each is imported here in a fresh
interpreter, where nothing is in sys.modules yet, so no earlier import hides it."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import importlib, sys
importlib.import_module({module!r})
print("flows.cli" in sys.modules)
"""


@pytest.mark.parametrize(
    "module",
    ["flows.cockpit.cli", "flows.cockpit.dashboards", "flows.cockpit.rules", "flows.cockpit.push"],
)
def test_the_cockpit_tooling_imports_without_flows_cli(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(module=module)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", f"{module} imports flows.cli"


def test_flows_cli_imports_in_a_fresh_interpreter_after_the_cockpit_cli() -> None:
    """Either import order works: the cockpit's cli first, then flows.cli, whose
    grafana command comes from it."""
    script = (
        "import flows.cockpit.cli, flows.cli\n"
        "assert flows.cli.add_grafana_command is flows.cockpit.cli.add_grafana_command\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
