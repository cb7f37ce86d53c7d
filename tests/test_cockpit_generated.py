"""The generated dashboards, provisioning and rules, and the stack's configuration.

Checked with the real tools that run here: promtool, amtool and the compose-spec
JSON schema (vendored by check-jsonschema, so this works offline).
"""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import build_parser
from flows.cockpit.cli import add_grafana_command, generated_files
from flows.cockpit.dashboards import DATASOURCE_UID, TAG
from flows.commands import Parser
from flows.metrics import BY_NAME, HISTOGRAM
from tests import image

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
GRAFANA = REPO / "grafana"
RULES = DOCKER / "prometheus" / "rules.yml"
STABLE_UIDS = {
    "opscockpit-cockpit",
    "opscockpit-inventory",
    "opscockpit-fulfilment",
    "opscockpit-customer",
    "opscockpit-pipeline",
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def tool(name: str) -> str:
    """The path of a binary the test needs, or a skip that says what is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: prometheus / prometheus-alertmanager)")
    return path


def run(*command: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
    return result


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dashboards() -> dict[str, dict[str, Any]]:
    """The committed dashboards by uid."""
    models = (json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json")))
    return {model["uid"]: model for model in models}


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The visualisations of a dashboard (rows only group them)."""
    return (panel for panel in model["panels"] if panel["type"] != "row")


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def series_names(expr: str) -> set[str]:
    """The metric and recorded series names a PromQL expression selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\boffset\s+\w+", "", expr)  # offsets
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*(?=\s*(\()?)", expr):
        if match.group(1) is None and match.group(0).lower() not in PROMQL_WORDS:
            names.add(match.group(0))
    return names


def declared(name: str) -> bool:
    """A series name of a metric in METRICS (histograms with their suffixes)."""
    if name in BY_NAME:
        return True
    base, _, suffix = name.rpartition("_")
    metric = BY_NAME.get(base)
    return metric is not None and metric.kind == HISTOGRAM and suffix in ("bucket", "count", "sum")


def panel_queries() -> Iterator[tuple[str, dict[str, Any], str]]:
    """(dashboard uid, panel, expr) of every panel target."""
    for uid, model in dashboards().items():
        for panel in panels(model):
            for target in panel["targets"]:
                yield uid, panel, target["expr"]


# --- generation


def test_regenerating_changes_nothing() -> None:
    files = generated_files()
    for relative, text in files.items():
        path = REPO / relative
        assert path.is_file(), f"{relative} is missing: run `opscockpit grafana generate`"
        assert path.read_text(encoding="utf-8") == text, (
            f"{relative} differs from the code: run `opscockpit grafana generate`"
        )
    committed = {f"grafana/dashboards/{p.name}" for p in (GRAFANA / "dashboards").glob("*.json")}
    assert committed == {name for name in files if name.startswith("grafana/dashboards/")}


def test_generate_command_writes_the_same_files(tmp_path: Path) -> None:
    parser = Parser(prog="opscockpit")
    add_grafana_command(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    boards = tmp_path / "grafana" / "dashboards"
    boards.mkdir(parents=True)
    (boards / "opscockpit-renamed.json").write_text('{"uid": "opscockpit-renamed"}')
    # A user's own dashboards there stay (every *.json not generated was removed).
    kept = {
        "mine.json": '{"title": "mine"}',
        "theirs.json": '{"uid": "opscockpit-other"}',  # not named by its uid
        "broken.json": "{",
        "list.json": "[]",
    }
    for name, text in kept.items():
        (boards / name).write_text(text)
    args = parser.parse_args(["grafana", "generate", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == set(generated_files()) | {f"grafana/dashboards/{name}" for name in kept}
    assert all((boards / name).read_text() == text for name, text in kept.items())


# --- dashboards


def test_dashboard_uids_are_stable_and_unique() -> None:
    models = dashboards()
    assert set(models) == STABLE_UIDS
    for uid, model in models.items():
        assert (GRAFANA / "dashboards" / f"{uid}.json").is_file()
        ids = [panel["id"] for panel in model["panels"]]
        assert len(ids) == len(set(ids)), f"{uid}: panel ids repeat"


def test_every_panel_has_a_title_a_description_and_a_unit() -> None:
    for uid, model in dashboards().items():
        assert model["title"] and model["description"], uid
        for panel in panels(model):
            where = f"{uid} panel {panel['id']}"
            assert panel["title"].strip(), where
            assert len(panel["description"]) > 20, f"{where} ({panel['title']}): description"
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: unit"
            assert panel["targets"], f"{where}: no query"


def test_dashboards_link_to_each_other() -> None:
    models = dashboards()
    for uid, model in models.items():
        assert TAG in model["tags"], uid
        assert any(
            link["type"] == "dashboards" and link["tags"] == [TAG] for link in model["links"]
        ), f"{uid} has no link to the other dashboards"
        for panel in panels(model):
            for link in panel.get("links", []):
                target = re.match(r"/d/([^/?]+)", link["url"])
                assert target and target.group(1) in models, f"{uid}: dead link {link['url']}"
    cockpit_links = {
        link["url"] for p in panels(models["opscockpit-cockpit"]) for link in p.get("links", [])
    }
    assert len(cockpit_links) >= 3, "the wall display drills down into the other dashboards"


def test_the_cockpit_is_a_wall_display() -> None:
    cockpit = dashboards()["opscockpit-cockpit"]
    assert cockpit["refresh"] == "10s"
    assert {panel["type"] for panel in panels(cockpit)} <= {"stat", "gauge"}
    assert all(panel["gridPos"]["h"] >= 6 for panel in panels(cockpit)), "big panels"
    titles = {panel["title"] for panel in panels(cockpit)}
    assert titles >= {
        "Ship-SLA compliance",
        "Late deliveries",
        "Orders past ship promise",
        "Dock-to-stock p90",
        "Receipts awaiting stow",
        "Sell-through",
    }
    variables = cockpit["templating"]["list"]
    assert all(variable["hide"] == 2 for variable in variables), "kiosk: no variable bar"


def kpi(expr: str) -> str:
    """What a query measures, whatever its level (fc:x:ratio1h and network:x:ratio1h match)
    and whatever drill-down variable narrows it."""
    unnarrowed = re.sub(r"\{[^}]*\}", "", expr)
    return re.sub(r"^\w+:(\w+:\w+)$", r"\1", unnarrowed)


def alert_levels() -> dict[str, dict[str, tuple[str, float]]]:
    """Per measured value: {severity: (comparison, level)} of its alerts in rules.yml."""
    levels: dict[str, dict[str, tuple[str, float]]] = {}
    for rule in rules():
        match = re.fullmatch(r"(.+?) (>=|<) ([\d.e+]+)(?: and .*)?", rule.get("expr", ""))
        if "alert" in rule and match:
            value, comparison, level = match.groups()
            entry = levels.setdefault(kpi(value), {})
            entry[rule["labels"]["severity"]] = (comparison, float(level))
    return levels


def test_panel_colours_are_the_alert_levels() -> None:
    levels = alert_levels()
    coloured = 0
    for uid, panel, expr in panel_queries():
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        value = kpi(expr)
        if value not in levels:
            assert [step["color"] for step in steps] == ["blue"], (
                f"{uid} {panel['title']}: coloured without an alert behind it"
            )
            continue
        coloured += 1
        (comparison, warning), (_, critical) = levels[value]["warning"], levels[value]["critical"]
        colours = {step["value"]: step["color"] for step in steps}
        if comparison == ">=":
            assert colours == {None: "green", warning: "orange", critical: "red"}, panel["title"]
        else:
            assert colours == {None: "red", critical: "orange", warning: "green"}, panel["title"]
    assert coloured >= 10


def test_every_query_names_declared_series_only() -> None:
    known = recorded_names()
    expressions = [expr for _, _, expr in panel_queries()]
    expressions += [rule["expr"] for rule in rules()]
    for model in dashboards().values():
        for variable in model["templating"]["list"]:
            if variable["type"] == "query":
                match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"])
                assert match, variable["query"]
                expressions.append(match.group(1))
    for expr in expressions:
        for name in series_names(expr):
            assert declared(name) or name in known, f"{name!r} in {expr!r} is not declared"


def test_queries_add_up_several_processes() -> None:
    """Raw metrics are only read through an aggregation (several processes are scraped)."""
    aggregated = re.compile(r"(time\(\) - )?(histogram_quantile\([\d.]+, )?(sum|min|max)\b")
    for uid, panel, expr in panel_queries():
        if any(declared(name) for name in series_names(expr)):
            assert aggregated.match(expr), f"{uid} {panel['title']}: {expr} is not aggregated"
    for rule in rules():
        raw = [name for name in series_names(rule["expr"]) if declared(name)]
        if raw and "record" in rule:
            assert aggregated.match(rule["expr"]), rule["record"]
        assert not (raw and "alert" in rule and not aggregated.match(rule["expr"])), rule
    watermark = next(r for r in rules() if "cockpit_watermark_timestamp_seconds" in r["expr"])
    assert watermark["expr"].startswith("min"), "the slowest process holds the watermark back"


# --- rules and alerts


def test_promtool_checks_the_rules() -> None:
    run(tool("promtool"), "check", "rules", str(RULES))


def test_promtool_unit_tests_pass() -> None:
    run(tool("promtool"), "test", "rules", str(DOCKER / "prometheus" / "rules.test.yml"))


def test_every_alert_has_unit_tests_that_fire_and_stay_quiet() -> None:
    tests = load_yaml(DOCKER / "prometheus" / "rules.test.yml")["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {
        (case["alertname"], alert["exp_labels"]["severity"])
        for case in cases
        for alert in case.get("exp_alerts") or []
    }
    quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    alerts = {(rule["alert"], rule["labels"]["severity"]) for rule in rules() if "alert" in rule}
    assert alerts <= fired, f"never seen firing: {sorted(alerts - fired)}"
    assert {name for name, _ in alerts} <= quiet, "every alert needs a case where it is quiet"


def test_every_alert_says_what_to_do() -> None:
    for rule in (rule for rule in rules() if "alert" in rule):
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) >= {"summary", "description", "runbook"}, rule["alert"]


def test_prometheus_config_is_valid() -> None:
    result = run(tool("promtool"), "check", "config", str(DOCKER / "prometheus" / "prometheus.yml"))
    assert "rules.yml" in result.stdout + result.stderr


def test_alertmanager_routes_by_severity() -> None:
    config = str(DOCKER / "alertmanager" / "alertmanager.yml")
    amtool = tool("amtool")
    run(amtool, "check-config", config)
    for severity, receiver in (("critical", "ops-pager"), ("warning", "ops-chat")):
        result = run(
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={config}",
            "alertname=ShipSlaBreachRateHigh",
            f"severity={severity}",
        )
        assert result.stdout.strip() == receiver


# --- the compose stack


def compose() -> dict[str, Any]:
    return dict(load_yaml(DOCKER / "compose.yaml"))


def test_compose_file_follows_the_compose_spec() -> None:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema vendors the compose spec")
    run(
        sys.executable,
        "-m",
        "check_jsonschema",
        "--builtin-schema",
        "vendor.compose-spec",
        str(DOCKER / "compose.yaml"),
    )


def test_compose_mounts_files_that_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), f"{name} mounts a missing {source}"


def test_compose_pins_images_and_binds_ports_to_loopback() -> None:
    services = compose()["services"]
    assert set(services) >= {
        "kafka",
        "kafka-topics",
        "opscockpit",
        "simulator",
        "prometheus",
        "alertmanager",
        "grafana",
    }
    for name, service in services.items():
        image = service.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), name
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_the_stack_runs_commands_opscockpit_accepts() -> None:
    """The compose commands and the image's default command parse with the real CLI."""
    services = compose()["services"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    default = json.loads(
        re.search(r"^CMD (\[.*?\])$", dockerfile, re.MULTILINE | re.DOTALL)
        .group(1)
        .replace("\\\n", "")
    )
    for command in (services["opscockpit"]["command"], services["simulator"]["command"], default):
        args = build_parser().parse_args(command)
        assert args.kafka == "kafka:9092", command
    assert services["opscockpit"]["command"][0] == "run"
    assert services["simulator"]["command"][0] == "simulate"


def test_grafana_is_provisioned_for_wall_displays() -> None:
    grafana = compose()["services"]["grafana"]
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD"
    )
    ini = configparser.ConfigParser()
    ini.read(GRAFANA / "grafana.ini")
    assert ini["auth.anonymous"]["enabled"] == "true"
    assert ini["auth.anonymous"]["org_role"] == "Viewer"
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    home = ini["dashboards"]["default_home_dashboard_path"]
    assert home == f"{mounts['../grafana/dashboards']}/opscockpit-cockpit.json"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "opscockpit.yaml")
    assert provider["providers"][0]["options"]["path"] == mounts["../grafana/dashboards"]
    datasource = load_yaml(GRAFANA / "provisioning" / "datasources" / "opscockpit.yaml")
    assert datasource["datasources"][0]["uid"] == DATASOURCE_UID
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


