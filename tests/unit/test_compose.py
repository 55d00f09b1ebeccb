"""docker-compose.yml is valid and describes the same stack as `make up`.

Needs no Docker: the file is checked against the Compose Specification schema that
check-jsonschema ships (works offline). `docker-compose config` runs too where it is installed.
"""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from services.common import config

COMPOSE = config.PROJECT_ROOT / "docker-compose.yml"


def check_compose_schema(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return YAML(typ="safe").load(COMPOSE)


def test_matches_compose_spec():
    result = check_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_is_not_vacuous(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("healthcheck:", "healthchek:", 1))
    assert check_compose_schema(broken).returncode != 0


def test_services_wait_for_healthy_infrastructure(compose):
    services = compose["services"]
    assert {"kafka", "redis", "topics", "order-match"} <= services.keys()
    for name in ("kafka", "redis"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("topics", "order-match"):
        depends = services[name]["depends_on"]
        assert depends["kafka"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert services[name]["environment"]["SANDAN_KAFKA_BOOTSTRAP"] == "kafka:9092", name
    assert services["order-match"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_same_versions_and_ports_as_the_local_stack(compose):
    services = compose["services"]
    defaults = {s.env: s.default for s in config.SETTINGS}
    assert services["kafka"]["image"] == f"apache/kafka:{defaults['SANDAN_KAFKA_VERSION']}"
    kafka_port = defaults["SANDAN_KAFKA_BOOTSTRAP"].rsplit(":", 1)[1]
    assert f"127.0.0.1:{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    assert f"EXTERNAL://127.0.0.1:{kafka_port}" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"127.0.0.1:{defaults['SANDAN_REDIS_PORT']}:6379" in services["redis"]["ports"]
    assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "--appendonly" in services["redis"]["command"]


def test_ports_are_published_on_loopback_only(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_docker_compose_accepts_it():
    # `make setup` installs Debian's docker-compose; `config -q` needs no engine.
    assert shutil.which("docker-compose"), "docker-compose missing: run make setup"
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_profile_is_three_kafka_nodes_replicating_three_with_min_insync_two(compose):
    services = compose["services"]
    assert "profiles" not in services["kafka"]  # the one-node broker stays the default
    port = int(config.SETTINGS[[s.env for s in config.SETTINGS].index("SANDAN_KAFKA_PORT")].default)
    voters = set()
    for node in (1, 2, 3):
        service = services[f"kafka-{node}"]
        env = service["environment"]
        assert service["profiles"] == ["cluster"]
        assert env["KAFKA_NODE_ID"] == node
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        # host ports as `make up KAFKA_NODES=3` derives them: SANDAN_KAFKA_PORT + 10*i
        external = port + 10 * (node - 1)
        assert service["ports"] == [f"127.0.0.1:{external}:{external}"]
        assert f"EXTERNAL://127.0.0.1:{external}" in env["KAFKA_ADVERTISED_LISTENERS"]
        for name in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                     "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert env[name] == 3, (node, name)
        for name in ("KAFKA_MIN_INSYNC_REPLICAS", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
            assert env[name] == 2, (node, name)
        assert service["volumes"] == [f"kafka-{node}-data:/var/lib/kafka/data"]
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
