"""Fuzzing the CEB XML codec (issue 9, §2): every input is accepted or refused with a reason.

Hypothesis drives six strategies from well-formed messages of every kind: byte mutations,
hostile field values (numbers out of range, wrong types, markup, control characters),
broken encodings, sizes (100+ documents, huge fields, over the size limit), random bytes,
and the classic attacks (entity expansion, external entities, XInclude, deep nesting).
"Refused" means a ``CebError`` whose message starts with the source and says why; anything
else raised is a crash. An external entity or inclusion must never bring the secret file's
text into a result or an error. atheris, when installed, adds a coverage-guided run.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, seed, strategies as st

from services.common import config
from services.common.ceb import CebError, parse_message
from tests.faults import hostile
from tests.faults.hostile import MARKUP, MUTATION, NUMBERS, TEXTS, mutate
from tests.faults.conftest import SEED
from tests.faults.fuzz import Tally, budget

TALLY = Tally("fuzz: CEB XML codec (hypothesis, atheris)")
SOURCE = "fuzz.xml"
SAMPLES = hostile.samples()
NAMES = sorted(SAMPLES)
LIMIT = 256 * 1024  # a size limit small enough to cross cheaply (the setting's default is 10 MiB)


@pytest.fixture(scope="module", autouse=True)
def row():
    started = time.monotonic()
    yield
    TALLY.row(time.monotonic() - started)


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "secret.txt"
    path.write_text(hostile.SECRET)
    return path


def examine(data: bytes, strategy: str, *, lenient: bool = True, max_bytes: int = LIMIT) -> str:
    """Parse; returns "accepted" or "refused"; anything else is a crash (recorded and raised)."""
    try:
        message = parse_message(data, source=SOURCE, lenient=lenient, xsd_dir="", max_bytes=max_bytes)
    except CebError as exc:
        TALLY.count(strategy, "refused")
        assert str(exc).startswith(f"{SOURCE}: ") and exc.detail.strip(), f"a refusal without a reason: {exc!r}"
        assert hostile.SECRET not in str(exc)
        return "refused"
    except Exception as exc:
        TALLY.crash(strategy, f"{type(exc).__name__}: {exc}")
        raise
    TALLY.count(strategy, "accepted")
    assert hostile.SECRET not in repr(message.documents) + repr(message.rejected)
    assert all(r.errors and all(e.strip() for e in r.errors) for r in message.rejected), "a rejection without reason"
    return "accepted"


# --- strategies ---------------------------------------------------------------------------

@budget(900)
@seed(SEED)
@given(st.sampled_from(NAMES), st.lists(MUTATION, min_size=1, max_size=6))
def test_mutated_messages_are_accepted_or_refused_with_a_reason(name, ops):
    examine(mutate(SAMPLES[name], ops), "byte mutations")


@budget(700)
@seed(SEED)
@given(st.sampled_from(NAMES), st.data())
def test_hostile_field_values_are_accepted_or_refused_with_a_reason(name, data):
    message = SAMPLES[name]
    field = data.draw(st.sampled_from(hostile.leaf_fields(message)))
    kind, value = data.draw(st.one_of(st.tuples(st.just("number"), NUMBERS), st.tuples(st.just("text"), TEXTS),
                                      st.tuples(st.just("markup"), MARKUP)))
    examine(hostile.with_field(message, field, value, raw=kind == "markup"), f"field values ({kind})",
            lenient=data.draw(st.booleans()))


_bad_bytes = st.sampled_from([b"\xff", b"\xc0\x80", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe4\xb8",
                              b"\x00", b"\xfe\xff", b"\xef\xbb\xbf"])


@budget(300)
@seed(SEED)
@given(st.sampled_from(NAMES), st.integers(0, 2**31), _bad_bytes,
       st.sampled_from(["insert", "utf-16", "gbk", "declared-gbk", "utf-16-declared"]))
def test_broken_encodings_are_refused_with_a_reason(name, where, bad, how):
    data = SAMPLES[name]
    if how == "insert":
        at = where % len(data)
        data = data[:at] + bad + data[at:]
    elif how == "declared-gbk":
        data = data.replace(b'encoding="UTF-8"', b'encoding="GBK"', 1).decode().encode("gbk", "replace")
    elif how == "utf-16-declared":
        data = data.decode().encode("utf-16-le")
    else:
        data = data.decode().encode(how, "replace")
    examine(data, f"encodings ({how})")


DOCUMENTS = {name: len(parse_message(SAMPLES[name], xsd_dir="").documents) for name in NAMES
             if name.startswith("generated")}


@budget(60)
@seed(SEED)
@given(st.sampled_from(sorted(DOCUMENTS)), st.integers(95, 260), st.booleans())
def test_more_than_a_hundred_documents_are_refused_and_up_to_a_hundred_taken(name, copies, lenient):
    total = DOCUMENTS[name] - 1 + copies
    fate = examine(hostile.with_documents(SAMPLES[name], copies), "100+ documents per message", lenient=lenient,
                   max_bytes=10 * 1024 * 1024)
    assert fate == ("refused" if total > 100 else "accepted"), f"{total} documents: {fate}"


@budget(40)
@seed(SEED)
@given(st.sampled_from(NAMES), st.integers(LIMIT // 2, LIMIT * 3))
def test_huge_documents_are_taken_up_to_the_limit_and_refused_above_it(name, size):
    message = SAMPLES[name]
    field = "note" if b"<ceb:note>" in message else hostile.leaf_fields(message)[-1]
    data = hostile.with_field(message, field, "长" * (size // 3))
    fate = examine(data, "huge documents")
    if len(data) > LIMIT:
        assert fate == "refused"


@budget(500)
@seed(SEED)
@given(st.one_of(st.binary(max_size=4000), st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_random_bytes_are_refused_with_a_reason(data):
    examine(data, "random bytes")


def test_entity_expansion_external_entities_and_inclusions_are_never_resolved(secret_file):
    fates = {name: examine(data, "attacks") for name, data in hostile.attacks(secret_file).items()}
    # every DTD is refused outright: no entity is expanded, no external one fetched
    assert all(fates[name] == "refused" for name in fates if name != "XInclude"), fates
    # an XInclude is not a DTD; it may be read as text, but is never followed (checked in examine)
    assert fates["XInclude"] in ("accepted", "refused")


@budget(150)
@seed(SEED)
@given(st.sampled_from(["billion laughs", "quadratic blowup", "external entity (file)", "external parameter entity",
                        "XInclude", "deep nesting 300"]), st.lists(MUTATION, max_size=3))
def test_mutated_attacks_are_never_resolved(secret_file, name, ops):
    examine(mutate(hostile.attacks(secret_file)[name], ops), "mutated attacks")


ATHERIS_RUNS = 50_000


def atheris_command(tmp_path: Path, *options: str) -> list[str]:
    """The coverage-guided run, from the sample messages; its memory bound is set inside it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, data in enumerate(SAMPLES.values()):
        (corpus / f"seed{i}").write_bytes(data)
    return [sys.executable, str(Path(__file__).with_name("atheris_ceb.py")), "-rss_limit_mb=0", f"-seed={SEED or 1}",
            "-max_len=65536", f"-artifact_prefix={tmp_path}/", *options, str(corpus)]


