"""`sandan check` on mutated CEB XML: exit 0 with JSON lines or exit 2 with one error line,
never a traceback (issue 14, "Done when")."""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from lxml import etree

from services.cli import check as check_cli
from services.common.ceb.writer import write_message
from services.common.config import PROJECT_ROOT
from services.tools.generator import generate

SETS = generate(3, buyers=2, fault_share="0.34", seed=77)
KINDS = (("order", "CEB311"), ("payment", "CEB411"), ("logistics", "CEB511"), ("inventory", "CEB621"))
FILES = {code: write_message(code, [copy.deepcopy(getattr(s, kind)) for s in SETS]) for kind, code in KINDS}
CEB = "{http://www.chinaport.gov.cn/ceb}"

GARBAGE = st.one_of(
    st.sampled_from(["", " ", "-1", "-0.01", "+5", "1e5", "1,000.00", "NaN", "Infinity", "0x10", "12.500000",
                     "12.123456", "9" * 40, "9" * 17 + ".99999", "ABCDEFGHIJKLMN", "20251301000000", "20250230120000",
                     "99991231235959", "00000000000000", "4", "0", "２０２５", "ｘ", "abc" * 200, "\u202e", "1.", ".5"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
)


def _leaves(root) -> list:
    """Field elements of the business documents (not BaseTransfer, not the signature)."""
    return [e for e in root.iter() if isinstance(e.tag, str) and len(e) == 0 and e.tag.startswith(CEB)
            and e.getparent().tag != f"{CEB}BaseTransfer"]


def _mutated(choices: list[tuple[int, int, str | None]]) -> dict[str, bytes]:
    files = dict(FILES)
    codes = sorted(files)
    for file_pick, leaf_pick, text in choices:
        code = codes[file_pick % len(codes)]
        root = etree.fromstring(files[code])
        leaves = _leaves(root)
        leaf = leaves[leaf_pick % len(leaves)]
        if text is None:
            leaf.getparent().remove(leaf)  # a field missing altogether
        else:
            leaf.text = text
        files[code] = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return files


def _run_check(folder: Path, capsys) -> tuple[int, str, str]:
    rc = check_cli.run(argparse.Namespace(paths=[str(folder)], year_to_date=None))
    out, err = capsys.readouterr()
    return rc, out, err


def _assert_clean(rc: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert rc in (0, 2)
    if rc == 0:
        for line in out.splitlines():
            record = json.loads(line)
            assert isinstance(record["refused"], list)
    else:
        assert out == "" and len(err.strip().splitlines()) == 1


MUTATIONS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.one_of(st.none(), GARBAGE)),
                     min_size=1, max_size=4)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(MUTATIONS)
def test_mutated_fields_never_make_a_traceback(capsys, choices):
    with tempfile.TemporaryDirectory() as tmp:
        for code, data in _mutated(choices).items():
            (Path(tmp) / f"{code}.xml").write_bytes(data)
        _assert_clean(*_run_check(Path(tmp), capsys))


def test_a_refused_document_is_on_its_declarations_line(tmp_path, capsys):
    root = etree.fromstring(FILES["CEB411"])
    first_payment = next(root.iter(f"{CEB}PaymentHead"))
    first_payment.find(f"{CEB}amountPaid").text = "12.3x"
    files = dict(FILES, CEB411=etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    for code, data in files.items():
        (tmp_path / f"{code}.xml").write_bytes(data)
    rc, out, err = _run_check(tmp_path, capsys)
    assert rc == 0, err
    lines = {(line["ebpCode"], line["orderNo"]): line for line in map(json.loads, out.splitlines())}
    line = lines[(SETS[0].order["ebpCode"], SETS[0].order["orderNo"])]
    assert line["status"] == "incomplete" and line["missing"] == ["payment"]
    assert [r["guid"] for r in line["refused"]] == [SETS[0].payment["guid"]]
    assert "amountPaid" in line["refused"][0]["message"]
    assert line["refused"][0]["field"] == "PaymentHead/amountPaid"
    assert all(line["refused"] == [] for key, line in lines.items() if key[1] != SETS[0].order["orderNo"])


def test_the_command_line_entry_point_prints_no_traceback(tmp_path):
    files = _mutated([(0, 5, "ABCDEFGHIJKLMN"), (1, 9, "-1"), (2, 3, None), (3, 7, "9" * 40)])
    for code, data in files.items():
        (tmp_path / f"{code}.xml").write_bytes(data)
    result = subprocess.run([sys.executable, "-m", "services.cli", "check", str(tmp_path)], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    _assert_clean(result.returncode, result.stdout, result.stderr)
    assert result.returncode == 0 and result.stdout.strip()


def test_a_message_refused_as_a_whole_does_not_silence_the_other_files(tmp_path, capsys):
    """DOMAIN §2a: the other documents go on. A message refused whole (not XML, a lower-case
    message guid, more than 100 documents) is a line of its own, status refused, with its code."""
    for code, data in FILES.items():
        (tmp_path / f"{code}.xml").write_bytes(data)
    good = {(line["ebpCode"], line["orderNo"]): line
            for line in map(json.loads, (_run_check(tmp_path, capsys)[1]).splitlines())}
    root = etree.fromstring(FILES["CEB311"])
    lower_guid = root.get("guid").lower()
    (tmp_path / "lower.xml").write_bytes(FILES["CEB311"].replace(root.get("guid").encode(), lower_guid.encode(), 1))
    (tmp_path / "broken.xml").write_bytes(b"<ceb:CEB311Message xmlns:ceb='http://www.chinaport.gov.cn/ceb'><unclosed>")
    head = next(root.iter(f"{CEB}Order"))
    parent = head.getparent()
    for _ in range(101 - len(parent.findall(f"{CEB}Order"))):
        parent.append(copy.deepcopy(head))
    (tmp_path / "many.xml").write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    rc, out, err = _run_check(tmp_path, capsys)
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    [whole] = [line for line in lines if line["status"] == "refused" and line["orderNo"] is None]
    assert sorted(r["message"].split(":")[0].rsplit("/", 1)[-1] for r in whole["refused"]) == [
        "broken.xml", "lower.xml", "many.xml"]
    assert all(r["code"] for r in whole["refused"])
    assert {(line["ebpCode"], line["orderNo"]): line for line in lines if line is not whole} == good
