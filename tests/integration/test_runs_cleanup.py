"""A run's topics and Redis keys are deleted by its clean-up, and only that run's."""
from __future__ import annotations

import secrets

import redis
from kafka.admin import NewTopic

from services.common import kafka_io
from services.tools import runs


def _make(prefix: str, names: list[str], r: redis.Redis) -> None:
    client = kafka_io.admin()
    try:
        client.create_topics([NewTopic(f"{prefix}{name}", 1, 1) for name in names])
    finally:
        client.close()
    for name in names:
        r.set(f"sandan:{prefix}{name}", "1")


def test_forget_deletes_the_runs_topics_and_keys_and_nothing_else(stack):
    r = redis.Redis.from_url(stack.redis_url)
    mine, other = f"tforget{secrets.token_hex(3)}-", f"tforget{secrets.token_hex(3)}-"
    _make(mine, ["a", "b", "c"], r)
    _make(other, ["a"], r)
    try:
        assert runs.forget(mine) == {"topics": 3, "redis_keys": 3}
        assert runs.topics_with_prefix(mine) == []
        assert list(r.scan_iter(match=f"sandan:{mine}*")) == []
        assert runs.topics_with_prefix(other) == [f"{other}a"]
        assert r.get(f"sandan:{other}a") == b"1"
    finally:
        runs.forget(other)
        r.close()


def test_earlier_runs_are_found_by_their_prefix_pattern_except_the_one_kept(stack):
    r = redis.Redis.from_url(stack.redis_url)
    tag = secrets.token_hex(3)
    first, second = f"tdemo{tag}a1-", f"tdemo{tag}a2-"
    _make(first, ["x", "y"], r)
    _make(second, ["x"], r)
    try:
        assert runs.earlier_runs(rf"tdemo{tag}a\d-", keep=second) == [first]
    finally:
        runs.forget(first)
        runs.forget(second)
        r.close()


def test_the_unprefixed_topics_are_never_forgotten():
    import pytest

    with pytest.raises(ValueError):
        runs.forget("")
