"""Regenerate the CEB-derived Avro schemas in schemas/avro/ from the field table.

The documents sandan receives are carried on Kafka in the standard's own field names, so
their Avro records are derived from services/common/ceb/fields.json rather than typed by
hand: required → plain type, optional → ["null", T] with default null, decimal → long with
a fixed scale of 5 (exact, and about twice as fast in fastavro as the decimal logical type;
see README), int → int. sandan's own records (receipts, verdicts, dead letters ...) are
written by hand in the same folder. Usage: python scripts/gen_avro.py
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIELDS = json.loads((ROOT / "services" / "common" / "ceb" / "fields.json").read_text(encoding="utf-8"))

# record name, message code, head entity, body entity
DOCUMENTS = [
    ("Order", "CEB311", "OrderHead", "OrderList"),
    ("Payment", "CEB411", "PaymentHead", None),
    ("Logistics", "CEB511", "LogisticsHead", None),
    ("LogisticsStatus", "CEB513", "LogisticsStatus", None),
    ("Inventory", "CEB621", "InventoryHead", "InventoryList"),
    ("InvtCancel", "CEB623", "InvtCancel", None),
    ("InvtRefund", "CEB625", "InvtRefundHead", "InvtRefundList"),
    ("Delivery", "CEB711", "DeliveryHead", "DeliveryList"),
]


def avro_field(spec: dict) -> dict:
    base = {"string": "string", "int": "int", "decimal": "long"}[spec["type"]]
    field: dict = {"name": spec["name"]}
    if spec["type"] == "decimal":
        field["doc"] = "amount in units of 0.00001 (scale 5)"
        field["sandan.scale"] = 5
    field["type"] = base if spec["required"] else ["null", base]
    if not spec["required"]:
        field["default"] = None
    return field


# sandan's own field, not the standard's: the enterprise code that sent the document (the
# gateway's authenticated caller, or the publisher's); only it may change or withdraw it.
SUBMITTER = {"name": "submitter", "type": ["null", "string"], "default": None,
             "doc": "enterprise code that submitted the document (not in the CEB XML)"}
# v1 had no submitter; it is kept in schemas/avro/superseded/ so old records still decode.
VERSION = 2


def record(name: str, code: str, head: str, body: str | None) -> dict:
    fields = [avro_field(f) for f in FIELDS[head]]
    if body:
        fields.append({"name": "lines", "type": {"type": "array", "items": {
            "type": "record", "name": body, "fields": [avro_field(f) for f in FIELDS[body]]}}})
    fields.append(SUBMITTER)
    return {"type": "record", "name": name, "namespace": "sandan.ceb", "doc": f"{code} ({head})",
            "sandan.version": VERSION, "sandan.message": code, "fields": fields}


def main() -> None:
    out = ROOT / "schemas" / "avro"
    out.mkdir(parents=True, exist_ok=True)
    for name, code, head, body in DOCUMENTS:
        path = out / f"{name[0].lower()}{name[1:]}.avsc"
        path.write_text(json.dumps(record(name, code, head, body), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
