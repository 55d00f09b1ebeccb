"""Who may call the gateway: the clients file, tokens and their hashes.

The file is JSON::

    {"clients": [{"id": "hz-platform", "role": "enterprise", "codes": ["91330106MA27XK5W3B"],
                  "token": "sha256$<salt hex>$<digest hex>"}]}

An enterprise entry may add ``"messages": ["CEB411"]``, the message types it may submit
(DOMAIN §1: a payment firm sends payments); without it, every enterprise input type.

Only a salted hash of each token is stored. Tokens are ``<client id>.<random>`` with 256
random bits, so a fast hash is enough (nobody can guess such a token) and the id prefix
finds the one entry to compare against without hashing against every client.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from services.common.senders import INPUT_MESSAGES

log = logging.getLogger("sandan.gateway.clients")

ENTERPRISE = "enterprise"
CUSTOMS = "customs"
ROLES = (ENTERPRISE, CUSTOMS)
_HASH_SCHEME = "sha256"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CODE = re.compile(r"[0-9A-Za-z]{1,18}")  # customs codes: 10-digit or 18-char credit codes


class ClientFileError(ValueError):
    """The clients file cannot be read or does not have the expected shape."""


@dataclass(frozen=True)
class Client:
    id: str
    role: str
    codes: frozenset[str]
    token_hash: str
    messages: frozenset[str] | None = None  # message types it may submit; None: every input type

    def to_json(self) -> dict:
        entry = {"id": self.id, "role": self.role, "codes": sorted(self.codes), "token": self.token_hash}
        if self.messages is not None:
            entry["messages"] = sorted(self.messages)
        return entry


def hash_token(token: str, salt: str | None = None) -> str:
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.sha256(bytes.fromhex(salt) + token.encode()).hexdigest()
    return f"{_HASH_SCHEME}${salt}${digest}"


def token_matches(token: str, stored: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt, _, _ = rest.partition("$")
    if scheme != _HASH_SCHEME or not salt:
        return False
    try:
        candidate = hash_token(token, salt)
    except ValueError:  # a salt that is not hex: the entry is broken, nothing matches it
        return False
    return hmac.compare_digest(candidate, stored)


def new_token(client_id: str) -> str:
    return f"{client_id}.{secrets.token_urlsafe(32)}"


def client_id_of(token: str) -> str:
    return token.rpartition(".")[0]


def check_id(client_id: str) -> str:
    if not _ID.fullmatch(client_id or ""):
        raise ClientFileError(f"client id {client_id!r}: use 1-64 letters, digits, '_' or '-'")
    return client_id


def make_client(client_id: str, role: str, codes, token_hash: str, messages=None) -> Client:
    check_id(client_id)
    if role not in ROLES:
        raise ClientFileError(f"client {client_id}: role {role!r} is not one of {', '.join(ROLES)}")
    code_set = frozenset(str(c).strip() for c in codes or ())
    bad = sorted(c for c in code_set if not _CODE.fullmatch(c))
    if bad:
        raise ClientFileError(f"client {client_id}: {bad[0]!r} is not a customs code (1-18 letters or digits)")
    if role == ENTERPRISE and not code_set:
        raise ClientFileError(f"client {client_id}: an enterprise client needs at least one enterprise code")
    if not isinstance(token_hash, str) or not token_hash.startswith(_HASH_SCHEME + "$"):
        raise ClientFileError(f"client {client_id}: token must be a '{_HASH_SCHEME}$salt$digest' hash")
    return Client(client_id, role, code_set, token_hash, _message_types(client_id, role, messages))


def _message_types(client_id: str, role: str, messages) -> frozenset[str] | None:
    if messages is None:
        return None
    if role != ENTERPRISE:
        raise ClientFileError(f"client {client_id}: only an enterprise client has \"messages\" (it submits)")
    if isinstance(messages, str) or not isinstance(messages, (list, tuple, set, frozenset)):
        raise ClientFileError(f"client {client_id}: \"messages\" must be a list of message types")
    found = frozenset(str(m).strip().upper() for m in messages)
    bad = sorted(found.difference(INPUT_MESSAGES))
    if bad:
        raise ClientFileError(f"client {client_id}: {bad[0]!r} is not a message type an enterprise submits "
                              f"({', '.join(INPUT_MESSAGES)})")
    return found


def parse_clients(text: str, source: str = "clients file") -> dict[str, Client]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientFileError(f"{source}: not JSON: {exc}") from None
    entries = raw.get("clients") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ClientFileError(f"{source}: expected an object with a \"clients\" list")
    clients: dict[str, Client] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ClientFileError(f"{source}: clients[{n}] is not an object")
        client = make_client(str(entry.get("id", "")), str(entry.get("role", "")), entry.get("codes"),
                             entry.get("token"), entry.get("messages"))
        if client.id in clients:
            raise ClientFileError(f"{source}: client id {client.id} appears twice")
        clients[client.id] = client
    return clients


def load_clients(path: Path) -> dict[str, Client]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ClientFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_clients(text, str(path))


def save_clients(path: Path, clients: dict[str, Client]) -> None:
    """Write atomically, readable by the owner only (it holds token hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"clients": [c.to_json() for c in clients.values()]}, indent=2, ensure_ascii=False) + "\n"
    fd, scratch = tempfile.mkstemp(prefix=".clients-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.chmod(scratch, 0o600)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def put_client(path: Path, client_id: str, role: str, codes, *, rotate: bool,
               messages=None) -> tuple[str, Client | None]:
    """Add a client, or with ``rotate`` replace an existing one (its token first of all).

    Returns the new token (shown once) and the entry it replaced, if any. Without ``rotate``
    an existing id is refused: a typo must not silently revoke another client's token.
    """
    clients = load_clients(path) if path.exists() else {}
    previous = clients.get(check_id(client_id))
    if previous is not None and not rotate:
        raise ClientFileError(f"client {client_id} already exists ({previous.role}, codes "
                              f"{', '.join(sorted(previous.codes)) or 'none'}): give --rotate to replace it and its "
                              f"token (its open streams end)")
    token = new_token(client_id)
    clients[client_id] = make_client(client_id, role, codes, hash_token(token), messages)
    save_clients(path, clients)
    return token, previous


def add_client(path: Path, client_id: str, role: str, codes, messages=None) -> str:
    """Add a client or renew an existing one's token, for scripts and tests; returns the token."""
    return put_client(path, client_id, role, codes, rotate=True, messages=messages)[0]


class ClientRegistry:
    """The clients file as the gateway sees it, re-read whenever the file changes.

    A file that turns invalid while the gateway runs is reported and the last good list
    stays in force, so a typo in an edit does not lock every client out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._clients: dict[str, Client] = {}
        self._stamp: tuple[int, int] | None = None
        self.on_change = None  # called after the list in force changed (the gateway re-checks open streams)

    def get(self, client_id: str) -> Client | None:
        self.refresh()
        return self._clients.get(client_id)

    def current(self, client_id: str) -> Client | None:
        """The entry in force, without looking at the file again."""
        return self._clients.get(client_id)

    def refresh(self) -> None:
        before = self._clients
        self._reload()
        if self._clients is not before and self.on_change is not None:
            self.on_change()

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except OSError:
            if self._stamp != (0, 0):
                log.warning("gateway clients file %s is missing: every call is refused", self.path)
                self._clients, self._stamp = {}, (0, 0)
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._clients = load_clients(self.path)
            log.info("gateway clients loaded from %s: %d clients", self.path, len(self._clients))
        except ClientFileError as exc:
            log.error("gateway clients file not reloaded, keeping the previous %d clients: %s",
                      len(self._clients), exc)
