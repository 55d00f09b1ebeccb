"""Kafka TLS/SASL settings: the keyword arguments both clients get, the combinations refused at
start-up (one line naming the setting, the password never in it), every client built with them,
and the local stack's SASL_SSL listener as `stack.sh config`/`env` render it. No broker needed."""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
import subprocess

import pytest

from services.common import config, kafka_io, kafka_security

STACK_SH = config.PROJECT_ROOT / "scripts" / "stack.sh"
PASSWORD = "s3cret-Pa55word"
SECURITY_SETTINGS = [s.env for s in config.SETTINGS
                     if s.env.startswith(("SANDAN_KAFKA_SSL_", "SANDAN_KAFKA_SASL_", "SANDAN_KAFKA_SECURITY_"))]


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pems(tmp_path_factory) -> dict[str, str]:
    """A self-signed CA and a client certificate with its key, as PEM files."""
    d = tmp_path_factory.mktemp("pems")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=client",
            "-keyout", str(d / "client.key"), "-out", str(d / "client.pem"))
    (d / "not-pem.txt").write_text("hello\n")
    (d / "password").write_text(PASSWORD + "\nsecond line ignored\n")
    (d / "empty").write_text("\n")
    return {p.name: str(p) for p in d.iterdir()}


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    for env in SECURITY_SETTINGS:
        monkeypatch.delenv(env, raising=False)


def use(monkeypatch, **settings: str) -> None:
    for name, value in settings.items():
        monkeypatch.setenv(f"SANDAN_KAFKA_{name}", value)


def test_plaintext_by_default_adds_nothing_to_either_client():
    assert kafka_security.settings().protocol == "PLAINTEXT"
    assert kafka_security.aiokafka_kwargs() == {}
    assert kafka_security.kafka_python_kwargs() == {}
    assert kafka_security.explain("127.0.0.1:1") is None


