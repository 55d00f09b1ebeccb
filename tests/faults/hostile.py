"""Inputs for the fuzz tests: good messages to start from, and the classic XML attacks.

The attacks carry a marker that only a parser resolving an entity or an inclusion could
bring into its result: a file holding ``SECRET`` that external entities and XIncludes point
at, and entity expansions that would blow up to gigabytes.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from xml.sax.saxutils import escape

from hypothesis import strategies as st

from services.common.ceb.writer import write_message
from services.tools.generator import generate
from services.demo import returns_stage

# a well-formed inventory number for the seeds (the fuzzers mutate what follows from it)
SEED_INVT_NO = "29912025I000000001"

DATA = Path(__file__).resolve().parents[1] / "data" / "ceb"
NS = b'xmlns:ceb="http://www.chinaport.gov.cn/ceb"'
GUID = b'guid="00000000-0000-4000-8000-000000000000" version="1.0"'
SECRET = "SANDAN-FUZZ-SECRET-7f3c"


@lru_cache(maxsize=1)
def samples() -> dict[str, bytes]:
    """One well-formed message of every kind the gateway takes, plus every sample in tests/data/ceb."""
    sets = generate(3, fault_share=0, seed=9)
    out = {f"generated {code}": write_message(code, [s.documents[i] for s in sets])
           for i, code in enumerate(("CEB311", "CEB411", "CEB511", "CEB621"))}
    out["generated CEB623"] = write_message("CEB623", [returns_stage.cancellation(s, SEED_INVT_NO) for s in sets])
    out["generated CEB625"] = write_message("CEB625", [returns_stage.return_request(s, SEED_INVT_NO) for s in sets])
    out.update({path.name: path.read_bytes() for path in sorted(DATA.glob("*.xml"))})
    return out


def leaf_fields(message: bytes) -> list[str]:
    """Names of the elements holding text in a message (the fields a mutation can replace)."""
    return sorted({name.decode() for name in re.findall(rb"<ceb:(\w+)>[^<]*</ceb:\1>", message)})


def with_field(message: bytes, name: str, text: str, *, raw: bool = False) -> bytes:
    """The message with the first ``name`` element's text replaced (escaped unless ``raw``)."""
    value = text.encode("utf-8", "surrogatepass") if raw else escape(text).encode("utf-8", "surrogatepass")
    pattern = re.compile(rb"(<ceb:" + name.encode() + rb">)[^<]*(</ceb:" + name.encode() + rb">)")
    return pattern.sub(lambda m: m.group(1) + value + m.group(2), message, count=1)


def with_documents(message: bytes, copies: int) -> bytes:
    """The message with its first business document repeated ``copies`` times."""
    start = message.index(b"<ceb:", message.index(b">", message.index(b"Message ")) + 1)
    name = re.match(rb"<ceb:(\w+)", message[start:]).group(1)
    end = message.index(b"</ceb:" + name + b">", start) + len(name) + 7
    return message[:start] + message[start:end] * copies + message[end:]


def deep(depth: int) -> bytes:
    """A message whose one field nests ``depth`` elements."""
    return (b'<?xml version="1.0" encoding="UTF-8"?><ceb:CEB311Message ' + NS + b" " + GUID + b"><ceb:Order>"
            + b"<ceb:x>" * depth + b"</ceb:x>" * depth + b"</ceb:Order></ceb:CEB311Message>")


def billion_laughs(levels: int = 9, width: int = 10) -> bytes:
    entities = [b'<!ENTITY l0 "lol">'] + [
        b"<!ENTITY l%d \"%s\">" % (i, b"".join(b"&l%d;" % (i - 1) for _ in range(width))) for i in range(1, levels + 1)]
    return (b'<?xml version="1.0"?><!DOCTYPE ceb:CEB311Message [' + b"".join(entities) + b"]>"
            b"<ceb:CEB311Message " + NS + b" " + GUID + b"><ceb:Order><ceb:OrderHead><ceb:orderNo>&l%d;"
            b"</ceb:orderNo></ceb:OrderHead></ceb:Order></ceb:CEB311Message>" % levels)


