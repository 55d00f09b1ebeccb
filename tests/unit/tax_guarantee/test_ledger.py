"""Ledger entries are deterministic; replaying them rebuilds accounts and bills in any order."""
from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

from services.common.avro import codec
from services.tax_guarantee import ledger, rules
from services.tax_guarantee.account import Bill

from .samples import CODE, NOW_MS, TODAY, command


def history() -> list[dict]:
    """register, three deductions, a partial void, a settlement, an amendment, a void of the
    settled bill (a refund): as ledger entries."""
    entries = []
    change = rules.apply(command("register", kind="bank_guarantee", amount="1000", valid_from=date(2025, 1, 1),
                                 valid_to=date(2025, 12, 31), command_id="c1"), None, {})
    entries.append(ledger.entry(change, key=ledger.command_key("c1"), at=NOW_MS,
                                command=command("register", command_id="c1")))
    acct, bills = change.account, {}
    for decl, tax in (("E:1", "100"), ("E:2", "50.5"), ("E:3", "20")):
        change = rules.deduct(acct, decl, Decimal(tax), TODAY)
        entries.append(ledger.entry(change, key=ledger.deduction_key(decl), at=NOW_MS))
        acct, bills = change.account, {**bills, decl: change.bills[0]}
    for cid, cmd in (("c2", command("void", declaration_id="E:2", amount="10", command_id="c2")),
                     ("c3", command("settle", bills=("E:1",), ent_duty_no="N1", command_id="c3")),
                     ("c4", command("amend", amount="900", command_id="c4")),
                     ("c5", command("void", declaration_id="E:1", amount="30", command_id="c5"))):
        change = rules.apply(cmd, acct, bills)
        entries.append(ledger.entry(change, key=ledger.command_key(cid), at=NOW_MS, command=cmd))
        acct = change.account
        bills.update({b.declaration_id: b for b in change.bills})
    return entries


def test_an_entry_id_comes_from_what_caused_it():
    entries = history()
    assert [e["entryId"] for e in entries] == [
        f"{CODE}/command/c1", f"{CODE}/deduct/E:1", f"{CODE}/deduct/E:2", f"{CODE}/deduct/E:3",
        f"{CODE}/command/c2", f"{CODE}/command/c3", f"{CODE}/command/c4", f"{CODE}/command/c5"]
    assert [e["seq"] for e in entries] == list(range(1, 9))
    assert (entries[-1]["action"], entries[-1]["declarationId"]) == ("refund", "E:1")
    assert entries == history()  # the same changes give the very same entries


def test_entries_fit_the_avro_schema_exactly():
    wire = codec()
    for entry in history():
        assert wire.decode(wire.encode("sandan.LedgerEntry", entry))[1] == entry


def test_replay_rebuilds_the_account_and_its_bills():
    rebuilt = ledger.replay(history())[CODE]
    a = rebuilt.account
    assert (a.guaranteed, a.outstanding, a.seq) == (Decimal(900), Decimal("60.5"), 8)
    assert rebuilt.bills == {"E:1": Bill("E:1", Decimal(100), settled_by="N1", refunded=Decimal(30)),
                             "E:2": Bill("E:2", Decimal("50.5"), Decimal(10)), "E:3": Bill("E:3", Decimal(20))}
    assert rebuilt.problems == []


def test_replay_ignores_order_and_repeats():
    entries = history()
    shuffled = entries + entries[2:5]
    random.Random(3).shuffle(shuffled)
    assert ledger.replay(shuffled)[CODE] == ledger.replay(entries)[CODE]


def test_replay_reports_a_missing_entry():
    entries = history()
    problems = ledger.replay(entries[:2] + entries[3:])[CODE].problems
    assert any("seq 3" in p for p in problems)
    assert any("bills add up" in p for p in problems)


def forked() -> list[dict]:
    """history()'s first two entries, then a deduction that Redis lost (seq 3) and another one
    decided on the promoted replica without it (seq 3 again), and a freeze after that."""
    entries = history()[:2]
    acct = ledger.replay(entries)[CODE].account
    for decl, tax, at in (("E:lost", "7", NOW_MS), ("E:new", "20", NOW_MS + 1)):
        change = rules.deduct(acct, decl, Decimal(tax), TODAY)
        entries.append(ledger.entry(change, key=ledger.deduction_key(decl), at=at))
    change = rules.apply(command("freeze", command_id="f1"), change.account, {})
    entries.append(ledger.entry(change, key=ledger.command_key("f1"), at=NOW_MS + 2,
                                command=command("freeze", command_id="f1")))
    return entries


