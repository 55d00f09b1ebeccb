"""Avro binary encoders and decoders compiled from a schema: Python source per record type.

fastavro interprets the parsed schema for every record (a type lookup and dispatch per field,
a union resolved by validating the value against each branch); sandan writes and reads a few
record types millions of times, so each is turned once into straight-line Python that does
only that record's fields (bench/RESULTS.md, round 2, session 16: about half the time).

The bytes are Avro's binary encoding, the same as fastavro's for every record either accepts
(tests/unit/common/test_avro_compiled.py compares both on every schema); a value that does not
fit raises ValueError, TypeError, KeyError, AttributeError or IndexError, corrupt bytes raise
EOFError, ValueError, IndexError or UnicodeDecodeError (a long beyond 64 bits too, which
fastavro's C reader wraps instead). ``compile_schema`` raises ``Unsupported`` for
what it does not compile (an enum, a fixed, a float, a union whose branches Python types cannot
tell apart): such a schema stays with fastavro.
"""
from __future__ import annotations

from collections.abc import Callable

Encoder = Callable[[bytearray, dict], None]
Decoder = Callable[[bytes, int], tuple[dict, int]]

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
LONG_OVERFLOW = "an Avro long beyond 64 bits"
NEGATIVE_BRANCH = "a negative union branch"  # fastavro indexes its branch list with it (Python wraps)


class Unsupported(Exception):
    """A schema (or a part of it) this module does not compile."""


def put_long(w: bytearray, n: int) -> None:
    """Zig-zag varint, Avro's int and long."""
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValueError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    while z > 0x7F:
        w.append((z & 0x7F) | 0x80)
        z >>= 7
    w.append(z)


def long_rest(b: bytes, p: int, first: int) -> tuple[int, int]:
    """The rest of a varint whose first byte (``first``, continuation bit set) was at p - 1."""
    z, shift = first & 0x7F, 7
    while True:
        x = b[p]
        p += 1
        z |= (x & 0x7F) << shift
        if not x & 0x80:
            break
        shift += 7
        if shift > 63:
            raise ValueError(LONG_OVERFLOW + " (over 10 bytes)")
    if z >> 64:  # fastavro's C reader wraps such a value; it is corrupt, so it is refused
        raise ValueError(LONG_OVERFLOW)
    return (z >> 1) ^ -(z & 1), p


def skip_block_size(b: bytes, p: int) -> int:
    """After a negative block count: the block's size in bytes, read and ignored."""
    x = b[p]
    p += 1
    if x & 0x80:
        _, p = long_rest(b, p, x)
    return p


_PRIMITIVE = ("null", "boolean", "int", "long", "string", "bytes")
# Python types a union branch's values have: how a union picks its branch without validating.
_PY_TYPE = {"null": "NoneType", "boolean": "bool", "int": "int", "long": "int", "string": "str",
            "bytes": "bytes", "map": "dict", "record": "dict", "array": "list"}