def quadratic_blowup(size: int = 50_000, uses: int = 2_000) -> bytes:
    return (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "' + b"a" * size + b'">]><ceb:CEB311Message ' + NS
            + b" " + GUID + b"><ceb:Order><ceb:OrderHead><ceb:note>" + b"&a;" * uses
            + b"</ceb:note></ceb:OrderHead></ceb:Order></ceb:CEB311Message>")


def external_entity(url: str, parameter: bool = False) -> bytes:
    declaration = (b'<!ENTITY %% p SYSTEM "%s"> %%p;' % url.encode()) if parameter \
        else (b'<!ENTITY x SYSTEM "%s">' % url.encode())
    use = b"" if parameter else b"&x;"
    return (b'<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE ceb:CEB311Message [' + declaration + b"]>"
            b"<ceb:CEB311Message " + NS + b" " + GUID + b"><ceb:Order><ceb:OrderHead><ceb:orderNo>" + use
            + b"</ceb:orderNo></ceb:OrderHead></ceb:Order></ceb:CEB311Message>")


def xinclude(path: Path) -> bytes:
    order = samples()["generated CEB311"]
    inclusion = (b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="' + path.as_uri().encode()
                 + b'" parse="text"/>')
    return with_field(order, "note", inclusion.decode(), raw=True) if b"<ceb:note>" in order else \
        order.replace(b"</ceb:orderNo>", b"</ceb:orderNo><ceb:note>" + inclusion + b"</ceb:note>", 1)


@lru_cache(maxsize=4)
def attacks(secret_file: Path) -> dict[str, bytes]:
    """Every entity and inclusion trick, by name."""
    uri = secret_file.as_uri()
    bom = b"\xef\xbb\xbf"
    return {
        "billion laughs": billion_laughs(),
        "billion laughs, wider": billion_laughs(levels=6, width=60),
        "quadratic blowup": quadratic_blowup(),
        "external entity (file)": external_entity(uri),
        "external entity (http)": external_entity("http://127.0.0.1:9/x"),
        "external parameter entity": external_entity(uri, parameter=True),
        "external DTD": b'<?xml version="1.0"?><!DOCTYPE m SYSTEM "' + uri.encode() + b'"><m/>',
        "DOCTYPE after BOM and comments": bom + b"<!-- x --><?pi y?>" + external_entity(uri).split(b"?>", 1)[1],
        "XInclude": xinclude(secret_file),
        "deep nesting 10k": deep(10_000),
        "deep nesting 300": deep(300),
    }


# --- hypothesis strategies shared by the fuzz tests ------------------------------------------

MUTATION = st.tuples(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]),
                     st.integers(0, 2**31), st.binary(min_size=1, max_size=16))


def mutate(data: bytes, ops) -> bytes:
    """``data`` after byte-level edits drawn from ``MUTATION``."""
    for op, where, payload in ops:
        at = where % (len(data) + 1)
        if op == "flip" and data:
            at %= len(data)
            data = data[:at] + bytes([data[at] ^ (payload[0] or 1)]) + data[at + 1:]
        elif op == "insert":
            data = data[:at] + payload + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + len(payload) * 4:]
        elif op == "duplicate":
            data = data[:at] + data[at:at + len(payload) * 8] + data[at:]
        else:
            data = data[:at]
    return data


NUMBERS = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,40}(\.[0-9]{0,12})?\Z"),
    st.from_regex(r"\A-?[0-9]{1,5}(\.[0-9]+)?[eE][-+]?[0-9]{1,4}\Z"),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "-0", "+5", "0x1F", "1,000", "１２３", "٣.١٤", "", " ", ".",
                     "9223372036854775808", "-9223372036854775809", "99999999999999.99999", "1" * 400]),
    st.integers().map(str))
TEXTS = st.one_of(st.text(max_size=300), st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
                  st.sampled_from(["\x00", "\x07\x1b", "\ud800", "\ufffe", "\u202e", "a\r\nb", "<", "&", "]]>"]))
MARKUP = st.sampled_from(["<ceb:x/>", "<![CDATA[<ceb:orderNo>1</ceb:orderNo>]]>", "<!-- c -->", "<?pi x?>",
                          "&amp;&lt;&#0;", "&#x110000;", "&undefined;", "<ceb:guid>dup</ceb:guid>", "</ceb:Order>"])