def run_atheris(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=config.PROJECT_ROOT,
                          env=dict(os.environ, PYTHONPATH=str(config.PROJECT_ROOT)))


def test_coverage_guided_fuzzing_finds_no_crash(tmp_path):
    """atheris (libFuzzer) steering by coverage of the codec, from the sample messages."""
    done = run_atheris(atheris_command(tmp_path, f"-runs={ATHERIS_RUNS}"))
    found = re.search(r"Done (\d+) runs", done.stderr)
    ran = int(found.group(1)) if found else 0
    TALLY.tried["coverage-guided (atheris)"] += ran
    if done.returncode != 0:
        TALLY.crashes.append(f"atheris: {done.stderr[-500:]}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert ran >= ATHERIS_RUNS


PARENT_PEAK_MB = 2300  # over libFuzzer's default rss limit (2048 MB)


def test_a_big_parent_does_not_count_against_the_fuzz_runs_memory(tmp_path):
    """A CI run's pytest had peaked at 2.4 GB when it started atheris, whose default rss limit read
    that peak (ru_maxrss survives execve) and called the codec out of memory on its first second."""
    parent = ("import subprocess, sys, json\n"
              f"peak = bytearray({PARENT_PEAK_MB} << 20)\n"
              "for i in range(0, len(peak), 4096): peak[i] = 1\n"
              "sys.exit(subprocess.run(json.loads(sys.argv[1])).returncode)\n")
    command = atheris_command(tmp_path, "-runs=100000000", "-max_total_time=4")
    done = run_atheris([sys.executable, "-c", parent, json.dumps(command)], timeout=120)
    assert max(map(int, re.findall(r"rss: (\d+)Mb", done.stderr))) >= PARENT_PEAK_MB, "the parent's peak is what libFuzzer reads"
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"Done \d+ runs in [4-9] second", done.stderr), done.stderr[-2000:]