class _Gen:
    """Source for the functions of one schema: one encoder and one decoder per record type."""

    def __init__(self, amounts: bool) -> None:
        self.amounts = amounts  # scaled longs to and from Decimal, CEB documents' shape on reading
        self.defs: list[str] = []
        self.done: set[str] = set()
        self.named: dict[str, dict] = {}
        self.serial = 0

    def var(self, stem: str) -> str:
        self.serial += 1
        return f"{stem}{self.serial}"

    # --- types ---------------------------------------------------------------------------
    def resolve(self, t, namespace: str):
        """A type with named references replaced by their definitions (registered on sight)."""
        if isinstance(t, str):
            if t in _PRIMITIVE:
                return t
            full = t if "." in t else f"{namespace}.{t}" if namespace else t
            if full in self.named:
                return self.named[full]
            if t in self.named:
                return self.named[t]
            raise Unsupported(f"unknown type {t!r}")
        if isinstance(t, list):
            return t
        kind = t.get("type")
        if kind == "record":
            ns = t.get("namespace", namespace)
            full = t["name"] if "." in t["name"] else f"{ns}.{t['name']}" if ns else t["name"]
            t = dict(t, _full=full, _ns=ns)
            self.named[full] = t
            return t
        if kind in ("array", "map"):
            return t
        if isinstance(kind, str) and kind in _PRIMITIVE and not t.get("logicalType"):
            return kind
        raise Unsupported(f"type {kind!r}" + (f" ({t['logicalType']})" if isinstance(t, dict) and t.get("logicalType") else ""))

    def kind(self, t) -> str:
        return t if isinstance(t, str) else "union" if isinstance(t, list) else t["type"]

    # --- encoding ----------------------------------------------------------------------------
    def enc(self, t, v: str, ind: str, ns: str) -> list[str]:
        """Lines writing value expression ``v`` (a local name) of type ``t`` to ``w``."""
        t = self.resolve(t, ns)
        k = self.kind(t)
        if k == "null":
            return [f"{ind}if {v} is not None: raise TypeError('null expected')"]
        if k == "boolean":
            return [f"{ind}w.append(1 if {v} else 0)"]
        if k in ("int", "long"):
            return [f"{ind}if -64 <= {v} < 64: w.append((({v}) << 1) ^ (({v}) >> 63))",
                    f"{ind}else: put_long(w, {v})"]
        if k in ("string", "bytes"):
            s = self.var("s")
            # bytes as given: len() and += refuse what is not bytes-like (bytes(5) would not)
            first = f"{ind}{s} = {v}.encode()" if k == "string" else f"{ind}{s} = {v}"
            return [first,
                    f"{ind}if len({s}) < 64: w.append(len({s}) << 1)",
                    f"{ind}else: put_long(w, len({s}))",
                    f"{ind}w += {s}"]
        if k == "record":
            return [f"{ind}{self.encoder(t)}(w, {v})"]
        if k == "array":
            item = self.var("i")
            return [f"{ind}if len({v}):  # len() refuses what has no length, as fastavro does",
                    f"{ind}    put_long(w, len({v}))",
                    f"{ind}    for {item} in {v}:",
                    *self.enc(t["items"], item, ind + "        ", ns),
                    f"{ind}w.append(0)"]
        if k == "map":
            key, val = self.var("k"), self.var("m")
            return [f"{ind}if len({v}):",
                    f"{ind}    put_long(w, len({v}))",
                    f"{ind}    for {key}, {val} in {v}.items():",
                    *self.enc("string", key, ind + "        ", ns),
                    *self.enc(t["values"], val, ind + "        ", ns),
                    f"{ind}w.append(0)"]
        if k == "union":
            return self.enc_union(t, v, ind, ns)
        raise Unsupported(f"type {k!r}")

    def enc_union(self, branches: list, v: str, ind: str, ns: str) -> list[str]:
        resolved = [self.resolve(b, ns) for b in branches]
        kinds = [self.kind(b) for b in resolved]
        py = [_PY_TYPE.get(k) for k in kinds]
        if None in py or len(set(py)) != len(py):
            raise Unsupported(f"union {kinds}: branches Python types do not tell apart")
        lines = []
        records = [(i, b) for i, b in enumerate(resolved) if kinds[i] == "record"]
        if records:  # tuple notation, (record name, record), names the branch (services.common.avro)
            i, b = records[0]
            lines.append(f"{ind}if type({v}) is tuple:")
            lines.append(f"{ind}    if {v}[0] != {b['_full']!r}: raise ValueError('no union branch named ' + str({v}[0]))")
            lines.append(f"{ind}    {v} = {v}[1]")
        first = True
        for i, (k, t) in enumerate(zip(kinds, resolved)):
            if k == "null":
                test = f"{v} is None"
            elif k in ("int", "long"):  # any int but a bool, subclasses too (fastavro writes those)
                test = f"isinstance({v}, int) and type({v}) is not bool"
            else:
                test = f"type({v}) is {py[i]}"
            lines.append(f"{ind}{'if' if first else 'elif'} {test}:")
            lines.append(f"{ind}    w.append({i << 1})")
            body = self.enc(t, v, ind + "    ", ns) if k != "null" else []
            lines += body or [f"{ind}    pass"]
            first = False
        lines.append(f"{ind}else: raise TypeError('no union branch for ' + type({v}).__name__)")
        return lines

    def encoder(self, t: dict) -> str:
        name = "enc_" + t["_full"].replace(".", "_")
        if name in self.done:
            return name
        self.done.add(name)
        ns = t["_ns"]
        lines = [f"def {name}(w, r):"]
        for f in t["fields"]:
            v = self.var("v")
            fname = f["name"]
            if "default" in f:
                lines.append(f"    {v} = r.get({fname!r}, {f['default']!r})")
            elif isinstance(f["type"], list) and "null" in f["type"]:
                lines.append(f"    {v} = r.get({fname!r})")
            else:
                lines.append(f"    {v} = r[{fname!r}]")
            if self.amounts and f.get("sandan.scale"):
                lines.append(f"    if {v} is not None: {v} = to_units({v})")
            lines += self.enc(f["type"], v, "    ", ns)
        if len(lines) == 1:
            lines.append("    pass")
        self.defs.append("\n".join(lines))
        return name

    # --- decoding ----------------------------------------------------------------------------
    def read_long(self, target: str, ind: str) -> list[str]:
        x = self.var("x")
        return [f"{ind}{x} = b[p]",
                f"{ind}p += 1",
                f"{ind}if {x} & 0x80: {target}, p = long_rest(b, p, {x})",
                f"{ind}else: {target} = ({x} >> 1) ^ -({x} & 1)"]

    def dec(self, t, target: str, ind: str, ns: str, ceb: bool = False) -> list[str]:
        """Lines reading a value of type ``t`` from ``b`` at ``p`` into local ``target``; ``ceb``:
        a record read here is part of a CEB document (array items inherit it, as in
        services.common.avro's converters)."""
        t = self.resolve(t, ns)
        k = self.kind(t)
        if k == "null":
            return [f"{ind}{target} = None"]
        if k == "boolean":
            return [f"{ind}{target} = b[p] == 1", f"{ind}p += 1"]
        if k in ("int", "long"):
            return self.read_long(target, ind)
        if k in ("string", "bytes"):
            n = self.var("n")
            conv = ".decode()" if k == "string" else ""
            return [*self.read_long(n, ind),
                    f"{ind}if {n} < 0 or p + {n} > end: raise EOFError('a string or bytes beyond the record')",
                    f"{ind}{target} = b[p:p + {n}]{conv}",
                    f"{ind}p += {n}"]
        if k == "record":
            return [f"{ind}{target}, p = {self.decoder(t, ceb)}(b, p, end)"]
        if k in ("array", "map"):
            n, item, key = self.var("n"), self.var("i"), self.var("k")
            lines = [f"{ind}{target} = {'[]' if k == 'array' else '{}'}",
                     f"{ind}while True:",
                     *self.read_long(n, ind + "    "),
                     f"{ind}    if {n} == 0: break",
                     f"{ind}    if {n} < 0:",
                     f"{ind}        {n} = -{n}",
                     f"{ind}        p = skip_block_size(b, p)",
                     f"{ind}    for _ in range({n}):"]
            if k == "array":
                lines += self.dec(t["items"], item, ind + "        ", ns, ceb)
                lines.append(f"{ind}        {target}.append({item})")
            else:
                lines += self.dec("string", key, ind + "        ", ns)
                lines += self.dec(t["values"], item, ind + "        ", ns)
                lines.append(f"{ind}        {target}[{key}] = {item}")
            return lines
        if k == "union":
            index = self.var("u")
            if len(t) == 2 and t[0] == "null":  # the optional field: its index is one byte, 0 or 2
                return [f"{ind}{index} = b[p]",
                        f"{ind}p += 1",
                        f"{ind}if {index} == 0: {target} = None",
                        f"{ind}elif {index} == 2:",
                        *self.dec(t[1], target, ind + "    ", ns, ceb),
                        f"{ind}elif {index} & 1: raise IndexError(f'{NEGATIVE_BRANCH} (byte {{{index}}})')",
                        f"{ind}else: raise IndexError(f'union branch byte {{{index}}} of 2 branches')"]
            lines = self.read_long(index, ind)
            for i, branch in enumerate(t):
                lines.append(f"{ind}{'if' if i == 0 else 'elif'} {index} == {i}:")
                lines += self.dec(branch, target, ind + "    ", ns, ceb)
            lines.append(f"{ind}elif {index} < 0: raise IndexError(f'{NEGATIVE_BRANCH} ({{{index}}})')")
            lines.append(f"{ind}else: raise IndexError(f'union branch {{{index}}} of {len(t)}')")
            return lines
        raise Unsupported(f"type {k!r}")

    def decoder(self, t: dict, in_ceb: bool = False) -> str:
        message = t.get("sandan.message") if self.amounts else None
        shape = self.amounts and (in_ceb or bool(message))  # absent optional fields: no key
        name = "dec_" + t["_full"].replace(".", "_") + ("_ceb" if shape else "")
        if name in self.done:
            return name
        self.done.add(name)
        ns = t["_ns"]
        lines = [f"def {name}(b, p, end):"]
        names = []
        for f in t["fields"]:
            v = self.var("v")
            names.append((f["name"], v, isinstance(f["type"], list) and "null" in f["type"]))
            # a record field is a document's part only as an array's items (the converters' rule)
            lines += self.dec(f["type"], v, "    ", ns, shape and self.kind(self.resolve(f["type"], ns)) == "array")
            if self.amounts and f.get("sandan.scale"):
                lines.append(f"    if {v} is not None: {v} = from_units({v})")
        if not shape:
            lines.append("    return {" + ", ".join(f"{n!r}: {v}" for n, v, _ in names) + "}, p")
        else:
            lines.append("    d = {}")
            for n, v, nullable in names:
                lines.append(f"    if {v} is not None: d[{n!r}] = {v}" if nullable else f"    d[{n!r}] = {v}")
            if message:
                lines.append(f"    d['message'] = {message!r}")
            lines.append("    return d, p")
        self.defs.append("\n".join(lines))
        return name


