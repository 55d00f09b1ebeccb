"""The clients file: only token hashes stored, strict shape, atomic private writes, live reload."""
from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from services.gateway.client_registry import (ClientFileError, ClientRegistry, add_client, client_id_of, hash_token, put_client,
                                      load_clients, parse_clients, token_matches)

CODE = "91330106MA27XK5W3B"


def test_the_file_keeps_a_salted_hash_never_the_token(tmp_path):
    path = tmp_path / "clients.json"
    token = add_client(path, "hz-platform", "enterprise", [CODE])
    text = path.read_text()
    assert token not in text and token.split(".")[1] not in text
    entry = json.loads(text)["clients"][0]
    assert entry["id"] == "hz-platform" and entry["codes"] == [CODE]
    assert token_matches(token, entry["token"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_same_token_hashes_differently_with_each_salt_and_only_the_token_matches():
    first, second = hash_token("c.secret"), hash_token("c.secret")
    assert first != second
    assert token_matches("c.secret", first) and token_matches("c.secret", second)
    assert not token_matches("c.secreT", first)
    assert not token_matches("c.secret", "sha256$zz$00")  # a broken entry matches nothing


def test_adding_an_existing_client_renews_its_token(tmp_path):
    path = tmp_path / "clients.json"
    old = add_client(path, "customs-1", "customs", [])
    new = add_client(path, "customs-1", "customs", [])
    stored = load_clients(path)["customs-1"].token_hash
    assert token_matches(new, stored) and not token_matches(old, stored)
    assert client_id_of(new) == "customs-1"


@pytest.mark.parametrize("entry, problem", [
    ({"id": "a b", "role": "customs", "token": hash_token("x")}, "client id"),
    ({"id": "a", "role": "admin", "token": hash_token("x")}, "role"),
    ({"id": "a", "role": "enterprise", "codes": [], "token": hash_token("x")}, "at least one enterprise code"),
    ({"id": "a", "role": "enterprise", "codes": ["bad code!"], "token": hash_token("x")}, "not a customs code"),
    ({"id": "a", "role": "customs", "token": "plaintext-token"}, "must be a"),
])
def test_malformed_entries_are_refused_with_the_reason(entry, problem):
    with pytest.raises(ClientFileError, match=problem):
        parse_clients(json.dumps({"clients": [entry]}))


def test_duplicate_ids_and_other_shapes_are_refused():
    entry = {"id": "a", "role": "customs", "token": hash_token("x")}
    with pytest.raises(ClientFileError, match="twice"):
        parse_clients(json.dumps({"clients": [entry, entry]}))
    with pytest.raises(ClientFileError, match="clients"):
        parse_clients("[]")
    with pytest.raises(ClientFileError, match="not JSON"):
        parse_clients("clients: []")


def test_the_registry_follows_edits_and_keeps_the_last_good_list_on_a_broken_edit(tmp_path, caplog):
    path = tmp_path / "clients.json"
    registry = ClientRegistry(path)
    assert registry.get("a") is None  # no file: nobody
    add_client(path, "a", "customs", [])
    assert registry.get("a") is not None
    add_client(path, "b", "enterprise", [CODE])
    assert registry.get("b").codes == frozenset({CODE})
    path.write_text("{broken")
    with caplog.at_level(logging.ERROR, logger="sandan.gateway.clients"):
        assert registry.get("b") is not None
    assert "keeping the previous 2 clients" in caplog.text
    path.unlink()
    assert registry.get("a") is None


def test_putting_an_existing_client_is_refused_unless_rotated_and_says_what_it_replaced(tmp_path):
    path = tmp_path / "clients.json"
    first, _ = put_client(path, "hz", "enterprise", [CODE], rotate=False)
    with pytest.raises(ClientFileError) as refused:
        put_client(path, "hz", "customs", [], rotate=False)
    assert "already exists" in str(refused.value) and "--rotate" in str(refused.value)
    assert token_matches(first, load_clients(path)["hz"].token_hash)  # untouched
    second, replaced = put_client(path, "hz", "enterprise", [CODE], rotate=True)
    assert (replaced.id, replaced.role, replaced.codes) == ("hz", "enterprise", frozenset({CODE}))
    assert token_matches(second, load_clients(path)["hz"].token_hash) and not token_matches(first, load_clients(path)["hz"].token_hash)
