"""Regenerate services/common/ceb/fields.json from the standard's field table.

The field table (`shared/ceb/FIELDS.md`, parsed from the official 202205 XSD) is read at
build time only; the generated JSON ships with the package so nothing reads ../shared at
run time. Usage: python scripts/gen_ceb_fields.py ../shared/ceb/FIELDS.md
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "services" / "common" / "ceb" / "fields.json"
_RESTRICTION = re.compile(r"(length|maxLength|minLength|fractionDigits|totalDigits)=(\d+)")
# Time formats named in the doc column ("格式:YYYYMMDDhhmmss"), longest first.
_TIME_FORMATS = ("YYYYMMDDhhmmssSSS", "YYYYMMDDhhmmss", "YYYYMMDD")
_UPPER_CASE = "英文字母大写"


def parse_restriction(text: str) -> dict:
    words = text.split()
    base = words[0] if words else "string"
    kind = {"decimal": "decimal", "xs:int": "int", "int": "int"}.get(base, "string")
    spec: dict = {"type": kind}
    for key, value in _RESTRICTION.findall(text):
        spec[key] = int(value)
    return spec


def parse_doc(doc: str) -> dict:
    """What the doc column adds to the restriction: a time format, upper case only."""
    extra: dict = {}
    form = next((f for f in _TIME_FORMATS if f in doc), None)
    if form:
        extra["format"] = form
    if _UPPER_CASE in doc:
        extra["case"] = "upper"
    return extra


def parse(md: str) -> dict:
    entities: dict[str, list[dict]] = {}
    current = None
    for line in md.splitlines():
        if line.startswith("## "):
            current = line[3:].split(" — ")[0].strip()
            entities[current] = []
            continue
        if current is None or not line.startswith("| ") or line.startswith("| element") or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name, min_occurs, max_occurs, restriction = cells[0], cells[1], cells[2], cells[3]
        if name.startswith("@") or ":" in name or restriction.startswith("ceb:"):
            continue  # attributes, references and nested entities are handled structurally
        if not restriction:
            continue
        field = {"name": name, "required": min_occurs == "1"}
        field.update(parse_restriction(restriction))
        field.update(parse_doc(cells[4] if len(cells) > 4 else ""))
        entities[current].append(field)
    return {name: fields for name, fields in entities.items() if fields}


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "ceb" / "FIELDS.md"
    table = parse(src.read_text(encoding="utf-8"))
    OUT.write_text(json.dumps(table, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(table)} entities)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