def test_sasl_ssl_scram_maps_to_both_clients(monkeypatch, pems):
    use(monkeypatch, SECURITY_PROTOCOL="SASL_SSL", SSL_CAFILE=pems["ca.pem"], SASL_MECHANISM="scram-sha-512",
        SASL_USERNAME="sandan", SASL_PASSWORD=PASSWORD)
    aio = kafka_security.aiokafka_kwargs()
    context = aio.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert aio == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                   "sasl_plain_username": "sandan", "sasl_plain_password": PASSWORD}
    assert kafka_security.kafka_python_kwargs() == {
        "security_protocol": "SASL_SSL", "ssl_check_hostname": True, "ssl_cafile": pems["ca.pem"],
        "ssl_certfile": None, "ssl_keyfile": None, "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "sandan", "sasl_plain_password": PASSWORD}


def test_mutual_tls_loads_the_client_certificate(monkeypatch, pems):
    use(monkeypatch, SECURITY_PROTOCOL="SSL", SSL_CAFILE=pems["ca.pem"], SSL_CERTFILE=pems["client.pem"],
        SSL_KEYFILE=pems["client.key"])
    aio = kafka_security.aiokafka_kwargs()
    assert set(aio) == {"security_protocol", "ssl_context"} and aio["security_protocol"] == "SSL"
    assert kafka_security.kafka_python_kwargs() == {
        "security_protocol": "SSL", "ssl_check_hostname": True, "ssl_cafile": pems["ca.pem"],
        "ssl_certfile": pems["client.pem"], "ssl_keyfile": pems["client.key"]}


def test_tls_without_a_ca_file_trusts_the_system_cas(monkeypatch):
    use(monkeypatch, SECURITY_PROTOCOL="SSL")
    assert kafka_security.kafka_python_kwargs()["ssl_cafile"] is None
    assert kafka_security.aiokafka_kwargs()["ssl_context"].verify_mode == ssl.CERT_REQUIRED


def test_the_password_file_gives_its_first_line_and_no_repr_shows_it(monkeypatch, pems):
    use(monkeypatch, SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_MECHANISM="SCRAM-SHA-256", SASL_USERNAME="u",
        SASL_PASSWORD_FILE=pems["password"])
    found = kafka_security.settings()
    assert found.password == PASSWORD
    assert PASSWORD not in repr(found) and PASSWORD not in found.describe()
    assert kafka_security.kafka_python_kwargs()["sasl_plain_password"] == PASSWORD


def test_a_clients_configuration_logged_whole_does_not_show_the_password(monkeypatch, caplog):
    """kafka-python logs its configuration dict at DEBUG ("Starting KafkaAdminClient with configuration: %s")."""
    use(monkeypatch, SECURITY_PROTOCOL="SASL_PLAINTEXT", SASL_MECHANISM="SCRAM-SHA-512", SASL_USERNAME="u",
        SASL_PASSWORD=PASSWORD)
    # on the logger itself: a command line run earlier in the process set "kafka" to WARNING
    caplog.set_level(logging.DEBUG, logger="kafka.admin.client")
    for kwargs in (kafka_security.kafka_python_kwargs(), kafka_security.aiokafka_kwargs()):
        logging.getLogger("kafka.admin.client").debug("configuration: %s", kwargs)
        assert kwargs["sasl_plain_password"] == PASSWORD
        assert kwargs["sasl_plain_password"].encode("utf-8") == PASSWORD.encode("utf-8")  # what SCRAM hashes
    assert "configuration: " in caplog.text and "'sasl_plain_password': '***'" in caplog.text
    assert PASSWORD not in caplog.text


BAD = [
    ({"SECURITY_PROTOCOL": "TLS"}, "SANDAN_KAFKA_SECURITY_PROTOCOL", "is not one of"),
    ({"SSL_CAFILE": "ca.pem"}, "SANDAN_KAFKA_SSL_CAFILE", "PLAINTEXT does not use TLS"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SSL_CERTFILE": "client.pem", "SASL_MECHANISM": "SCRAM-SHA-512",
      "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD}, "SANDAN_KAFKA_SSL_CERTFILE", "does not use TLS"),
    ({"SECURITY_PROTOCOL": "SSL", "SASL_USERNAME": "u"}, "SANDAN_KAFKA_SASL_USERNAME", "has no SASL login"),
    ({"SASL_PASSWORD": PASSWORD}, "SANDAN_KAFKA_SASL_PASSWORD", "has no SASL login"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
     "SANDAN_KAFKA_SASL_MECHANISM", "needs one"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "GSSAPI", "SASL_USERNAME": "u", "SASL_PASSWORD": PASSWORD},
     "SANDAN_KAFKA_SASL_MECHANISM", "is not one of"),
    ({"SECURITY_PROTOCOL": "SASL_PLAINTEXT", "SASL_MECHANISM": "PLAIN", "SASL_USERNAME": "u",
      "SASL_PASSWORD": PASSWORD}, "SANDAN_KAFKA_SASL_MECHANISM", "in clear"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_PASSWORD": PASSWORD},
     "SANDAN_KAFKA_SASL_USERNAME", "is empty"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u"},
     "SANDAN_KAFKA_SASL_PASSWORD", "is empty"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u",
      "SASL_PASSWORD": PASSWORD, "SASL_PASSWORD_FILE": "password"}, "SANDAN_KAFKA_SASL_PASSWORD_FILE", "keep one"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u",
      "SASL_PASSWORD_FILE": "empty"}, "SANDAN_KAFKA_SASL_PASSWORD_FILE", "first line is empty"),
    ({"SECURITY_PROTOCOL": "SASL_SSL", "SASL_MECHANISM": "SCRAM-SHA-512", "SASL_USERNAME": "u",
      "SASL_PASSWORD_FILE": "missing"}, "SANDAN_KAFKA_SASL_PASSWORD_FILE", "no such file"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "missing"}, "SANDAN_KAFKA_SSL_CAFILE", "no such file"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CAFILE": "not-pem.txt"}, "SANDAN_KAFKA_SSL_CAFILE", "no PEM certificate"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_KEYFILE": "client.key"}, "SANDAN_KAFKA_SSL_KEYFILE", "without"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "not-pem.txt"}, "SANDAN_KAFKA_SSL_CERTFILE", "no PEM certificate"),
    ({"SECURITY_PROTOCOL": "SSL", "SSL_CERTFILE": "client.pem", "SSL_KEYFILE": "ca.pem"},
     "SANDAN_KAFKA_SSL_KEYFILE", "no PEM certificate"),
]


@pytest.mark.parametrize(("settings", "named", "says"), BAD, ids=[f"{b[1]}:{b[2]}" for b in BAD])
def test_bad_combinations_stop_with_one_line_naming_the_setting(monkeypatch, pems, settings, named, says):
    use(monkeypatch, **{k: pems.get(v, v) if k.endswith(("FILE", "CAFILE")) else v for k, v in settings.items()})
    for build in (kafka_security.settings, kafka_security.aiokafka_kwargs, kafka_security.kafka_python_kwargs):
        with pytest.raises(SystemExit) as stopped:
            build()
        message = str(stopped.value.code)
        assert message.startswith(f"setting {named}: "), message
        assert says in message and "\n" not in message and PASSWORD not in message


def test_a_command_stops_on_a_bad_combination_before_connecting(monkeypatch):
    """`sandan topics create` ends with the setting's line (SystemExit), no traceback, no broker tried."""
    from services import cli

    use(monkeypatch, SECURITY_PROTOCOL="SASL_SSL", SASL_USERNAME="u", SASL_PASSWORD=PASSWORD,
        BOOTSTRAP="127.0.0.1:1")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["topics", "create"])
    assert str(stopped.value.code).startswith("setting SANDAN_KAFKA_SASL_MECHANISM: ")


