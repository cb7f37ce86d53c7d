"""The dashboards and alerts against real servers: Prometheus and Alertmanager
(Debian packages, started here on free loopback ports) and a running opscockpit.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cockpit.dashboards import KAFKA_PANELS
from tests.kafka_broker import free_port
from tests.processes import WaitFailed, cockpit, opscockpit, wait_for
from tests.test_cockpit_generated import (
    DOCKER,
    RULES,
    dashboards,
    load_yaml,
    panels,
    series_names,
    tool,
)

pytestmark = pytest.mark.prom

ALL = ".*"  # the "All" value of the fc and region variables
RATE_INTERVAL = "1m"  # $__rate_interval as Grafana computes it for a 15 s scrape interval
TEST_FC = "FC-TEST"
STALL = 60  # seconds without one more panel query answering: it will not answer


# --- servers


@contextmanager
def daemon(command: list[str], ready_url: str, log: Path, timeout: float = 30) -> Iterator[None]:
    """A server process, ready when `ready_url` answers 200; stopped on exit."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{command[0]} exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as answer:
                    return bool(answer.status == 200)
            except OSError:
                return False

        wait_for(ready, timeout, f"{command[0]} to be ready")
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def prometheus(
    directory: Path, targets: list[str], rule_file: Path, alertmanager: str | None = None
) -> Iterator[str]:
    """Prometheus scraping `targets` every second and evaluating `rule_file` every second."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rule_file)],
        "scrape_configs": [{"job_name": "opscockpit", "static_configs": [{"targets": targets}]}],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    command = [
        tool("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={directory / 'tsdb'}",
        f"--web.listen-address={address}",
    ]
    with daemon(command, f"http://{address}/-/ready", directory / "prometheus.log"):
        yield f"http://{address}"


def alertmanager_binary() -> str:
    return shutil.which("alertmanager") or tool("prometheus-alertmanager")


@contextmanager
def alertmanager(directory: Path, config: dict[str, Any]) -> Iterator[str]:
    config_file = directory / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    command = [
        alertmanager_binary(),
        f"--config.file={config_file}",
        f"--storage.path={directory / 'alertmanager'}",
        f"--web.listen-address={address}",
        "--cluster.listen-address=",
    ]
    with daemon(command, f"http://{address}/-/ready", directory / "alertmanager.log"):
        yield address


@contextmanager
def http_server(handle: Callable[[BaseHTTPRequestHandler, str, bytes], bytes]) -> Iterator[int]:
    """A loopback HTTP server answering GET and POST with `handle(request, method, body)`."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            data = handle(self, method, body)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def api(base: str, path: str, **params: str) -> Any:
    """The `data` of a Prometheus HTTP API answer."""
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        reply = json.load(answer)
    assert reply["status"] == "success", reply
    return reply["data"]


# --- every panel returns data


def grafana_expr(expr: str) -> str:
    """The query Grafana sends with every variable set to "All"."""
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL).replace("$fc", ALL).replace("$region", ALL)
    )


def has_values(data: dict[str, Any]) -> bool:
    """Whether an instant or range answer holds at least one number."""
    samples = (
        pair for series in data["result"] for pair in series.get("values", [series.get("value")])
    )
    return any(pair and math.isfinite(float(pair[1])) for pair in samples)


def scraping(base: str) -> bool:
    """Whether Prometheus has tried to scrape its target: it hands new targets to its
    scrape loops only every 5 s, so a target that starts serving at once may not be
    scraped for its first seconds."""
    targets = api(base, "targets")["activeTargets"]
    return bool(targets) and all(not t["lastScrape"].startswith("0001-") for t in targets)


def variable_has_values(metric: str, label: str, base: str, _since: float) -> bool:
    return bool(api(base, f"label/{label}/values", **{"match[]": metric}))


def query_has_values(expr: str, instant: bool, base: str, since: float) -> bool:
    if instant:
        return has_values(api(base, "query", query=expr))
    return has_values(
        api(
            base,
            "query_range",
            query=expr,
            start=f"{since:.3f}",
            end=f"{time.time():.3f}",
            step="2",
        )
    )


