"""Who is calling and what they may call: bearer tokens, roles, the mTLS certificate binding.

Pure: takes the call's metadata and the names on the client certificate (when mutual TLS
is on) and returns the client or raises ``CallError``. Messages name the client id and
the rule, never the token.
"""
from __future__ import annotations

from collections.abc import Iterable

from services.gateway.client_registry import CUSTOMS, ENTERPRISE, Client, ClientRegistry, client_id_of, token_matches
from services.gateway.errors import PERMISSION_DENIED, UNAUTHENTICATED, CallError

METHOD_ROLES = {"Submit": ENTERPRISE, "Receipts": ENTERPRISE, "Subscribe": CUSTOMS, "SubscribeBatches": CUSTOMS,
                "Report": CUSTOMS, "PaydataChecks": CUSTOMS}
_BEARER = "bearer "


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    for key, value in metadata:
        if key.lower() != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if text[:len(_BEARER)].lower() == _BEARER and text[len(_BEARER):].strip():
            return text[len(_BEARER):].strip()
        raise CallError(UNAUTHENTICATED, "authorization metadata must be 'Bearer <token>'")
    raise CallError(UNAUTHENTICATED, "no credentials: send metadata 'authorization: Bearer <token>'")


def authenticate(registry: ClientRegistry, metadata, certificate_names: frozenset[str] | None) -> Client:
    """The client the call's token belongs to.

    ``certificate_names``: CN and SANs of the verified client certificate when mutual TLS
    is on, else None. With mTLS the certificate must name the token's client id, so a
    stolen token is useless without the matching key, and one client's certificate does
    not let it act as another.
    """
    token = bearer_token(metadata)
    client = registry.get(client_id_of(token))
    if client is None or not token_matches(token, client.token_hash):
        raise CallError(UNAUTHENTICATED, "unknown or revoked token")
    if certificate_names is not None and client.id not in certificate_names:
        raise CallError(UNAUTHENTICATED, f"the client certificate does not name client {client.id} "
                                         f"(its CN or a SAN must equal the client id)")
    return client


def authorize(client: Client, method: str) -> None:
    wanted = METHOD_ROLES[method]
    if client.role != wanted:
        raise CallError(PERMISSION_DENIED, f"{method} is for {wanted} clients; {client.id} has the {client.role} role")
