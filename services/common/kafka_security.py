"""Kafka TLS and SASL settings, turned into the keyword arguments of sandan's two Kafka clients.

Every Kafka client sandan builds (aiokafka in the workers and the gateway, kafka-python in the
command line, tools and the restore of tables) takes its security from here, so one set of
``SANDAN_KAFKA_*`` settings secures all of them. A setting that cannot work, alone or with the
others, ends the start-up with one line naming it (SystemExit), before any connection is tried.
The password is kept out of every repr, message and log line.
"""
from __future__ import annotations

import asyncio
import os
import ssl
import threading
from dataclasses import dataclass, field

from services.common import config

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")
_TLS_SETTINGS = ("SANDAN_KAFKA_SSL_CAFILE", "SANDAN_KAFKA_SSL_CERTFILE", "SANDAN_KAFKA_SSL_KEYFILE")
_SASL_SETTINGS = ("SANDAN_KAFKA_SASL_MECHANISM", "SANDAN_KAFKA_SASL_USERNAME", "SANDAN_KAFKA_SASL_PASSWORD",
                  "SANDAN_KAFKA_SASL_PASSWORD_FILE")


class Secret(str):
    """The password as the clients take it (a str), shown as *** by repr: kafka-python logs its
    whole configuration at DEBUG, and a dict's text is the repr of its values."""

    def __repr__(self) -> str:
        return "'***'"


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    mechanism: str = ""
    username: str = ""
    password: str = field(default="", repr=False)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    def describe(self) -> str:
        """What a log line or an error may say about the connection (no password)."""
        if self.protocol == "PLAINTEXT":
            return "PLAINTEXT"
        parts = [self.protocol]
        if self.sasl:
            parts.append(f"{self.mechanism} as {self.username!r}")
        if self.tls:
            parts.append(f"CA {self.cafile or '(system)'}" + (", client certificate" if self.certfile else ""))
        return ", ".join(parts)


class SettingError(SystemExit):
    """One line naming the setting; raised as SystemExit so a command ends without a traceback."""

    def __init__(self, env: str, message: str) -> None:
        super().__init__(f"setting {env}: {message}")
        self.env = env