def compile_schema(schema: dict, to_units: Callable | None = None, from_units: Callable | None = None
                   ) -> tuple[Encoder, Decoder]:
    """An encoder ``(bytearray, record)`` and a decoder ``(bytes, start) -> (record, end)`` for a
    self-contained record schema (named types defined inline at their first use).

    With ``to_units``/``from_units`` they also do what services.common.avro's converters do
    around fastavro: fields marked ``sandan.scale`` go through them (Decimal to wire long and
    back), and a CEB document (a record with ``sandan.message``, and its array items) is read
    without keys for absent optional fields, with its ``"message"``: one pass instead of two."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise Unsupported("not a record schema")
    amounts = to_units is not None and from_units is not None
    gen = _Gen(amounts)
    top = gen.resolve(schema, schema.get("namespace", ""))
    enc_name, dec_name = gen.encoder(top), gen.decoder(top)
    scope = {"put_long": put_long, "long_rest": long_rest, "skip_block_size": skip_block_size,
             "NoneType": type(None), "to_units": to_units, "from_units": from_units}
    exec(compile("\n\n".join(gen.defs), f"<avro {top['_full']}>", "exec"), scope)  # noqa: S102 - our own source
    encode, decode = scope[enc_name], scope[dec_name]

    def decode_at(b: bytes, p: int) -> tuple[dict, int]:
        return decode(b, p, len(b))

    return encode, decode_at
