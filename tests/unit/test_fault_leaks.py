"""The fault suite's log scan (tests/faults/test_security.py ``leaks``) finds each secret a
file holds, as a substring search would, with secrets that are prefixes or parts of others."""
from __future__ import annotations

from tests.faults.test_security import leaks

SECRETS = {"张三", "张三丰", "13800138000", "800138", "110101199003077777", "北京市朝阳区1号"}


def test_a_clean_log_has_no_leak(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("2026-12-04 21:48:51,032 INFO sandan.gateway: 3 documents from buyer 9f3a, 张 and 三 apart\n")
    assert leaks([log], SECRETS) == []


def test_every_secret_in_a_log_is_named_as_a_substring_search_names_it(tmp_path):
    log = tmp_path / "b.log"
    log.write_text("x 张三丰 y 13800138000 z 北京市朝阳区1号, 110101199003077777\n")
    found = leaks([log], SECRETS)
    text = log.read_text()
    assert sorted(found) == sorted(f"b.log: {s[:3]}…" for s in SECRETS if s in text)
    assert len(found) == 6  # 张三 inside 张三丰, 800138 inside the phone number
