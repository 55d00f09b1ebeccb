"""Operations configuration: Prometheus (local and compose), alert rules, Grafana, compose.

Uses Debian's promtool, which `make setup` (scripts/stack.sh setup) installs with the
prometheus package; nothing here needs a running server.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from services.common import config

ROOT = config.PROJECT_ROOT
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "sandan.json"
STACK_SH = ROOT / "scripts" / "stack.sh"
DEFAULTS = {s.env: s.default for s in config.SETTINGS}
JOBS = ("order-match", "tax-guarantee", "returns", "gateway", "paydata")
SEVERITIES = {"critical", "warning"}
# Metrics Prometheus itself produces for every target.
BUILT_IN_METRICS = {"up"}

yaml = YAML(typ="safe")


def load_yaml(path: Path):
    return yaml.load(path)


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: run `make setup` (it installs Debian's prometheus package)", pytrace=False)
    return path


def run(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, check=False, env=env)


def setting_of_job(job: str) -> str:
    """The port setting stack.sh reads for a scrape job: order-match → SANDAN_ORDER_MATCH_METRICS_PORT."""
    return f"SANDAN_{job.upper().replace('-', '_')}_METRICS_PORT"


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def scrape_targets(prometheus_config: dict) -> dict[str, list[str]]:
    return {job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
            for job in prometheus_config["scrape_configs"]}


# --------------------------------------------------------------------------- prometheus.yml


@pytest.fixture
def isolated_stack_env(tmp_path) -> dict[str, str]:
    """stack.sh settings pointing at a scratch folder and at ports nothing listens on."""
    env = dict(os.environ, SANDAN_LOCAL_DIR=str(tmp_path / "local"))
    names = ["SANDAN_KAFKA_PORT", "SANDAN_KAFKA_CONTROLLER_PORT", "SANDAN_REDIS_PORT", "SANDAN_PROMETHEUS_PORT",
             "SANDAN_SCHEMA_REGISTRY_PORT", *(setting_of_job(job) for job in JOBS)]
    env.update({name: str(port) for name, port in zip(names, free_ports(len(names)))})
    return env


def test_the_local_config_lists_every_service_on_its_default_port():
    targets = scrape_targets(load_yaml(PROMETHEUS / "prometheus.yml"))
    assert tuple(targets) == JOBS
    for job, job_targets in targets.items():
        assert job_targets == [f"127.0.0.1:{DEFAULTS[setting_of_job(job)]}"], job


def test_stack_renders_the_local_config_with_the_ports_of_the_settings(promtool, isolated_stack_env):
    result = run(STACK_SH, "config", "prometheus", env=isolated_stack_env)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = Path(isolated_stack_env["SANDAN_LOCAL_DIR"]) / "prometheus" / "prometheus.yml"
    assert str(rendered) in result.stdout

    parsed = load_yaml(rendered)
    assert scrape_targets(parsed) == {job: [f"127.0.0.1:{isolated_stack_env[setting_of_job(job)]}"] for job in JOBS}
    # Absolute, so Prometheus finds the rules from $SANDAN_LOCAL_DIR and a reload picks up edits.
    assert parsed["rule_files"] == [str(PROMETHEUS / "alerts.yml")]
    checked = run(promtool, "check", "config", rendered)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_compose_config_scrapes_the_same_jobs_on_the_compose_network(promtool):
    local, composed = load_yaml(PROMETHEUS / "prometheus.yml"), load_yaml(PROMETHEUS / "prometheus.compose.yml")
    assert composed["global"] == local["global"]
    assert composed["rule_files"] == local["rule_files"]
    compose = load_yaml(ROOT / "docker-compose.yml")
    for job, job_targets in scrape_targets(composed).items():
        port = DEFAULTS[setting_of_job(job)]
        assert job_targets == [f"{job}:{port}"], job
        assert job in compose["services"], f"no compose service named {job}"
        assert compose["services"][job]["environment"][setting_of_job(job)] == port, job
    assert tuple(scrape_targets(composed)) == JOBS
    checked = run(promtool, "check", "config", PROMETHEUS / "prometheus.compose.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --------------------------------------------------------------------------- stack.sh and .ci/run


def test_status_and_down_cover_prometheus_and_the_registry_as_ci_expects(isolated_stack_env):
    # .ci/run stops what was stopped before it ran: the names it parses from `status` must be
    # names `down` accepts, Prometheus and the schema registry included.
    status = run(STACK_SH, "status", env=isolated_stack_env)
    assert status.returncode == 3
    assert [line.split(":")[0] for line in status.stdout.splitlines()] == ["kafka", "redis", "prometheus", "registry"]
    ci_line = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("started=$("))
    parsed = run("bash", "-c", f'before=$1\n{ci_line}\nprintf "%s" "$started"', "_", status.stdout)
    assert parsed.stdout.split() == ["kafka", "redis", "prometheus", "registry"]

    down = run(STACK_SH, "down", *parsed.stdout.split(), env=isolated_stack_env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.splitlines() == ["prometheus: not running", "registry: not running", "kafka: not running",
                                        "redis: not running"]


def test_stack_refuses_an_unknown_service(isolated_stack_env):
    result = run(STACK_SH, "down", "prometheus", "grafana", env=isolated_stack_env)
    assert result.returncode != 0
    assert "unknown service 'grafana'" in result.stderr
    assert "prometheus: not running" not in result.stdout  # checked before anything is stopped


# --------------------------------------------------------------------------- alert rules

ALERT_TESTS = ("alerts_test.yml", "alerts_daily_test.yml")
ALERT_MUTATIONS = {
    # rule: (text in alerts.yml, a broken version alerts_test.yml must catch)
    "utilisation": ("sandan_guarantee_utilisation_percent > 95", "sandan_guarantee_utilisation_percent >= 95"),
    "dead letters": ("rate(sandan_returns_dead_letters_total[5m])", "0 * rate(sandan_returns_dead_letters_total[5m])"),
    "service down": ("expr: up == 0\n        for: 1m", "expr: up == 0\n        for: 3m"),
    "overdue": ("(sandan_expiry_overdue_seconds) > 60", "(sandan_expiry_overdue_seconds) > 600"),
    "lag growing": ("(deriv(sandan_consumer_lag[10m])) > 0", "(deriv(sandan_consumer_lag[10m])) > -1000"),
    "expiring": ('{kind="expiry"}[25h]', '{kind="expiry"}[2h]'),
    "first expiry warning": ('{kind="expiry"} offset 25h', '{kind="expiry"}'),
}


def alert_rules() -> list[dict]:
    return [rule for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"] for rule in group["rules"]]


def test_alert_rules_are_valid(promtool):
    result = run(promtool, "check", "rules", PROMETHEUS / "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(promtool):
    result = run(promtool, "test", "rules", *(PROMETHEUS / name for name in ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", sorted(ALERT_MUTATIONS))
def test_the_unit_tests_catch_a_broken_rule(promtool, tmp_path, rule):
    good, broken = ALERT_MUTATIONS[rule]
    rules = (PROMETHEUS / "alerts.yml").read_text()
    assert rules.count(good) == 1, f"{good!r} is not in alerts.yml once; update ALERT_MUTATIONS"
    (tmp_path / "alerts.yml").write_text(rules.replace(good, broken))
    for name in ALERT_TESTS:
        shutil.copy(PROMETHEUS / name, tmp_path)
    result = run(promtool, "test", "rules", *(tmp_path / name for name in ALERT_TESTS))
    assert result.returncode != 0, f"the alert tests do not notice the broken {rule} rule"


def test_every_alert_has_a_severity_and_says_what_to_do():
    rules = alert_rules()
    assert {r["alert"] for r in rules} >= {"SandanServiceDown", "SandanConsumerLagGrowing", "SandanDeadLettersRising",
                                           "SandanDeclarationsOverdue", "SandanGuaranteeNearlyUsedUp",
                                           "SandanGuaranteeExpiring"}
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_the_utilisation_alert_fires_at_the_workers_last_warning_threshold():
    thresholds = [int(t) for t in DEFAULTS["SANDAN_GUARANTEE_THRESHOLDS"].split(",")]
    rule = next(r for r in alert_rules() if r["alert"] == "SandanGuaranteeNearlyUsedUp")
    assert rule["expr"].strip() == f"sandan_guarantee_utilisation_percent > {max(thresholds)}"


# --------------------------------------------------------------------------- metric names

METRIC_SOURCE = re.compile(r'\b(Counter|Gauge|Histogram|Summary)\(\s*"([a-zA-Z_:][a-zA-Z0-9_:]*)"')
PROMQL_WORDS = {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left",
                "group_right", "inf", "nan"}


def exported_series() -> set[str]:
    """Every series name the services can export, from the metric declarations in services/.

    Read from the source rather than a registry: some metrics are created only when their
    worker starts (sandan_consumer_lag needs a running worker).
    """
    names = set(BUILT_IN_METRICS)
    for path in (ROOT / "services").rglob("*.py"):
        for kind, name in METRIC_SOURCE.findall(path.read_text(encoding="utf-8")):
            if kind == "Counter":
                names.add(name if name.endswith("_total") else f"{name}_total")
            elif kind == "Histogram":
                names.update({f"{name}_bucket", f"{name}_count", f"{name}_sum"})
            elif kind == "Summary":
                names.update({name, f"{name}_count", f"{name}_sum"})
            else:
                names.add(name)
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords, labels or values)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        if match.group() not in PROMQL_WORDS and not expr[match.end():].lstrip().startswith("("):
            names.add(match.group())
    return names


def dashboard_targets() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] if panel["type"] != "row"
            for target in panel["targets"]]


def test_metric_names_are_read_from_expressions():
    expr = ('sum by (job, code) (rate(sandan_dead_letters_total{code!~"a|b"}[5m]) or x_total offset 25h)'
            ' and on (job) histogram_quantile(0.5, sum by (le) (rate(y_bucket[$__rate_interval]))) / 100')
    assert metric_names(expr) == {"sandan_dead_letters_total", "x_total", "y_bucket"}


def test_the_metric_declarations_are_found():
    series = exported_series()
    assert {"sandan_documents_total", "sandan_match_latency_seconds_bucket", "sandan_consumer_lag",
            "sandan_guarantee_utilisation_percent", "sandan_returns_parcels_waiting",
            "sandan_gateway_calls_total"} <= series


def test_every_dashboard_query_names_an_exported_metric():
    series = exported_series()
    unknown = {title: metric_names(expr) - series for title, expr in dashboard_targets()
               if metric_names(expr) - series}
    assert unknown == {}


def test_every_alert_names_an_exported_metric():
    series = exported_series()
    unknown = {r["alert"]: metric_names(r["expr"]) - series for r in alert_rules() if metric_names(r["expr"]) - series}
    assert unknown == {}


def test_a_misspelt_metric_would_be_noticed():
    assert metric_names("rate(sandan_verdict_total[5m])") - exported_series() == {"sandan_verdict_total"}


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    # promtool has no expression checker; recording rules are parsed by Prometheus's own parser.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"panel_{i}", "expr": expr.replace("$__rate_interval", "1m")}
        for i, (_, expr) in enumerate(dashboard_targets())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps(rules))
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- grafana


def datasource() -> dict:
    (source,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    return source


def test_the_dashboard_has_a_row_per_service_and_uses_the_provisioned_datasource():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert 36 <= dashboard["schemaVersion"] <= 41
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    for service in ("order_match", "tax_guarantee", "returns", "gateway"):
        assert any(r.startswith(service) for r in rows), service
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    uid = datasource()["uid"]
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_grafana_finds_the_dashboard_and_prometheus_in_compose():
    compose = load_yaml(ROOT / "docker-compose.yml")["services"]
    mounts = dict(volume.split(":")[:2] for volume in compose["grafana"]["volumes"] if volume.startswith("./"))
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "sandan.yml")["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert datasource()["url"] == "http://prometheus:9090"
    assert "prometheus" in compose


# --------------------------------------------------------------------------- docker-compose.yml

SANDAN_SERVICES = ("order-match", "tax-guarantee", "returns", "gateway")


@pytest.fixture(scope="module")
def services() -> dict:
    return load_yaml(ROOT / "docker-compose.yml")["services"]


def test_compose_runs_every_service_after_the_topics_exist(services):
    for name in SANDAN_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile", name
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully", name
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy", name
        assert service["healthcheck"]["test"][:3] == ["CMD", "python", "/app/deploy/healthcheck.py"], name
        assert service["environment"]["SANDAN_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        # Prometheus scrapes from its own container, so /metrics must not listen on loopback only.
        assert service["environment"]["SANDAN_METRICS_HOST"] == "0.0.0.0", name
        assert any(v.endswith(":/var/lib/sandan") for v in service["volumes"]), name
    assert services["topics"]["restart"] == "no"


def test_compose_monitoring_uses_the_official_images_and_this_repository_s_config(services):
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert "./deploy/prometheus:/etc/prometheus/sandan:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/sandan/prometheus.compose.yml" in services["prometheus"]["command"]
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    assert f"127.0.0.1:{DEFAULTS['SANDAN_PROMETHEUS_PORT']}:9090" in services["prometheus"]["ports"]
    for name in ("prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_the_image_has_what_the_services_and_health_checks_read():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    for copied in ("COPY schemas ./schemas", "COPY services ./services",
                   "COPY deploy/healthcheck.py ./deploy/healthcheck.py"):
        assert copied in dockerfile
    assert "pip install --no-deps -e ." in dockerfile  # schemas/ stays next to services/
    assert "python -m services.gateway.protobuild --force" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"schemas", "services", "deploy", "deploy/healthcheck.py"} & set(ignored)