def panel_checks() -> list[tuple[str, Callable[[str, float], bool]]]:
    """(what, check(prometheus, since)) for every query of every panel and variable."""
    checks: list[tuple[str, Callable[[str, float], bool]]] = []
    for uid, model in dashboards().items():
        for variable in model["templating"]["list"]:
            if variable["type"] == "query":
                metric, label = variable["query"][len("label_values(") : -1].split(", ")
                checks.append(
                    (f"{uid} variable {label}", partial(variable_has_values, metric, label))
                )
        for panel in panels(model):
            if panel["title"] in KAFKA_PANELS:
                continue
            for target in panel["targets"]:
                expr = grafana_expr(target["expr"])
                checks.append(
                    (
                        f"{uid} {panel['title']!r}: {expr}",
                        partial(query_has_values, expr, target.get("instant", False)),
                    )
                )
    return checks


def test_kafka_panels_are_the_only_exception() -> None:
    """The panels allowed to stay empty here read only metrics that need `run --kafka`."""
    pipeline = dashboards()["opscockpit-pipeline"]
    titles = {panel["title"]: panel for panel in panels(pipeline)}
    for title in KAFKA_PANELS:
        names = {
            name for target in titles[title]["targets"] for name in series_names(target["expr"])
        }
        assert names and all(name.startswith("cockpit_kafka_") for name in names), title


def test_every_panel_query_returns_data(tmp_path: Path) -> None:
    port = free_port()
    rules = tmp_path / "rules.yml"
    shutil.copy(RULES, rules)
    checks = panel_checks()
    since = time.time()
    # Prometheus scraping first, so it sees the counters jump during the backfill
    # (a rate needs two samples, and live events complete no receipt for minutes);
    # 48 h of history so that delivery promises pass; 4 label values so that labels
    # overflow.
    with prometheus(tmp_path, [f"127.0.0.1:{port}"], rules) as base:
        wait_for(partial(scraping, base), 60, "Prometheus to scrape its target")
        with cockpit("--backfill", "48h", "--max-label-values", "4", port=port):
            # As long as more queries answer, wait on: the slowest wait on event time
            # (window and shift closes, spikes), which a slower build reaches later.
            missing = [what for what, _ in checks]

            def answered() -> bool:
                missing[:] = [w for w, check in checks if w in missing and not check(base, since)]
                return not missing

            try:
                what = "every panel query to answer"
                wait_for(answered, STALL, what, every=2, progress=lambda: len(missing))
            except WaitFailed as failure:
                raise AssertionError(f"{failure}, still none for:\n" + "\n".join(missing)) from None


# --- a breach-heavy simulation fires an alert through Alertmanager


def events(first: int, count: int, placed_ms: int, shipped: int) -> list[dict[str, Any]]:
    """`count` orders of FC-TEST due an hour after `placed_ms`, the first `shipped` on time."""
    due = placed_ms + 3_600_000
    out: list[dict[str, Any]] = []
    for i in range(first, first + count):
        out.append(
            {
                "event_id": f"placed-{i}",
                "type": "order.placed",
                "ts": placed_ms,
                "order_id": f"o{i}",
                "fc": TEST_FC,
                "region": "test-region",
                "lines": [{"sku": "SKU-1", "qty": 1}],
                "promised_ship_by": due,
                "promised_delivery_by": due + 3 * 86_400_000,
            }
        )
        if i < first + shipped:
            out.append(
                {
                    "event_id": f"shipped-{i}",
                    "type": "order.shipped",
                    "ts": placed_ms + 1_800_000,
                    "order_id": f"o{i}",
                    "fc": TEST_FC,
                }
            )
    # a later event moves the watermark past every promise
    out.append(
        {
            "event_id": f"clock-{first}",
            "type": "page.viewed",
            "ts": due + 3_600_000,
            "session_id": "s",
            "page": "home",
            "load_ms": 100,
        }
    )
    return out


