"""What the returns service accepts as input, and the records its commands write
(services/returns/inputs.py, arrivals.py, reports.py)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.returns import arrivals, inputs, reports

from . import samples as s

D = Decimal


def _error(call, *args) -> inputs.InputError:
    with pytest.raises(inputs.InputError) as err:
        call(*args)
    return err.value


def test_a_cleared_verdict_becomes_a_declaration_summary():
    decl = inputs.declaration_from_verdict(s.verdict())
    assert decl["declarationId"] == f"{s.EBP}:{s.ORDER}"
    assert (decl["logisticsCode"], decl["logisticsNo"], decl["assureCode"]) == (s.CARRIER, s.WAYBILL, s.AGENT)
    assert (decl["taxTotal"], decl["taxableValue"], decl["clearedAt"]) == (D("28.21"), D("310.00"), s.CLEARED)
    assert decl["lines"] == [{"gnum": 1, "qty": D(2), "totalPrice": D("200.00"), "gcode": "1901101000"},
                             {"gnum": 2, "qty": D(1), "totalPrice": D("100.00"), "gcode": "1901101000"}]


@pytest.mark.parametrize("bend, code, field", [
    (lambda v: v.update(status="rejected"), inputs.NOT_VERIFIED, "status"),
    (lambda v: v.update(inventory=None), inputs.INVALID_FIELD, "inventory"),
    (lambda v: v["inventory"].update(lines=[]), inputs.INVALID_FIELD, "inventory/InventoryList"),
    (lambda v: v["inventory"]["lines"][1].update(gnum=1), inputs.INVALID_FIELD, "inventory/InventoryList[2]/gnum"),
    (lambda v: v["inventory"]["lines"][0].update(qty=D(0)), inputs.INVALID_FIELD, "inventory/InventoryList[1]/qty"),
    (lambda v: v.update(taxTotal=D("-1")), inputs.INVALID_FIELD, "Verdict/taxTotal"),
    (lambda v: (v.update(assureCode=None), v["inventory"].update(assureCode=" ")), inputs.INVALID_FIELD,
     "Verdict/assureCode"),
    (lambda v: v["inventory"].update(logisticsNo=""), inputs.INVALID_FIELD, "inventory/logisticsNo"),
])
def test_a_verdict_the_service_cannot_use_is_an_input_error_naming_the_field(bend, code, field):
    verdict = s.verdict()
    bend(verdict)
    err = _error(inputs.declaration_from_verdict, verdict)
    assert (err.code, err.field) == (code, field)


def test_bad_reports_cancellations_refunds_and_arrivals_are_input_errors():
    assert _error(inputs.check_report, {**s.report(), "decidedAt": 0}).field == "CustomsReport/decidedAt"
    assert _error(inputs.check_cancel, {**s.cancel(), "appTime": "2025-03-05"}).field == "InvtCancel/appTime"
    bad_line = s.refund()
    bad_line["lines"][0]["gnum"] = 0
    assert _error(inputs.check_refund, bad_line).field == "InvtRefundList[1]/gnum"
    assert _error(inputs.parcel_from_arrival, s.arrival(sorting="maybe")).field == "WarehouseArrival/sorting"
    assert _error(inputs.parcel_from_arrival, s.arrival(lines=((1, "0"),))).field == "WarehouseArrival/lines[1]/qty"


def test_a_receipt_copies_only_the_identifying_fields_never_personal_data():
    document = inputs.receipt_document(s.refund())
    assert document["agentCode"] == s.AGENT and document["message"] == "CEB625"
    assert not {"buyerName", "buyerIdNumber", "buyerTelephone"} & set(document)


def test_arrival_lines_parse_from_gnum_qty_pairs():
    assert arrivals.parse_lines("1:2, 2:0.5") == [{"gnum": 1, "qty": D(2)}, {"gnum": 2, "qty": D("0.5")}]
    assert arrivals.parse_lines("") == []


@pytest.mark.parametrize("text", ["1", "x:1", "0:1", "1:0", "1:-2", "1:abc", "1:NaN"])
def test_arrival_lines_that_are_not_gnum_qty_are_refused(text):
    with pytest.raises(ValueError):
        arrivals.parse_lines(text)


def test_an_arrival_without_an_id_is_named_by_warehouse_waybill_and_time():
    one = arrivals.arrival_record(logistics_no="W1", sorting="fit", arrived_at=5, warehouse_code="WH")
    assert one["arrivalId"] == "WH:W1:5"
    assert arrivals.arrival_record(logistics_no="W1", sorting="fit", arrived_at=5, warehouse_code="WH",
                                   arrival_id="mine")["arrivalId"] == "mine"


def test_a_ceb711_names_one_whole_fit_parcel_per_waybill():
    found = arrivals.arrivals_from_delivery(s.delivery(waybills=("W1", "W2", "W1")))
    assert [(a["logisticsNo"], a["arrivalId"], a["lines"], a["sorting"]) for a in found] == [
        ("W1", "CEB711:DELIVERY-1:W1", [], "fit"), ("W2", "CEB711:DELIVERY-1:W2", [], "fit")]
    assert {a["warehouseCode"] for a in found} == {s.WAREHOUSE}
    assert found[0]["arrivedAt"] == s.at("20250320100000")


def test_a_customs_report_is_named_by_what_it_says():
    report = reports.customs_report(order_no="O1", ebp_code="E1", status="800", decided_at=7)
    assert report["reportId"] == "cli:E1:O1:800:7" and report["declarationId"] == "E1:O1"
    with pytest.raises(ValueError):
        reports.customs_report(order_no="O1", ebp_code="E1", status="900", decided_at=7)
