"""Hostile or broken bytes: DTDs and entities, encodings, sizes, non-XML."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from services.common.ceb import CebError, parse_file, parse_message, safe_xml

DATA = Path(__file__).resolve().parents[1] / "data" / "ceb"
ORDER = (DATA / "CEB311_order.xml").read_bytes()
NS = b'xmlns:ceb="http://www.chinaport.gov.cn/ceb"'

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ceb:CEB311Message """ + NS + b""" guid="00000000-0000-4000-8000-000000000000" version="1.0">&lol9;</ceb:CEB311Message>
"""

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE ceb:CEB311Message [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ceb:CEB311Message """ + NS + b""" guid="00000000-0000-4000-8000-000000000000" version="1.0"><ceb:Order><ceb:OrderHead><ceb:orderNo>&xxe;</ceb:orderNo></ceb:OrderHead></ceb:Order></ceb:CEB311Message>
"""


def refused(data: bytes, **options) -> str:
    with pytest.raises(CebError) as caught:
        parse_message(data, source="in.xml", xsd_dir="", **options)
    message = str(caught.value)
    assert message.startswith("in.xml: ")
    return message


def test_billion_laughs_is_refused_before_expansion():
    message = refused(BILLION_LAUGHS)
    assert "DOCTYPE is not allowed" in message and "lol" not in message


def test_external_entity_is_refused():
    message = refused(XXE, lenient=True)
    assert "DOCTYPE is not allowed" in message and "root:" not in message


def test_the_parser_itself_resolves_no_external_entity():
    # Belt and braces: even without the prolog check, the parser must not read the file.
    root = etree.fromstring(XXE, safe_xml._parser())
    text = "".join(root.itertext())
    assert "root:" not in text


def test_doctype_after_comments_is_still_found():
    data = b"<?xml version='1.0'?>\n<!-- hi -->\n<?pi x?>\n<!DOCTYPE x SYSTEM 'http://example.com/x.dtd'>\n<x/>"
    assert "DOCTYPE is not allowed" in refused(data)


def test_doctype_text_inside_cdata_is_harmless():
    data = ORDER.replace(b"<ceb:note>", b"<ceb:note><![CDATA[<!DOCTYPE x>]]>", 1)
    assert parse_message(data, xsd_dir="").documents[0]["note"].startswith("<!DOCTYPE x>")


def test_undeclared_entity_is_not_xml():
    data = ORDER.replace(b"<ceb:note>", b"<ceb:note>&xxe;", 1)
    assert "not well-formed XML: Entity 'xxe' not defined" in refused(data)


def test_invalid_utf8_is_refused_with_its_offset():
    position = ORDER.index("张三".encode())
    data = ORDER[:position] + b"\xff" + ORDER[position + 1:]
    assert f"not valid UTF-8 (byte 0xff at offset {position})" in refused(data)


def test_gbk_text_is_refused():
    data = ORDER.replace("张三".encode(), "张三".encode("gbk"), 1)
    assert "not valid UTF-8" in refused(data)


def test_other_declared_encoding_is_refused():
    data = ORDER.replace(b'encoding="UTF-8"', b'encoding="GBK"', 1)
    assert "names encoding 'GBK'; CEB messages are UTF-8" in refused(data)


def test_utf16_is_refused():
    assert "UTF-16" in refused(ORDER.decode().encode("utf-16"))


@pytest.mark.parametrize("data", [b"", b"   \n\t ", b"\xef\xbb\xbf"])
def test_empty_input_is_refused(data):
    assert refused(data) == "in.xml: input is empty"


@pytest.mark.parametrize("data", [b"hello", b'{"orderNo": "O1"}', b"<ceb:CEB311Message", ORDER[:-40], ORDER + b"<x/>"])
def test_non_xml_is_refused(data):
    assert "not well-formed XML" in refused(data)


def test_oversize_input_is_refused_by_argument():
    assert parse_message(ORDER, max_bytes=len(ORDER), xsd_dir="").documents
    assert f"input is {len(ORDER)} bytes, larger than the limit of 1000" in refused(ORDER, max_bytes=1000)


def test_oversize_input_is_refused_by_setting(monkeypatch):
    monkeypatch.setenv("SANDAN_CEB_MAX_BYTES", "2048")
    assert "larger than the limit of 2048 (SANDAN_CEB_MAX_BYTES)" in refused(ORDER)


def test_default_limit_is_ten_mebibytes(monkeypatch):
    monkeypatch.delenv("SANDAN_CEB_MAX_BYTES", raising=False)
    assert "larger than the limit of 10485760" in refused(b" " * (10 * 1024 * 1024 + 1))


def test_oversize_file_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.xml"
    path.write_bytes(ORDER)
    with pytest.raises(CebError, match="larger than the limit of 100 "):
        parse_file(path, max_bytes=100)


def test_text_is_not_accepted_in_place_of_bytes():
    with pytest.raises(TypeError):
        parse_message(ORDER.decode())
