"""Which order a returned parcel belongs to: the waybill table, keyed by ``logisticsNo``.

The warehouse reports parcels by waybill number (``warehouse.arrivals`` and CEB711 are keyed
by ``logisticsNo``) while the return state is keyed by ``orderNo``. Rather than ask
order_match's Redis registry (which needs the carrier code a warehouse may not report), the
service learns the mapping itself: each cleared declaration publishes a *link*
(``returns.waybills``, keyed by ``logisticsNo``) and an entry here collects the links of one
waybill number. A parcel whose link is known is re-published keyed by its orderNo
(``returns.arrivals``), so the partition owning the order's return state takes it; one that
comes before its link is held until the link comes or the hold runs out.

Pure: no Kafka or Redis; an entry is the ``sandan.ReturnsWaybill`` record.
"""
from __future__ import annotations


class Ambiguous(ValueError):
    """The waybill number names several orders and the parcel gives no carrier code to choose."""

    def __init__(self, logistics_no: str, orders: list[str]) -> None:
        super().__init__(f"waybill {logistics_no} names orders {', '.join(orders)} of different carriers;"
                         " the arrival must give logisticsCode")
        self.orders = orders


def new_entry(logistics_no: str) -> dict:
    return {"logisticsNo": logistics_no, "links": [], "held": []}


def resolve(entry: dict, logistics_code: str | None) -> str | None:
    """The orderNo a parcel belongs to; None when no link is known yet."""
    orders = sorted({link["orderNo"] for link in entry["links"]
                     if not logistics_code or link["logisticsCode"] == logistics_code})
    if len(orders) > 1:
        raise Ambiguous(entry["logisticsNo"], orders)
    return orders[0] if orders else None


def learn_link(entry: dict, link: dict) -> list[tuple[dict, str]]:
    """Add (or extend) a link; returns the held parcels it resolves as (held, orderNo)."""
    same = next((known for known in entry["links"] if (known["logisticsCode"], known["orderNo"], known["ebpCode"])
                 == (link["logisticsCode"], link["orderNo"], link["ebpCode"])), None)
    if same is not None:
        same["keepUntil"] = max(same["keepUntil"], link["keepUntil"])
    else:
        entry["links"].append({k: link[k] for k in ("logisticsCode", "orderNo", "ebpCode", "keepUntil")})
    resolved = []
    for held in list(entry["held"]):
        try:
            order_no = resolve(entry, held["logisticsCode"])
        except Ambiguous:
            continue  # stays held: it expires with a refusal naming the reason
        if order_no is not None:
            entry["held"].remove(held)
            resolved.append((held, order_no))
    return resolved


def hold(entry: dict, arrival_id: str, logistics_code: str | None, payload: bytes, until: int) -> bool:
    """Keep a parcel until its link comes; False when it is held already (a redelivery)."""
    if any(h["id"] == arrival_id for h in entry["held"]):
        return False
    entry["held"].append({"id": arrival_id, "logisticsCode": logistics_code, "payload": payload, "until": until})
    return True


def expire(entry: dict, now_ms: int) -> list[dict]:
    """Drops links past their time; returns (and removes) the held parcels whose hold ran out."""
    entry["links"] = [link for link in entry["links"] if link["keepUntil"] > now_ms]
    gone = [h for h in entry["held"] if h["until"] <= now_ms]
    entry["held"] = [h for h in entry["held"] if h["until"] > now_ms]
    return gone


def next_wake(entry: dict) -> int | None:
    wakes = [link["keepUntil"] for link in entry["links"]] + [h["until"] for h in entry["held"]]
    return min(wakes) if wakes else None


def is_empty(entry: dict) -> bool:
    return not entry["links"] and not entry["held"]
