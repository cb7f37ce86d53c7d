"""`opscockpit grafana generate` and `opscockpit grafana push`."""

from __future__ import annotations

import argparse
import json
import os
from importlib.util import find_spec
from pathlib import Path

from flows.commands import CliError, path, say

RULES_PATH = "docker/prometheus/rules.yml"
EXTRA_MODULES = ("yaml", "grafana_foundation_sdk", "grafana_client")
DASHBOARDS_DIR = "grafana/dashboards"


def require_grafana_extra() -> None:
    """A one-line error when the optional `grafana` dependencies are not installed.

    They are imported only by these commands, so `opscockpit run` needs none of them.
    """
    missing = [name for name in EXTRA_MODULES if find_spec(name) is None]
    if missing:
        raise CliError(f"missing {', '.join(missing)}: pip install 'opscockpit[grafana]'")


def generated_files() -> dict[str, str]:
    """Every generated file, by path relative to the repository root."""
    from flows.cockpit.dashboards import provisioning_files
    from flows.cockpit.rules import rules_yaml

    return {**provisioning_files(), RULES_PATH: rules_yaml()}


def add_grafana_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `opscockpit grafana` with its two subcommands."""
    grafana = commands.add_parser(
        "grafana",
        help="generate or install the Grafana dashboards and Prometheus rules",
        description="Dashboards, provisioning and alert rules, generated from the metric "
        "declarations.",
    )
    actions = grafana.add_subparsers(dest="action", required=True, parser_class=type(grafana))

    generate = actions.add_parser(
        "generate",
        help="write dashboards, provisioning and rules files",
        description=f"Write {DASHBOARDS_DIR}/*.json, grafana/provisioning/, grafana/grafana.ini "
        f"and {RULES_PATH} under --out (dashboards an earlier release generated there and "
        "this one does not are removed; other files are left alone).",
    )
    generate.add_argument(
        "--out",
        type=path,
        default=Path(),
        help="root to write under (default: the current directory)",
    )
    generate.set_defaults(handler=command_generate)

    push = actions.add_parser(
        "push",
        help="install the dashboards into a running Grafana",
        description="Install the dashboards through Grafana's HTTP API, replacing earlier "
        "versions. The API token (a service account token with Editor rights) "
        "is read from an environment variable.",
    )
    push.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://grafana:3000")
    push.add_argument(
        "--token-env",
        default="GRAFANA_TOKEN",
        metavar="NAME",
        help="environment variable holding the API token (default GRAFANA_TOKEN)",
    )
    push.add_argument(
        "--folder",
        default="opscockpit",
        help="folder to put the dashboards in (default opscockpit)",
    )
    push.set_defaults(handler=command_push)


def command_generate(args: argparse.Namespace) -> int:
    """Write every generated file under --out."""
    require_grafana_extra()
    root: Path = args.out
    files = generated_files()
    try:
        stale = set((root / DASHBOARDS_DIR).glob("*.json")) - {root / path for path in files}
        for path in sorted(filter(generated_before, stale)):
            path.unlink()
        for relative, text in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write under {root}: {exc.strerror or exc}") from None
    say(f"opscockpit: wrote {len(files)} files under {root}")
    return 0


def generated_before(path: Path) -> bool:
    """Whether a dashboard file is one an earlier release generated (named by its
    `opscockpit-` uid): a user's own dashboards beside them are kept."""
    from flows.cockpit.dashboards import UID_PREFIX

    try:
        model = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    uid = model.get("uid") if isinstance(model, dict) else None
    return isinstance(uid, str) and uid.startswith(UID_PREFIX) and path.name == f"{uid}.json"


def command_push(args: argparse.Namespace) -> int:
    """Install the dashboards into the Grafana at --url."""
    require_grafana_extra()
    from flows.cockpit.dashboards import dashboards
    from flows.cockpit.push import PushError, push

    token = os.environ.get(args.token_env, "")
    if not token:
        raise CliError(f"set the Grafana API token in the environment variable {args.token_env}")
    try:
        urls = push(args.url, token, args.folder, dashboards())
    except PushError as exc:
        raise CliError(str(exc)) from None
    say(
        f"opscockpit: installed {len(urls)} dashboards in folder {args.folder!r}: "
        + ", ".join(urls)
    )
    return 0