def test_a_forked_seq_counts_every_entry_and_is_reported_once_as_a_lost_write():
    entries = forked()
    assert [e["seq"] for e in entries] == [1, 2, 3, 3, 4]
    rebuilt = ledger.replay(entries[::-1])[CODE]
    a = rebuilt.account
    assert (a.outstanding, a.state, a.seq) == (Decimal(127), "frozen", 4)  # 100 + 7 + 20: no entry lost
    assert set(rebuilt.bills) == {"E:1", "E:lost", "E:new"}
    [problem] = rebuilt.problems
    assert problem.startswith(f"seq 3 is used by 2 entries ({CODE}/deduct/E:lost, {CODE}/deduct/E:new): a Redis"
                              " write lost in a failover")
    assert "add up to outstanding 127" in problem and "the last entry says 120" in problem
    assert rebuilt.forks == [(3, [f"{CODE}/deduct/E:lost", f"{CODE}/deduct/E:new"])]


def test_a_correction_restates_the_account_past_every_seq_and_resolves_the_fork():
    rebuilt = ledger.replay(forked())[CODE]
    fix = ledger.correction(rebuilt, NOW_MS + 9, "cli:ops")
    assert (fix["entryId"], fix["seq"], fix["action"], fix["amount"], fix["outstanding"], fix["state"]) == (
        f"{CODE}/correct/4", 5, "correct", Decimal(7), Decimal(127), "frozen")
    assert codec().decode(codec().encode("sandan.LedgerEntry", fix))[1] == fix
    again = ledger.replay([*forked(), fix, fix])[CODE]
    assert again.problems == [] and again.forks == []
    assert again.notes == [f"seq 3 is used by 2 entries ({CODE}/deduct/E:lost, {CODE}/deduct/E:new), a Redis write"
                           f" lost in a failover; corrected by {CODE}/correct/4"]
    assert (again.account.outstanding, again.account.seq) == (Decimal(127), 5)


def test_a_correction_that_does_not_match_its_entries_is_a_problem():
    fix = dict(ledger.correction(ledger.replay(forked())[CODE], NOW_MS, "x"), outstanding=Decimal(120))
    assert any("restates outstanding 120" in p for p in ledger.replay([*forked(), fix])[CODE].problems)


def test_in_a_fork_a_field_takes_the_value_of_the_change_applied_last():
    """Two amends lost (seq 2 and 3), then one on the promoted replica (seq 2 again, later)."""
    entries = history()[:1]
    base = ledger.replay(entries)[CODE].account
    acct = base
    for cid, amount, at in (("lost-1", "800", NOW_MS), ("lost-2", "900", NOW_MS + 1)):
        cmd = command("amend", amount=amount, command_id=cid)
        change = rules.apply(cmd, acct, {})
        entries.append(ledger.entry(change, key=ledger.command_key(cid), at=at, command=cmd))
        acct = change.account
    cmd = command("amend", amount="1200", command_id="new")
    entries.append(ledger.entry(rules.apply(cmd, base, {}), key=ledger.command_key("new"), at=NOW_MS + 5000,
                                command=cmd))
    assert [e["seq"] for e in entries] == [1, 2, 3, 2]
    rebuilt = ledger.replay(entries)[CODE]
    assert rebuilt.forks and (rebuilt.account.guaranteed, rebuilt.account.seq) == (Decimal(1200), 3)


def test_refused_commands_come_from_their_dead_letters_and_nothing_else():
    """What a rebuild restores from deadletter: the refusals the service decided (and recorded),
    once per command; not undecodable input, processing errors, other topics' dead letters or
    commands refused for their shape (those were never recorded, and are refused alike again)."""
    from services.common.deadletter import dead_letter

    from .samples import command_record

    wire = codec()

    def dead(record, code="BILL_FULLY_VOIDED", source="p-guarantee.commands", payload=None) -> dict:
        body = payload if payload is not None else wire.encode("sandan.GuaranteeCommand", record)
        return dead_letter(source, 0, 1, CODE.encode(), body, code, "declarationId", "voided in full already",
                           record["commandId"]).record

    void = command_record("void", commandId=" cancel:EBP:O1 ", declarationId="EBP:O1", amount="10")
    letters = [dead(void), dead(void),                                             # redelivered: twice
               dead(command_record("close", commandId="c1"), code="PROCESSING_ERROR"),
               dead(command_record("close", commandId="c2"), code="UNDECODABLE", payload=b"junk"),
               dead(command_record("close", commandId="c3"), source="p-documents.order"),
               dead(command_record("void", commandId="v0", declarationId="EBP:O1", amount="0"), code="INVALID_AMOUNT")]
    [found] = ledger.command_refusals(letters, "p-guarantee.commands", wire.decode)
    assert (found.assure_code, found.key) == (CODE, "command/cancel:EBP:O1")
    assert (found.refusal.code, found.refusal.field, found.refusal.message) == \
        ("BILL_FULLY_VOIDED", "declarationId", "voided in full already")
