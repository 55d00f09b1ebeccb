"""The fault table's "input records not acted on" (tests/faults/accounting.py), on synthetic
evidence: every input answered gives none; one record with no answer is named, by service."""
from __future__ import annotations

from tests.faults.accounting import Input, answers, input_of, not_acted_on

DECL = "EBP1:SO1"


def _inputs(**extra: list[Input]) -> dict[str, list[Input]]:
    found = {
        "documents.order": [Input("documents.order", 0, 0, "G-ORDER"), Input("documents.order", 0, 1, "G-ORDER")],
        "documents.payment": [Input("documents.payment", 0, 0, "G-PAY")],
        "declarations.matched": [Input("declarations.matched", 2, 7, DECL)],
        "guarantee.commands": [Input("guarantee.commands", 1, 0, "register:A1")],
        "declarations.cleared": [Input("declarations.cleared", 2, 3, DECL)],
        "customs.reports": [Input("customs.reports", 2, 0, "report:release:EBP1:SO1")],
        "warehouse.arrivals": [Input("warehouse.arrivals", 0, 4, "faults:R1")],
        "returns.waybills": [Input("returns.waybills", 0, 0, "LN1|LC1|SO1|EBP1")],
    }
    for topic, records in extra.items():
        found.setdefault(topic.replace("_", "."), []).extend(records)
    return found


def _answers(receipts=("G-ORDER", "G-PAY"), dead=(), verdicts=()):
    outputs = {
        "receipts": [{"documentGuid": g} for g in receipts],
        "declarations.verdicts": list(verdicts),
        "declarations.cleared": [{"declarationId": DECL}],
        "guarantee.ledger": [{"commandId": "register:A1"}, {"commandId": None}],
        "returns.arrivals": [{"arrivalId": "faults:R1"}],
    }
    buckets = [{"orderNo": "SO1", "declarations": [{"declarationId": DECL, "ebpCode": "EBP1",
                                                    "seen": ["report:release:EBP1:SO1"]}]}]
    waybills = [{"logisticsNo": "LN1", "links": [{"logisticsCode": "LC1", "orderNo": "SO1", "ebpCode": "EBP1"}],
                 "held": []}]
    return answers(outputs, buckets, waybills, list(dead), short_of=lambda full: full.removeprefix("run1-"))


def test_every_input_answered_leaves_nothing_not_acted_on():
    # the order sent twice (same guid) is answered by its one receipt
    assert not_acted_on(_inputs(), _answers()) == {}


def test_one_record_without_an_answer_is_named_under_its_service():
    gaps = not_acted_on(_inputs(documents_logistics=[Input("documents.logistics", 1, 5, "G-WAYBILL")]), _answers())
    assert gaps == {"order_match": ["documents.logistics/1@5 G-WAYBILL"]}


def test_a_dead_letter_accounts_for_its_offset_only():
    bad = [Input("documents.inventory", 0, 9, None), Input("documents.inventory", 0, 10, None)]
    dead = [{"source": "run1-documents.inventory", "partition": 0, "offset": 9}]
    gaps = not_acted_on(_inputs(documents_inventory=bad), _answers(dead=dead))
    assert gaps == {"order_match": ["documents.inventory/0@10 (unreadable)"]}


def test_a_skipped_record_of_each_service_is_counted():
    found = _answers(receipts=("G-ORDER",))          # the payment never answered
    found.ids["ledger commands"].clear()             # the register command never applied
    found.ids["returns inputs seen"].clear()         # the release report never taken
    gaps = not_acted_on(_inputs(), found)
    assert gaps == {"order_match": ["documents.payment/0@0 G-PAY"],
                    "tax_guarantee": ["guarantee.commands/1@0 register:A1"],
                    "returns": ["customs.reports/2@0 report:release:EBP1:SO1"]}


def test_a_waybill_without_a_receipt_is_taken_in_by_its_orders_incomplete_verdict_only_if_not_missing():
    waybill = [input_of("documents.logistics", 1, 5, {"guid": "G-WAYBILL", "orderNo": "SO2"})]
    without_inventory = {"orderNo": "SO2", "missing": ["inventory"]}
    assert not_acted_on(_inputs(documents_logistics=waybill), _answers(verdicts=[without_inventory])) == {}
    without_waybill = {"orderNo": "SO2", "missing": ["logistics"]}
    assert not_acted_on(_inputs(documents_logistics=waybill), _answers(verdicts=[without_waybill])) == {
        "order_match": ["documents.logistics/1@5 G-WAYBILL"]}


def test_ids_of_input_records():
    assert input_of("documents.order", 0, 1, {"guid": "G1"}) == Input("documents.order", 0, 1, "G1")
    assert input_of("customs.reports", 0, 1, {"reportId": "release:X"}).ident == "report:release:X"
    assert input_of("returns.waybills", 0, 1, {"logisticsNo": "LN", "logisticsCode": "LC", "orderNo": "SO",
                                              "ebpCode": "E"}).ident == "LN|LC|SO|E"
    assert input_of("declarations.matched", 0, 1, {}).ident is None
    assert input_of("documents.logistics", 0, 1, None) == Input("documents.logistics", 0, 1, None, (None,))
