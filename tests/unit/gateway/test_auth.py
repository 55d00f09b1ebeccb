"""Authentication by bearer token, roles per method, and the mTLS certificate binding."""
from __future__ import annotations

import pytest

from services.gateway.auth import METHOD_ROLES, authenticate, authorize, bearer_token
from services.gateway.client_registry import ClientRegistry, add_client
from services.gateway.errors import PERMISSION_DENIED, UNAUTHENTICATED, CallError

CODE = "91330106MA27XK5W3B"


@pytest.fixture
def world(tmp_path):
    path = tmp_path / "clients.json"
    tokens = {"platform": add_client(path, "platform", "enterprise", [CODE]),
              "customs": add_client(path, "customs", "customs", [])}
    return ClientRegistry(path), tokens


def _refused(call) -> CallError:
    with pytest.raises(CallError) as err:
        call()
    return err.value


def test_a_valid_token_names_its_client(world):
    registry, tokens = world
    client = authenticate(registry, [("authorization", f"Bearer {tokens['platform']}")], None)
    assert client.id == "platform" and client.codes == frozenset({CODE})


@pytest.mark.parametrize("metadata, problem", [
    ([], "no credentials"),
    ([("authorization", "Basic abc")], "Bearer"),
    ([("authorization", "Bearer ")], "Bearer"),
    ([("authorization", "Bearer platform.not-the-secret")], "unknown or revoked"),
    ([("authorization", "Bearer ghost.whatever")], "unknown or revoked"),
])
def test_missing_or_wrong_tokens_are_unauthenticated(world, metadata, problem):
    registry, _ = world
    err = _refused(lambda: authenticate(registry, metadata, None))
    assert err.status == UNAUTHENTICATED and problem in err.message


def test_messages_never_echo_the_token(world):
    registry, tokens = world
    wrong = tokens["platform"][:-3] + "xyz"
    err = _refused(lambda: authenticate(registry, [("authorization", f"Bearer {wrong}")], None))
    assert wrong not in err.message and wrong.split(".")[1] not in err.message


def test_the_scheme_is_case_insensitive(world):
    registry, tokens = world
    assert authenticate(registry, [("Authorization", f"bearer {tokens['customs']}")], None).id == "customs"


def test_with_mtls_the_certificate_must_name_the_token_client(world):
    registry, tokens = world
    metadata = [("authorization", f"Bearer {tokens['platform']}")]
    assert authenticate(registry, metadata, frozenset({"platform"})).id == "platform"
    err = _refused(lambda: authenticate(registry, metadata, frozenset({"customs"})))
    assert err.status == UNAUTHENTICATED and "certificate" in err.message
    assert _refused(lambda: authenticate(registry, metadata, frozenset())).status == UNAUTHENTICATED


@pytest.mark.parametrize("method", sorted(METHOD_ROLES))
def test_each_method_is_for_one_role(world, method):
    registry, tokens = world
    allowed = "platform" if METHOD_ROLES[method] == "enterprise" else "customs"
    other = "customs" if allowed == "platform" else "platform"
    authorize(registry.get(allowed), method)
    err = _refused(lambda: authorize(registry.get(other), method))
    assert err.status == PERMISSION_DENIED and method in err.message


def test_bearer_token_takes_bytes_values():
    assert bearer_token([("authorization", b"Bearer a.b")]) == "a.b"