def test_dockerfile_builds_what_make_install_builds() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.MULTILINE):
        for source in line.split()[:-1]:
            assert (REPO / source).exists(), f"COPY of a missing {source}"
    # Built with a C compiler and profiles in a venv, which the image takes whole: so
    # both stages are the same Python at the same path (the venv links to it).
    bases = [found.split()[0] for word, found in image.instructions(dockerfile) if word == "FROM"]
    assert len(bases) == 2 and bases[0] == bases[1], bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0])
    venv = re.search(r"^ENV VENV=(\S+)$", dockerfile, re.MULTILINE).group(1)
    assert '"$VENV/bin/python" -m flows.pgo' in dockerfile
    assert f"COPY --from=build {venv} {venv}" in dockerfile
    assert f"PATH={venv}/bin:$PATH" in dockerfile


def test_the_image_check_reads_the_build_stage_and_its_context() -> None:
    """`make image-check` (tests/image.py, run by CI) emulates what it can read."""
    steps = image.build_stage((DOCKER / "Dockerfile").read_text())
    assert {word for word, _ in steps} == {"COPY", "ENV", "RUN"}
    files = image.context_files()
    wanted = {
        "pyproject.toml",
        "setup.py",
        "README.md",
        "flows/_idtable.c",
        "flows/kpis/inventory.pxd",
    }
    assert wanted <= set(files)
    assert all(path in wanted or path.startswith("flows/") for path in files)
    patterns = ["*", "!flows/", "**/__pycache__", "**/*.so", "flows/kpis/*.c"]
    for path, left_out in [
        ("tests/test_run.py", True),
        ("README.md", True),
        ("flows/kpis/orders.py", False),
        ("flows/kpis/orders.c", True),
        ("flows/_idtable.c", False),
        ("flows/kpis/__pycache__/orders.cpython-311.pyc", True),
        ("flows/kpis/orders.cpython-311-x86_64-linux-gnu.so", True),
    ]:
        assert image.ignored(path, patterns) == left_out, path