def test_every_client_sandan_builds_takes_the_settings(monkeypatch, pems):
    """kafka-python through kafka_io (admin, producer, consumers, the tools' readers), aiokafka in the
    gateway (publisher, stream reader) and in the changelog restore."""
    from services.common.changelog_table import ChangelogTable
    from services.gateway.kafka_bridge import KafkaPublisher, TopicReader

    use(monkeypatch, SECURITY_PROTOCOL="SASL_SSL", SSL_CAFILE=pems["ca.pem"], SASL_MECHANISM="SCRAM-SHA-512",
        SASL_USERNAME="sandan", SASL_PASSWORD=PASSWORD)
    built: list[tuple[str, dict]] = []

    class Recorder:
        """Takes the keyword arguments; as a consumer, of a topic without partitions."""

        def __init__(self, *args, **kwargs):
            built.append((type(self).__name__, kwargs))

        def partitions_for_topic(self, topic):
            return None

        def end_offsets(self, parts):
            return {}

        beginning_offsets = end_offsets

        def assign(self, parts):
            pass

        def seek_to_beginning(self, *parts):
            pass

        def close(self):
            pass

    for name in ("KafkaAdminClient", "KafkaProducer", "KafkaConsumer"):
        monkeypatch.setattr(kafka_io, name, type(name, (Recorder,), {}))
    kafka_io.admin()
    kafka_io.producer()
    assert kafka_io.read_all("t") == [] and kafka_io.end_offsets("t") == {}
    kafka_io.TopicTail("t")
    from services.common.quota import sources
    assert not sources._truncated("t")
    assert [n for n, _ in built] == ["KafkaAdminClient", "KafkaProducer"] + ["KafkaConsumer"] * 4
    for _, kwargs in built:
        assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_plain_password"] == PASSWORD
        assert kwargs["ssl_cafile"] == pems["ca.pem"] and kwargs["bootstrap_servers"] == kafka_io.bootstrap()

    async def aiokafka_clients() -> list:
        clients = [KafkaPublisher("127.0.0.1:1").producer.make(), TopicReader("127.0.0.1:1", 8, 1024)._consumer("c"),
                   ChangelogTable._restore_consumer("127.0.0.1:1")]
        inner = [getattr(c, "client", None) or c._client for c in clients]  # the producer's is public
        return [(i._security_protocol, i._sasl_mechanism, i._sasl_plain_password, i._ssl_context is not None)
                for i in inner]

    assert asyncio.run(aiokafka_clients()) == [("SASL_SSL", "SCRAM-SHA-512", PASSWORD, True)] * 3


def stack_sh(tmp_path, *args: str, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDAN_")}
    env.update(SANDAN_LOCAL_DIR=str(tmp_path), **settings)
    return subprocess.run([str(STACK_SH), *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def properties(path) -> dict[str, str]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_local_broker_opens_a_sasl_ssl_listener_only_when_asked(tmp_path):
    plain = stack_sh(tmp_path / "plain", "config", "kafka")
    assert plain.returncode == 0, plain.stderr
    plain_conf = properties(tmp_path / "plain" / "kafka" / "server.properties")
    assert not [f"{k}={v}" for k, v in plain_conf.items() if "SASL" in k.upper() + v]
    assert not (tmp_path / "plain" / "kafka" / "secure").exists()

    done = stack_sh(tmp_path, "config", "kafka", SANDAN_KAFKA_SECURE_PORT="25094")
    assert done.returncode == 0, done.stderr
    secure = tmp_path / "kafka" / "secure"
    conf = properties(tmp_path / "kafka" / "server.properties")
    assert conf["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093,SASL_SSL://127.0.0.1:25094"
    assert conf["advertised.listeners"].endswith(",SASL_SSL://127.0.0.1:25094")
    assert conf["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
    assert conf["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert conf["listener.name.sasl_ssl.ssl.keystore.location"] == str(secure / "broker-keystore.pem")
    password = (secure / "sandan.password").read_text().strip()
    assert len(password) == 48 and oct((secure / "sandan.password").stat().st_mode)[-3:] == "600"
    assert password not in done.stdout + done.stderr
    # the broker's certificate chains to the CA and names 127.0.0.1
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(secure / "ca.pem"), "-verify_ip", "127.0.0.1",
                               str(secure / "broker-keystore.pem")], capture_output=True, text=True, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    env = stack_sh(tmp_path, "env", SANDAN_KAFKA_SECURE_PORT="25094").stdout.split()
    assert env[1::2] == ["SANDAN_KAFKA_BOOTSTRAP=127.0.0.1:25094", "SANDAN_TOPIC_REPLICATION=1",
                         "SANDAN_TOPIC_MIN_INSYNC=1", "SANDAN_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
                         f"SANDAN_KAFKA_SSL_CAFILE={secure / 'ca.pem'}", "SANDAN_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
                         "SANDAN_KAFKA_SASL_USERNAME=sandan",
                         f"SANDAN_KAFKA_SASL_PASSWORD_FILE={secure / 'sandan.password'}"]
