"""Input records not acted on: every record a service read, matched to what it did about it.

Pure: the pipeline reads every input partition of a scenario's topics and the services'
outputs and changelogs (``pipeline.py``); this module says which input record each output
answers and lists the records nothing answers. A record counts as acted on when a dead
letter names its topic, partition and offset, or when an output (or a table's changelog
value) carries the record's id. How each input topic is accounted for is ``RULES``
(tests/faults/README.md says the same in words).

Offsets are those a read_committed reader gets: transaction markers and the records of
aborted transactions occupy offsets but are no input any service sees. The services' own
clock ticks (``order_match.ticks``, ``returns.ticks``) carry no business record and are
not inputs here; what an expiry decides is accounted for on the documents it answers.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    service: str
    topic: str                      # short topic name of the input
    ident: Callable[[dict], str]    # the input record's id, as its answers carry it
    answered_by: str                # which answers carry that id (a key of ``Answers.ids``)
    # (id, answers) that also account for the record, where its first answer may not exist
    otherwise: tuple[tuple[Callable[[dict], str], str], ...] = ()


def _decl(record: dict) -> str:
    return f"{(record.get('ebpCode') or '').strip()}:{(record.get('orderNo') or '').strip()}"


def _guid(record: dict) -> str:
    return record.get("guid") or ""


RULES: tuple[Rule, ...] = (
    # every document of a decided declaration gets a receipt, and so does every refused document
    *(Rule("order_match", t, _guid, "receipt documents") for t in
      ("documents.order", "documents.payment", "documents.inventory")),
    # a waybill gets a receipt with its declaration's verdict, with the INCOMPLETE verdict of a
    # declaration that expired without its inventory, or on its own once none can name it; the
    # INCOMPLETE verdict of its orderNo that does not name it missing answers for it too
    Rule("order_match", "documents.logistics", _guid, "receipt documents",
         otherwise=((lambda r: r["orderNo"].strip(), "orders with their waybill"),)),
    Rule("tax_guarantee", "declarations.matched", lambda r: r["declarationId"], "guarantee outcomes"),
    Rule("tax_guarantee", "guarantee.commands", lambda r: r["commandId"], "ledger commands"),
    # a cleared declaration is learnt into its order's returns bucket (and linked to its waybill)
    Rule("returns", "declarations.cleared", lambda r: r["declarationId"], "returns declarations"),
    Rule("returns", "customs.reports", lambda r: f"report:{r['reportId']}", "returns inputs seen"),
    Rule("returns", "documents.cancel", _guid, "receipt documents"),
    Rule("returns", "documents.refund", _guid, "receipt documents"),
    Rule("returns", "returns.arrivals", lambda r: f"parcel:{r['arrivalId']}", "returns inputs seen"),
    Rule("returns", "warehouse.arrivals", lambda r: r["arrivalId"], "routed or held arrivals"),
    Rule("returns", "returns.waybills",
         lambda r: f"{r['logisticsNo']}|{r['logisticsCode']}|{r['orderNo']}|{r['ebpCode']}", "waybill links"),
    Rule("returns", "documents.logistics_status", _guid, "receipt documents"),
    Rule("returns", "documents.delivery", _guid, "deliveries routed"),
)
INPUT_TOPICS = tuple(rule.topic for rule in RULES)


@dataclass(frozen=True)
class Input:
    """One record on an input partition: where it is and its id (``None``: unreadable)."""
    topic: str
    partition: int
    offset: int
    ident: str | None
    others: tuple[str | None, ...] = ()  # its ids under the rule's ``otherwise``, in that order


@dataclass
class Answers:
    """What the services did: ids their outputs and tables carry, and the dead-lettered positions."""
    ids: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    dead: set[tuple[str, int, int]] = field(default_factory=set)  # (short topic, partition, offset)


def answers(outputs: dict[str, list[dict]], buckets: Iterable[dict], waybills: Iterable[dict],
            dead_letters: Iterable[dict], short_of: Callable[[str], str]) -> Answers:
    """The answers in a scenario's output topics (by short name) and the returns tables' changelog
    values (every version); ``short_of`` turns a dead letter's full topic name into the short one."""
    a = Answers()
    a.ids["receipt documents"] = {r["documentGuid"] for r in outputs.get("receipts", ()) if r.get("documentGuid")}
    a.ids["orders with their waybill"] = {v["orderNo"].strip() for v in outputs.get("declarations.verdicts", ())
                                          if "logistics" not in (v.get("missing") or ())}
    a.ids["guarantee outcomes"] = {v["declarationId"] for short in ("declarations.cleared", "declarations.refused")
                                   for v in outputs.get(short, ())}
    a.ids["ledger commands"] = {e["commandId"] for e in outputs.get("guarantee.ledger", ()) if e.get("commandId")}
    learnt = a.ids["returns declarations"]
    learnt.update(_decl(link) for link in outputs.get("returns.waybills", ()))
    seen = a.ids["returns inputs seen"]
    for bucket in buckets:
        for decl in bucket.get("declarations") or ():
            learnt.add(decl["declarationId"])
            seen.update(decl.get("seen") or ())
    a.ids["routed or held arrivals"] = {r["arrivalId"] for r in outputs.get("returns.arrivals", ())}
    links = a.ids["waybill links"]
    for entry in waybills:
        a.ids["routed or held arrivals"].update(h["id"] for h in entry.get("held") or ())
        links.update(f"{entry['logisticsNo']}|{k['logisticsCode']}|{k['orderNo']}|{k['ebpCode']}"
                     for k in entry.get("links") or ())
    # a CEB711's arrivals carry its guid in their id (services/returns/arrivals.py)
    a.ids["deliveries routed"] = {r["arrivalId"].split(":")[1] for r in outputs.get("warehouse.arrivals", ())
                                  if r["arrivalId"].startswith("CEB711:")}
    a.dead = {(short_of(d["source"]), d["partition"], d["offset"]) for d in dead_letters
              if d.get("partition") is not None and d.get("offset") is not None}
    return a


def not_acted_on(inputs: dict[str, list[Input]], found: Answers) -> dict[str, list[str]]:
    """Per service, each input record (``topic/partition@offset id``) with no answer."""
    missing: dict[str, list[str]] = {}
    for rule in RULES:
        keys = (rule.answered_by, *(key for _, key in rule.otherwise))

        def answered(i: Input) -> bool:
            return any(ident is not None and ident in found.ids.get(key, ()) for ident, key in
                       zip((i.ident, *i.others), keys))

        gaps = [f"{rule.topic}/{i.partition}@{i.offset} {i.ident or '(unreadable)'}" for i in inputs.get(rule.topic, ())
                if (rule.topic, i.partition, i.offset) not in found.dead and not answered(i)]
        if gaps:
            missing.setdefault(rule.service, []).extend(gaps)
    return missing


def input_of(topic: str, partition: int, offset: int, record: dict | None) -> Input:
    """An input record under its topic's rule, with its ids (``None`` where the record lacks one)."""
    rule = _RULE_OF[topic]
    ids = [_id(f, record) for f in (rule.ident, *(f for f, _ in rule.otherwise))]
    return Input(topic, partition, offset, ids[0], tuple(ids[1:]))


def _id(ident: Callable[[dict], str], record: dict | None) -> str | None:
    try:
        return ident(record) or None
    except (KeyError, TypeError, AttributeError):
        return None


_RULE_OF = {rule.topic: rule for rule in RULES}
