"""The few calls sandan makes to a Confluent-compatible schema registry (REST over HTTP, JSON).

Used when records are written in the Confluent wire format (services/common/avro.py): schemas
are registered and ids resolved at start-up or on the first record of a kind, never per record.
Standard library only, so the codec needs no HTTP package.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    """The registry answered, with an error (an incompatible schema, an unknown id, ...)."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"schema registry: HTTP {status}" + (f" error {code}" if code else "") + f": {message}")
        self.status, self.code = status, code


class RegistryUnavailable(ConnectionError):
    """The registry did not answer. A ConnectionError, so stream workers retry it as transient."""


class RegistryClient:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read() or b"{}")
            except ValueError:
                detail = {}
            raise RegistryError(exc.code, detail.get("error_code"), detail.get("message") or exc.reason) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryUnavailable(f"schema registry at {self.url} did not answer: {reason}") from None

    @staticmethod
    def _subject(subject: str) -> str:
        return urllib.parse.quote(subject, safe="")

    def set_compatibility(self, subject: str, level: str = "BACKWARD") -> None:
        self._call("PUT", f"/config/{self._subject(subject)}", {"compatibility": level})

    def compatibility(self, subject: str) -> str:
        answer = self._call("GET", f"/config/{self._subject(subject)}")
        return answer.get("compatibilityLevel") or answer.get("compatibility")

    def register(self, subject: str, schema: str) -> int:
        """The id of ``schema`` under ``subject``; registers it as a new version if it is not there yet."""
        return int(self._call("POST", f"/subjects/{self._subject(subject)}/versions", {"schema": schema})["id"])

    def schema(self, schema_id: int) -> str:
        return self._call("GET", f"/schemas/ids/{int(schema_id)}")["schema"]

    def versions(self, subject: str) -> list[int]:
        return list(self._call("GET", f"/subjects/{self._subject(subject)}/versions"))

    def subjects(self) -> list[str]:
        return list(self._call("GET", "/subjects"))
