"""`sandan ceb parse FILE` as a user runs it: JSON lines out, one clean line on failure."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.cli import ceb as ceb_cli

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "ceb"
ORDER = DATA / "CEB311_order.xml"
BUYER_ID = "110101199001011234"


def sandan(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("CEB_XSD_DIR", None)
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, env=environment,
                          capture_output=True, timeout=120, check=False)


def assert_one_clean_error_line(result: subprocess.CompletedProcess, path: str) -> str:
    assert result.returncode == 2
    assert result.stdout == b""
    stderr = result.stderr.decode("utf-8")
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith(f"sandan ceb parse: {path}: ")
    return stderr


def test_prints_one_json_object_per_document():
    result = sandan("ceb", "parse", str(ORDER))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode("utf-8").splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["message"] == "CEB311" and first["orderNo"] == "O202403010001"
    assert first["acturalPaid"] == "338.21" and first["taxTotal"] == "28.21" and first["discount"] == "0"
    assert first["buyerName"] == "张三"
    assert [line["gnum"] for line in first["lines"]] == [1, 2]
    assert first["lines"][0]["qty"] == "2"


def test_int_fields_print_as_numbers():
    result = sandan("ceb", "parse", str(DATA / "CEB511_logistics.xml"))
    waybill = json.loads(result.stdout.decode("utf-8").splitlines()[0])
    assert waybill["packNo"] == 1 and waybill["freight"] == "10.00000"


def test_missing_file():
    assert "No such file or directory" in assert_one_clean_error_line(sandan("ceb", "parse", "nope.xml"), "nope.xml")


def test_directory_instead_of_file():
    assert_one_clean_error_line(sandan("ceb", "parse", str(DATA)), str(DATA))


def test_unreadable_file(monkeypatch, capsys):
    def forbidden(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("builtins.open", forbidden)
    code = ceb_cli.run(argparse.Namespace(file="secret.xml", xsd_dir=""))
    assert code == 2
    assert capsys.readouterr().err == "sandan ceb parse: secret.xml: Permission denied\n"


def test_malformed_file(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_bytes(ORDER.read_bytes()[:-50])
    assert "not well-formed XML" in assert_one_clean_error_line(sandan("ceb", "parse", str(path)), str(path))


def test_invalid_document_names_field_and_document_but_no_personal_data(tmp_path):
    path = tmp_path / "bad.xml"
    data = ORDER.read_bytes().replace(b"<ceb:acturalPaid>338.21<", b"<ceb:acturalPaid>338.2x<", 1)
    path.write_bytes(data.replace(BUYER_ID.encode(), BUYER_ID.encode() * 4, 1))
    stderr = assert_one_clean_error_line(sandan("ceb", "parse", str(path)), str(path))
    assert "CEB311 document guid=03110001-0000-4000-8000-000000000000 orderNo=O202403010001" in stderr
    assert "field OrderHead/acturalPaid: '338.2x' is not a decimal number" in stderr
    assert "field OrderHead/buyerIdNumber: is 72 characters long, at most 60 allowed" in stderr
    assert BUYER_ID not in stderr


def test_xsd_dir_option(tmp_path):
    swapped = ORDER.read_bytes().replace(
        b"<ceb:appType>1</ceb:appType>\n      <ceb:appTime>20240301103000</ceb:appTime>",
        b"<ceb:appTime>20240301103000</ceb:appTime>\n      <ceb:appType>1</ceb:appType>", 1)
    path = tmp_path / "swapped.xml"
    path.write_bytes(swapped)
    assert sandan("ceb", "parse", str(path)).returncode == 0
    xsd_dir = REPO.parent / "shared" / "ceb" / "xsd"
    stderr = assert_one_clean_error_line(sandan("ceb", "parse", str(path), "--xsd-dir", str(xsd_dir)), str(path))
    assert "XSD: Element 'ceb:appTime'" in stderr
    missing = assert_one_clean_error_line(sandan("ceb", "parse", str(path), "--xsd-dir", str(tmp_path)), str(path))
    assert "CEB XSD not found" in missing


@pytest.mark.parametrize("path", sorted(DATA.glob("CEB*.xml")), ids=lambda p: p.name)
def test_every_sample_prints_through_the_command_code(path, capsys):
    assert ceb_cli.run(argparse.Namespace(file=str(path), xsd_dir="")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out and all(json.loads(line)["message"] == path.name.split("_")[0] for line in out)