def exposition(directory: Path, name: str, lines: list[dict[str, Any]]) -> bytes:
    """The final /metrics text of a replay of these events, in event-time order."""
    source, metrics = directory / f"{name}.jsonl", directory / f"{name}.prom"
    ordered = sorted(lines, key=lambda line: int(line["ts"]))
    source.write_text("".join(json.dumps(line) + "\n" for line in ordered))
    opscockpit("replay", str(source), "--metrics-file", str(metrics), "--quiet")
    return metrics.read_bytes()


def alertmanager_config_for(receiver_port: int) -> dict[str, Any]:
    """The real Alertmanager configuration, its webhooks pointed at the test's receiver."""
    config = dict(load_yaml(DOCKER / "alertmanager" / "alertmanager.yml"))
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            url = urllib.parse.urlsplit(hook["url"])
            hook["url"] = url._replace(scheme="http", netloc=f"127.0.0.1:{receiver_port}").geturl()
    return config


def quick_rules(directory: Path) -> Path:
    """The generated rules with every `for` at 0s (the expressions untouched)."""
    data = load_yaml(RULES)
    for group in data["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    path = directory / "rules.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def evaluations(base: str) -> float:
    """How many times Prometheus has evaluated its rule groups (its own metrics)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("prometheus_rule_group_iterations_total{")
    )


def test_breach_heavy_simulation_fires_an_alert_through_alertmanager(tmp_path: Path) -> None:
    t0 = 1_795_000_000_000
    before = events(0, 10, t0, shipped=8)  # 8 on time, 2 breached
    after = before + events(10, 40, t0 + 7_200_000, shipped=0)  # then 40 more breached
    expositions = [exposition(tmp_path, "before", before), exposition(tmp_path, "after", after)]
    served = [expositions[0]]
    notifications: list[tuple[str, dict[str, Any]]] = []

    def metrics(_request: BaseHTTPRequestHandler, _method: str, _body: bytes) -> bytes:
        return served[-1]

    def webhook(request: BaseHTTPRequestHandler, _method: str, body: bytes) -> bytes:
        notifications.append((request.path, json.loads(body)))
        return b"ok"

    def pager_got_breach() -> bool:
        return any(
            path == "/opscockpit/critical"
            and note["receiver"] == "ops-pager"
            and any(
                alert["labels"]
                == {"alertname": "ShipSlaBreachRateHigh", "severity": "critical", "fc": TEST_FC}
                and alert["status"] == "firing"
                and alert["annotations"]["runbook"]
                for alert in note["alerts"]
            )
            for path, note in notifications
        )

    with (
        http_server(webhook) as receiver,
        http_server(metrics) as metrics_port,
        alertmanager(tmp_path, alertmanager_config_for(receiver)) as manager,
        prometheus(tmp_path, [f"127.0.0.1:{metrics_port}"], quick_rules(tmp_path), manager) as base,
    ):
        scraped = f"count_over_time(cockpit_ship_sla_breaches_total{{fc='{TEST_FC}'}}[1m])"

        def scrapes() -> object:
            return [series["value"][1] for series in api(base, "query", query=scraped)["result"]]

        wait_for(
            lambda: api(base, "query", query=f"{scraped} >= 3")["result"],
            30,
            "Prometheus to scrape the healthy state",
            progress=scrapes,
        )
        # Two of the ten orders breached long ago, none in the last hour: the rule
        # judges the last hour's shipments, so nothing fires, however often it runs.
        evaluated = evaluations(base)
        wait_for(lambda: evaluations(base) >= evaluated + 3, 30, "three rule evaluations")
        fired = f"ALERTS{{alertname='ShipSlaBreachRateHigh',fc='{TEST_FC}'}}"
        assert api(base, "query", query=fired)["result"] == []
        assert not pager_got_breach()
        served.append(expositions[1])

        def alerting() -> object:
            alerts = api(base, "alerts")["alerts"]
            return len(notifications), sorted((a["state"], a["activeAt"]) for a in alerts)

        what = "the critical ship-SLA alert at the pager webhook"
        wait_for(pager_got_breach, 60, what, progress=alerting)