def settings() -> KafkaSecurity:
    """The security settings, checked together (SettingError on the first that cannot work)."""
    protocol = config.get("SANDAN_KAFKA_SECURITY_PROTOCOL").strip().upper()
    if protocol not in PROTOCOLS:
        raise SettingError("SANDAN_KAFKA_SECURITY_PROTOCOL",
                           f"{config.get('SANDAN_KAFKA_SECURITY_PROTOCOL')!r} is not one of {', '.join(PROTOCOLS)}")
    given = {env for env in (*_TLS_SETTINGS, *_SASL_SETTINGS) if config.get(env).strip()}
    tls = protocol in ("SSL", "SASL_SSL")
    sasl = protocol.startswith("SASL_")
    for env in _TLS_SETTINGS:
        if env in given and not tls:
            # a CA or certificate that would be silently ignored leaves the operator believing in TLS
            raise SettingError(env, f"is set but SANDAN_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                                    f"(SSL or SASL_SSL do)")
    for env in _SASL_SETTINGS:
        if env in given and not sasl:
            raise SettingError(env, f"is set but SANDAN_KAFKA_SECURITY_PROTOCOL={protocol} has no SASL login "
                                    f"(SASL_PLAINTEXT or SASL_SSL do)")
    found = KafkaSecurity(protocol=protocol)
    if tls:
        found = _with_tls(found)
    if sasl:
        found = _with_sasl(found)
    return found


def _with_tls(found: KafkaSecurity) -> KafkaSecurity:
    cafile, certfile, keyfile = (config.get(env).strip() for env in _TLS_SETTINGS)
    if keyfile and not certfile:
        raise SettingError("SANDAN_KAFKA_SSL_KEYFILE", "is set without SANDAN_KAFKA_SSL_CERTFILE (the certificate it belongs to)")
    for env, path in zip(_TLS_SETTINGS, (cafile, certfile, keyfile)):
        if path:
            _readable(env, path)
    found = KafkaSecurity(protocol=found.protocol, cafile=cafile, certfile=certfile, keyfile=keyfile)
    ssl_context(found)  # an unreadable PEM fails here, naming its setting, not at the first connection
    return found


def _with_sasl(found: KafkaSecurity) -> KafkaSecurity:
    mechanism = config.get("SANDAN_KAFKA_SASL_MECHANISM").strip().upper()
    if mechanism not in MECHANISMS:
        raise SettingError("SANDAN_KAFKA_SASL_MECHANISM",
                           f"{config.get('SANDAN_KAFKA_SASL_MECHANISM')!r} is not one of {', '.join(MECHANISMS)} "
                           f"(SANDAN_KAFKA_SECURITY_PROTOCOL={found.protocol} needs one)")
    if mechanism == "PLAIN" and not found.tls:
        # PLAIN sends the password itself: only inside TLS
        raise SettingError("SANDAN_KAFKA_SASL_MECHANISM",
                           "PLAIN sends the password in clear; use it with SANDAN_KAFKA_SECURITY_PROTOCOL=SASL_SSL")
    username = config.get("SANDAN_KAFKA_SASL_USERNAME").strip()
    if not username:
        raise SettingError("SANDAN_KAFKA_SASL_USERNAME", f"is empty; {found.protocol} needs a user to log in as")
    password, password_file = config.get("SANDAN_KAFKA_SASL_PASSWORD"), config.get("SANDAN_KAFKA_SASL_PASSWORD_FILE").strip()
    if password and password_file:
        raise SettingError("SANDAN_KAFKA_SASL_PASSWORD_FILE", "and SANDAN_KAFKA_SASL_PASSWORD are both set; keep one")
    if password_file:
        _readable("SANDAN_KAFKA_SASL_PASSWORD_FILE", password_file)
        with open(password_file, encoding="utf-8") as f:
            password = f.readline().rstrip("\r\n")
        if not password:
            raise SettingError("SANDAN_KAFKA_SASL_PASSWORD_FILE", f"{password_file}: its first line is empty")
    if not password:
        raise SettingError("SANDAN_KAFKA_SASL_PASSWORD", f"is empty (and no SANDAN_KAFKA_SASL_PASSWORD_FILE); "
                                                        f"{found.protocol} needs the password of {username!r}")
    return KafkaSecurity(protocol=found.protocol, cafile=found.cafile, certfile=found.certfile,
                         keyfile=found.keyfile, mechanism=mechanism, username=username, password=Secret(password))


def _readable(env: str, path: str) -> None:
    if not os.path.isfile(path):
        raise SettingError(env, f"{path}: no such file")
    if not os.access(path, os.R_OK):
        raise SettingError(env, f"{path}: not readable by this process")


def ssl_context(found: KafkaSecurity) -> ssl.SSLContext:
    """aiokafka's TLS context: the broker's certificate must chain to the CA file (or the system's
    CAs) and name the host connected to; the client's own certificate when one is set."""
    from aiokafka.helpers import create_ssl_context

    try:
        ca = create_ssl_context(cafile=found.cafile or None)
    except ssl.SSLError as exc:
        raise SettingError("SANDAN_KAFKA_SSL_CAFILE", f"{found.cafile}: no PEM certificate in it ({exc.reason})") from None
    if found.certfile:
        try:
            ca.load_cert_chain(found.certfile, found.keyfile or None)
        except ssl.SSLError as exc:
            env = "SANDAN_KAFKA_SSL_KEYFILE" if found.keyfile else "SANDAN_KAFKA_SSL_CERTFILE"
            raise SettingError(env, f"no PEM certificate with its unencrypted key ({exc.reason})") from None
    return ca


def aiokafka_kwargs() -> dict:
    """Security keyword arguments of AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient;
    none for PLAINTEXT, so the default builds the clients exactly as before."""
    found = settings()
    if found.protocol == "PLAINTEXT":
        return {}
    kwargs: dict = {"security_protocol": found.protocol}
    if found.tls:
        kwargs["ssl_context"] = ssl_context(found)
    if found.sasl:
        kwargs.update(_sasl_kwargs(found))
    return kwargs


def kafka_python_kwargs() -> dict:
    """The same for kafka-python's KafkaAdminClient, KafkaProducer and KafkaConsumer, in its own
    names (its TLS context verifies like aiokafka's: CA file or system CAs, host name checked)."""
    found = settings()
    if found.protocol == "PLAINTEXT":
        return {}
    kwargs: dict = {"security_protocol": found.protocol}
    if found.tls:
        kwargs.update(ssl_check_hostname=True, ssl_cafile=found.cafile or None,
                      ssl_certfile=found.certfile or None, ssl_keyfile=found.keyfile or None)
    if found.sasl:
        kwargs.update(_sasl_kwargs(found))
    return kwargs


def _sasl_kwargs(found: KafkaSecurity) -> dict:
    # both clients call the password sasl_plain_password, for PLAIN and SCRAM alike
    return {"sasl_mechanism": found.mechanism, "sasl_plain_username": found.username,
            "sasl_plain_password": found.password}


def explain(bootstrap: str, timeout_s: float = 10.0) -> str | None:
    """Why a client could not bootstrap, when security is the cause: one line naming the
    setting to look at, or None (nothing to add: PLAINTEXT, or a broker simply unreachable).

    Both clients only say "unable to bootstrap" and log the cause; this opens one connection
    to each bootstrap server with the same settings and reports what the first one refused.
    Blocking (a thread of its own), for error paths only.
    """
    found = settings()
    if found.protocol == "PLAINTEXT":
        return None
    answer: list[str | None] = [None]

    def probe() -> None:
        answer[0] = asyncio.run(_probe(found, bootstrap, timeout_s))

    thread = threading.Thread(target=probe, name="sandan-kafka-security-probe", daemon=True)
    thread.start()
    thread.join(timeout_s * len(bootstrap.split(",")) + 5)
    return answer[0]


async def _probe(found: KafkaSecurity, bootstrap: str, timeout_s: float) -> str | None:
    from aiokafka.conn import create_conn
    from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

    kwargs = aiokafka_kwargs()
    for server in (s.strip() for s in bootstrap.split(",") if s.strip()):
        host, _, port = server.rpartition(":")
        where = f"Kafka at {server}"
        try:
            conn = await create_conn(host.strip("[]"), int(port), client_id="sandan-security-probe",
                                     request_timeout_ms=int(timeout_s * 1000), **kwargs)
        except ssl.SSLCertVerificationError as exc:
            trust = f"SANDAN_KAFKA_SSL_CAFILE={found.cafile}" if found.cafile else \
                "the system's CAs (SANDAN_KAFKA_SSL_CAFILE is empty)"
            return f"{where}: TLS certificate not trusted with {trust}: {exc.verify_message}"
        except ssl.SSLError as exc:
            return (f"{where}: TLS handshake failed ({exc.reason}); is {server} a TLS listener "
                    f"(SANDAN_KAFKA_SECURITY_PROTOCOL={found.protocol})?")
        except SaslAuthenticationFailed:
            return (f"{where} refused the {found.mechanism} login of {found.username!r}: wrong "
                    f"SANDAN_KAFKA_SASL_USERNAME or password (SANDAN_KAFKA_SASL_PASSWORD/_FILE)")
        except UnsupportedSaslMechanismError:
            return f"{where} does not offer SANDAN_KAFKA_SASL_MECHANISM={found.mechanism} on this listener"
        except (KafkaError, OSError, asyncio.TimeoutError, ValueError):
            continue  # unreachable or not Kafka: the client's own error says as much
        else:
            conn.close()
    return None
