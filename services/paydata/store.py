"""The paydata service's state in Redis: payment facts, platform URLs, sessions, an outbox.

Kafka stays the source of truth: facts come from the document topics, platform URLs from the
compacted ``paydata.platforms``. What only Redis holds is the sessions, each changed by one Lua
script so an upload and the deadline never both decide one: the decision and the records it
must publish are written together (the outbox) and removed once Kafka has acknowledged them,
so a crash in between publishes them again on the next tick rather than losing them.
"""
from __future__ import annotations

import json
from decimal import Decimal

from services.common.outputs import Output
from services.paydata.compare import Facts, facts_of
from services.paydata.sessions import Session

# KEYS: request key, session key, deadlines; ARGV: session id, deadline, ttl, then field/value pairs
_OPEN = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) == false then
  return redis.call('GET', KEYS[1])
end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
return ''
"""
# KEYS: session key, deadlines, outbox; ARGV: session id, new state, outbox id, outbox entry, allowed states...
_DECIDE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
for i = 5, #ARGV do
  if state == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[2])
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
    return 1
  end
end
return 0
"""


def namespace(prefix: str) -> str:
    return f"sandan:{prefix}paydata:"


class PaydataStore:
    def __init__(self, redis, ns: str, retention_s: int) -> None:
        self.redis, self.ns, self.retention_s = redis, ns, retention_s
        self._open = redis.register_script(_OPEN)
        self._decide = redis.register_script(_DECIDE)
        self.deadlines, self.outbox, self.platform_key = ns + "deadlines", ns + "outbox", ns + "platforms"

    # --- the declaration's side -------------------------------------------------------------
    async def put_document(self, kind: str, doc: dict) -> None:
        """Keep what the comparison needs of a CEB311 (``order``) or CEB411 (``payment``), no personal data."""
        ebp, order_no = (doc.get("ebpCode") or "").strip(), (doc.get("orderNo") or "").strip()
        if kind == "order":
            kept = {"ebpCode": ebp, "orderNo": order_no, "payCode": doc.get("payCode"),
                    "payTransactionId": doc.get("payTransactionId"), "acturalPaid": _text(doc.get("acturalPaid")),
                    "lines": [{"itemName": line.get("itemName")} for line in doc.get("lines") or ()]}
        else:
            kept = {"ebpCode": ebp, "orderNo": order_no, "payCode": doc.get("payCode"),
                    "payTransactionId": doc.get("payTransactionId"), "amountPaid": _text(doc.get("amountPaid"))}
        key = f"{self.ns}facts:{ebp}:{order_no}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, kind, json.dumps(kept, ensure_ascii=False))
            pipe.expire(key, self.retention_s)
            pipe.sadd(f"{self.ns}orders:{order_no}", ebp)
            pipe.expire(f"{self.ns}orders:{order_no}", self.retention_s)
            await pipe.execute()

    async def facts(self, declaration_id: str) -> Facts | None:
        raw = await self.redis.hgetall(f"{self.ns}facts:{declaration_id}")
        docs = {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()}
        order, payment = docs.get("order"), docs.get("payment")
        for doc, field in ((order, "acturalPaid"), (payment, "amountPaid")):
            if doc is not None and doc.get(field) is not None:
                doc[field] = Decimal(doc[field])
        return facts_of(order, payment)

    async def platforms_of(self, order_no: str) -> list[str]:
        return sorted(m.decode() for m in await self.redis.smembers(f"{self.ns}orders:{order_no}"))

    # --- platforms ----------------------------------------------------------------------------
    async def set_platform(self, ebp_code: str, url: str | None) -> None:
        if url:
            await self.redis.hset(self.platform_key, ebp_code, url)
        else:
            await self.redis.hdel(self.platform_key, ebp_code)

    async def platform_url(self, ebp_code: str) -> str | None:
        url = await self.redis.hget(self.platform_key, ebp_code)
        return url.decode() if url is not None else None

    async def platforms(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in (await self.redis.hgetall(self.platform_key)).items()}

    async def hold(self, request_id: str, ask: dict) -> None:
        """Keep a request whose platform has no URL yet; it is asked once the URL is known."""
        await self.redis.hset(self.ns + "held", request_id, json.dumps(ask))

    async def held(self) -> dict[str, dict]:
        return {k.decode(): json.loads(v) for k, v in (await self.redis.hgetall(self.ns + "held")).items()}

    async def release(self, request_id: str) -> None:
        await self.redis.hdel(self.ns + "held", request_id)

    # --- sessions -----------------------------------------------------------------------------
    async def open(self, request_id: str, session: Session) -> str | None:
        """Open ``session`` for ``request_id`` unless that request has one already (its id returned)."""
        pairs = [x for kv in session.as_dict().items() for x in kv]
        found = await self._open(keys=[f"{self.ns}request:{request_id}", self._session_key(session.session_id),
                                       self.deadlines],
                                 args=[session.session_id, session.deadline, self.retention_s, *pairs])
        found = found.decode() if isinstance(found, bytes) else found
        return found or None

    async def session(self, session_id: str) -> Session | None:
        raw = await self.redis.hgetall(self._session_key(session_id))
        if not raw:
            return None
        return Session.from_dict({k.decode(): v.decode() for k, v in raw.items()})

    async def decide(self, session_id: str, allowed: tuple[str, ...], new_state: str, outputs: list[Output]) -> int:
        """Move the session from one of ``allowed`` to ``new_state`` and put ``outputs`` in the outbox,
        atomically: 1 done, 0 the session was in another state, -1 no such session."""
        entry = json.dumps([[o.topic, o.key.decode(), o.schema, o.record] for o in outputs], ensure_ascii=False)
        return int(await self._decide(keys=[self._session_key(session_id), self.deadlines, self.outbox],
                                      args=[session_id, new_state, _outbox_id(session_id, new_state), entry, *allowed]))

    async def due(self, now_ms: int, limit: int = 500) -> list[str]:
        """Sessions whose deadline has passed (an upload exactly at the deadline is in time)."""
        return [m.decode() for m in await self.redis.zrangebyscore(self.deadlines, "-inf", f"({now_ms}", 0, limit)]

    async def drop_deadline(self, session_id: str) -> None:
        await self.redis.zrem(self.deadlines, session_id)

    async def open_sessions(self) -> int:
        return int(await self.redis.zcard(self.deadlines))

    # --- outbox -------------------------------------------------------------------------------
    async def pending(self) -> dict[str, list[Output]]:
        raw = await self.redis.hgetall(self.outbox)
        return {k.decode(): [Output(t, key.encode(), schema, record) for t, key, schema, record in json.loads(v)]
                for k, v in raw.items()}

    async def sent(self, session_id: str, state: str) -> None:
        await self.redis.hdel(self.outbox, _outbox_id(session_id, state))

    def _session_key(self, session_id: str) -> str:
        return f"{self.ns}session:{session_id}"


def _outbox_id(session_id: str, state: str) -> str:
    return f"{session_id}:{state}"


def _text(value) -> str | None:
    return None if value is None else str(value)
