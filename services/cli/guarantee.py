"""`sandan guarantee ACTION`: tax guarantee accounts (DOMAIN §4) from the command line.

register, amend, extend, freeze, unfreeze, close, void and settle are checked against the
account in Redis first, so a refusal is printed at once; then they go to guarantee.commands,
where the tax_guarantee worker checks them again (the account may have moved meanwhile) and
applies them, and the command line waits for the outcome the worker records. show and list
read Redis; rebuild replays guarantee.ledger and compares (or repairs) Redis.

Exit status: 0 applied (rebuild: Redis equals the ledger), 1 refused (rebuild: differences),
2 Kafka or Redis unreachable, 3 no outcome within --wait seconds (is the worker running?).
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import uuid
from decimal import Decimal

from services.common.money import FEN, AmountError, parse_amount

COMMANDS = {
    "register": "open an account: --kind bank_guarantee (保函) | cash_deposit | guarantee_insurance",
    "amend": "change the guaranteed amount (never below the tax outstanding)",
    "extend": "move the end of the validity period later",
    "freeze": "stop deductions (a bank's freeze)",
    "unfreeze": "allow deductions again",
    "close": "close an account with no tax outstanding",
    "void": "give back (part of) one declaration's tax: cancellation or return",
    "settle": "give back the bills of one customs payment notice (entDutyNo)",
}
APPLIED, REFUSED, UNREACHABLE, PENDING = 0, 1, 2, 3


def _amount(text: str) -> Decimal:
    try:
        return parse_amount(text)
    except AmountError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(sub) -> None:
    p = sub.add_parser("guarantee", help="tax guarantee accounts: register, amend, ..., settle, show, list, rebuild")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    for action, text in COMMANDS.items():
        a = actions.add_parser(action, help=text, description=text)
        a.add_argument("--assure-code", "-a", required=True, help="the enterprise's customs code")
        if action == "register":
            a.add_argument("--kind", required=True, help="bank_guarantee | cash_deposit | guarantee_insurance")
        if action in ("register", "amend"):
            a.add_argument("--amount", required=True, type=_amount, help="guaranteed amount, CNY")
        if action == "register":
            a.add_argument("--valid-from", required=True, metavar="YYYYMMDD")
        if action in ("register", "extend"):
            a.add_argument("--valid-to", required=True, metavar="YYYYMMDD", help="last valid day (China time)")
        if action == "void":
            a.add_argument("--declaration", required=True, metavar="EBPCODE:ORDERNO")
            a.add_argument("--amount", required=True, type=_amount, help="tax to give back, CNY")
        if action == "settle":
            a.add_argument("--ent-duty-no", required=True, help="customs payment notice number")
            a.add_argument("--bills", required=True, metavar="D1,D2,...", help="declaration ids of the paid bills")
        a.add_argument("--reason", help="free text kept in the ledger")
        a.add_argument("--command-id", help="idempotency key (default: a new UUID); repeat it to retry safely")
        a.add_argument("--actor", default=f"cli:{getpass.getuser()}", help="who asks (default: cli:<login>)")
        a.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                       help="wait this long for the worker's outcome (0: publish and return)")
        a.set_defaults(run=run_command)
    show = actions.add_parser("show", help="one account as Redis holds it")
    show.add_argument("--assure-code", "-a", required=True)
    show.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    show.set_defaults(run=lambda args: _with_redis(_show, args))
    listing = actions.add_parser("list", help="every account as Redis holds it")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    listing.set_defaults(run=lambda args: _with_redis(_list, args))
    rebuild = actions.add_parser("rebuild", help="replay guarantee.ledger and compare Redis with it")
    rebuild.add_argument("--repair", action="store_true", help="write what the ledger says (stop the workers first)")
    rebuild.add_argument("--timeout", type=float, default=60.0, help="seconds to read the ledger topic (default 60)")
    rebuild.add_argument("--actor", default=f"cli:{getpass.getuser()}",
                         help="who repairs: kept in a correcting ledger entry (default: cli:<login>)")
    rebuild.set_defaults(run=lambda args: _with_redis(_rebuild, args))


def command_record(args) -> dict:
    """The sandan.GuaranteeCommand the arguments describe."""
    from services.common.clock import now_ms

    bills = [b.strip() for b in (getattr(args, "bills", None) or "").split(",") if b.strip()]
    return {"commandId": args.command_id or str(uuid.uuid4()), "action": args.action,
            "assureCode": args.assure_code.strip(), "kind": getattr(args, "kind", None),
            "amount": getattr(args, "amount", None), "validFrom": getattr(args, "valid_from", None),
            "validTo": getattr(args, "valid_to", None), "declarationId": getattr(args, "declaration", None),
            "bills": bills, "entDutyNo": getattr(args, "ent_duty_no", None), "reason": args.reason,
            "actor": args.actor, "at": now_ms()}


def run_command(args) -> int:
    from services.tax_guarantee.commands import Refusal, parse_command

    record = command_record(args)
    command = parse_command(record)
    if isinstance(command, Refusal):
        return _refused(command)
    return _with_redis(_send, args, record, command)


def _with_redis(step, args, *more) -> int:
    from redis.exceptions import RedisError

    from services.common import redis_client
    from services.tax_guarantee.redis_store import RedisAccountStore, namespace

    async def main() -> int:
        client = redis_client.connect()
        try:
            return await step(RedisAccountStore(client, namespace()), args, *more)
        finally:
            await client.aclose()

    try:
        return asyncio.run(main())
    except (RedisError, OSError) as exc:
        print(f"sandan guarantee: Redis ({redis_client.describe()}) did not answer: {exc}", file=sys.stderr)
        return UNREACHABLE


async def _send(store, args, record: dict, command) -> int:
    from services.tax_guarantee import rules
    from services.tax_guarantee.commands import Refusal
    from services.tax_guarantee.ledger import command_key

    key = command_key(command.command_id)
    snap = await store.snapshot(command.assure_code, key, command.bill_ids)
    if snap.outcome is not None:
        print(f"command {command.command_id} was handled before:")
        return _report(snap.outcome)
    decided = rules.apply(command, snap.account, snap.bills)
    if isinstance(decided, Refusal):
        return _refused(decided)
    if not _publish(record):
        return UNREACHABLE
    if args.wait <= 0:
        print(f"published {command.action} command {command.command_id} for {command.assure_code}")
        return APPLIED
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.wait
    while loop.time() < deadline:
        outcome = await store.outcome(command.assure_code, key)
        if outcome is not None:
            return _report(outcome)
        await asyncio.sleep(0.2)
    print(f"published command {command.command_id}, but no outcome within {args.wait:g}s"
          " (is `sandan worker tax-guarantee` running?)", file=sys.stderr)
    return PENDING


def _publish(record: dict) -> bool:
    from services.common import kafka_io, topics
    from services.common.avro import codec

    try:
        kafka_io.create_topics([topics.BY_NAME["guarantee.commands"]])
        producer = kafka_io.producer()
        future = producer.send(topics.name("guarantee.commands"), key=record["assureCode"].encode(),
                               value=codec().encode("sandan.GuaranteeCommand", record))
        producer.flush()
        producer.close()
    except kafka_io.KafkaError as exc:
        print(f"sandan guarantee: Kafka at {kafka_io.bootstrap()} did not take the command: {exc}", file=sys.stderr)
        return False
    if future.failed():
        print(f"sandan guarantee: Kafka refused the command: {future.exception}", file=sys.stderr)
        return False
    return True


def _publish_corrections(forked, actor: str) -> dict | None:
    """Append to guarantee.ledger the correcting entry of each forked account (``ledger.correction``);
    the accounts replayed with it, by assureCode, or None when Kafka did not take them all."""
    from services.common import kafka_io, topics
    from services.common.avro import codec
    from services.common.clock import now_ms
    from services.tax_guarantee.ledger import correction, replay

    fixed = {}
    try:
        producer = kafka_io.producer()
        sent = []
        for account in forked:
            entry = correction(account, now_ms(), actor)
            sent.append((entry, producer.send(topics.name("guarantee.ledger"), key=entry["assureCode"].encode(),
                                              value=codec().encode("sandan.LedgerEntry", entry))))
            fixed[entry["assureCode"]] = replay([*account.entries, entry])[entry["assureCode"]]
        producer.flush()
        producer.close()
    except kafka_io.KafkaError as exc:
        print(f"sandan guarantee: Kafka at {kafka_io.bootstrap()} did not take the corrections: {exc}", file=sys.stderr)
        return None
    failed = [entry["entryId"] for entry, future in sent if future.failed()]
    if failed:
        print(f"sandan guarantee: Kafka refused the corrections {', '.join(failed)}; nothing repaired", file=sys.stderr)
        return None
    for entry, _ in sent:
        print(f"appended {entry['entryId']} (seq {entry['seq']}): outstanding {cny(entry['outstanding'])}"
              f" ({cny(entry['amount'])} more than the last entry said)")
    return fixed


def _refused(refusal) -> int:
    print(f"refused: {refusal.code} ({refusal.field}): {refusal.message}", file=sys.stderr)
    return REFUSED


def _report(outcome) -> int:
    from services.tax_guarantee.store import Refused

    if isinstance(outcome, Refused):
        return _refused(outcome.refusal)
    e = outcome.entry
    print(f"applied: {e['action']} {e['assureCode']} (entry {e['entryId']}, seq {e['seq']}): amount {cny(e['amount'])},"
          f" guaranteed {cny(e['guaranteed'])}, outstanding {cny(e['outstanding'])},"
          f" available {cny(e['available'])}, state {e['state']}, valid {e['validFrom']}..{e['validTo']}")
    for warning in outcome.warnings:
        print(f"warning: {warning['message']}")
    return APPLIED


def cny(amount: Decimal) -> str:
    """Two decimals, or all five when the amount has sub-fen digits (never rounds)."""
    return str(amount.quantize(FEN)) if amount == amount.quantize(FEN) else str(amount.normalize())


def account_row(account, today) -> dict:
    from services.tax_guarantee.account import day_text, days_left, status, utilisation

    return {"assureCode": account.assure_code, "kind": account.kind, "state": status(account, today),
            "guaranteed": cny(account.guaranteed), "outstanding": cny(account.outstanding),
            "available": cny(account.available),
            "utilisation": f"{utilisation(account.guaranteed, account.outstanding).quantize(FEN)}%",
            "validFrom": day_text(account.valid_from), "validTo": day_text(account.valid_to),
            "daysLeft": days_left(account, today), "seq": account.seq}


def _today():
    from services.common.clock import now_ms
    from services.tax_guarantee.account import china_date

    return china_date(now_ms())


async def _show(store, args) -> int:
    account = await store.account(args.assure_code.strip())
    if account is None:
        print(f"no tax guarantee account for {args.assure_code}", file=sys.stderr)
        return REFUSED
    row = account_row(account, _today())
    if args.json:
        print(json.dumps(row, ensure_ascii=False))
    else:
        width = max(map(len, row))
        for name, value in row.items():
            print(f"{name:<{width}}  {value}")
    return APPLIED


LIST_COLUMNS = ("assureCode", "kind", "state", "guaranteed", "outstanding", "available", "utilisation", "validTo")


async def _list(store, args) -> int:
    today = _today()
    rows = [account_row(a, today) for a in await store.accounts()]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        print_table(LIST_COLUMNS, [[str(r[c]) for c in LIST_COLUMNS] for r in rows])
    return APPLIED


def _dead_letters(wire, records) -> list[dict]:
    """The readable ``deadletter`` records (a dead letter that is no record itself is skipped)."""
    found = []
    for r in records:
        try:
            name, record = wire.decode(r.value) if r.value else (None, None)
        except ValueError:
            continue
        if name == "sandan.DeadLetter":
            found.append(record)
    return found


def print_table(header, rows) -> None:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for line in [list(header)] + rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


async def _rebuild(store, args) -> int:
    from services.common import kafka_io, topics
    from services.common.avro import codec
    from services.tax_guarantee.ledger import command_refusals, refusals, replay
    from services.tax_guarantee.reconcile import Difference, compare, unknown_to_ledger

    wire = codec()
    try:
        raw = kafka_io.read_all(topics.name("guarantee.ledger"), timeout_s=args.timeout)
        refused = kafka_io.read_all(topics.name("declarations.refused"), timeout_s=args.timeout)
        dead = kafka_io.read_all(topics.name("deadletter"), timeout_s=args.timeout)
    except kafka_io.KafkaError as exc:
        print(f"sandan guarantee: Kafka at {kafka_io.bootstrap()} did not answer: {exc}", file=sys.stderr)
        return UNREACHABLE
    rebuilt = replay(wire.decode(r.value)[1] for r in raw)
    for code, account in sorted(rebuilt.items()):
        for note in account.notes:
            print(f"{code}: {note}")
    differences = unknown_to_ledger(await store.account_codes(), rebuilt)
    # refused deductions and commands have no ledger entry; their outcome must come back too, or a
    # redelivery after a repair is decided anew (ledger.refusals, ledger.command_refusals)
    deductions = refusals(wire.decode(r.value)[1] for r in refused if r.value)
    commands = command_refusals(_dead_letters(wire, dead), topics.name("guarantee.commands"), wire.decode)
    unrecorded = await store.missing_refusals(deductions + commands)
    for code in sorted({r.assure_code for r in unrecorded}):
        differences.append(Difference(code, "refusals", f"{sum(r.assure_code == code for r in unrecorded)} missing",
                                      "on declarations.refused and deadletter"))
    repairs = []
    for code, account in sorted(rebuilt.items()):
        found = compare(account, await store.account(code), await store.bills_of(code),
                        await store.recorded_entries(code))
        differences += found.differences
        if found.differences:
            repairs.append((account, found))
    print(f"{len(raw)} ledger records, {len(rebuilt)} accounts, {len(refused)} refused deductions,"
          f" {len(commands)} refused commands")
    if not differences:
        print("Redis equals the ledger")
        return APPLIED
    print_table(("assureCode", "what", "redis", "ledger"),
                [[d.assure_code, d.subject, d.redis, d.ledger] for d in differences])
    if not args.repair:
        print(f"{len(differences)} differences; run with --repair to write the ledger's values")
        return REFUSED
    forked = [account for account, _ in repairs if account.forks]
    if forked:
        # the correction goes to the ledger (the truth) first: Redis then holds what the ledger says
        corrections = _publish_corrections(forked, args.actor)
        if corrections is None:
            return UNREACHABLE
        again = []
        for account, found in repairs:
            code = account.account.assure_code
            if code in corrections:
                account = corrections[code]
                found = compare(account, await store.account(code), await store.bills_of(code),
                                await store.recorded_entries(code))
            again.append((account, found))
        repairs = again
    for account, found in repairs:
        await store.restore(account, found.stray_bills, found.missing_entries)
    await store.restore_refusals(unrecorded)
    print(f"repaired {len(repairs)} accounts from the ledger")
    return REFUSED
