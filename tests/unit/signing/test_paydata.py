"""The 179 ``||`` text: its exact form, and sign/verify over it."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from services.common.signing import crypto
from services.common.signing.crypto import Certificate, PrivateKey, SignatureError, test_identity
from services.common.signing.paydata import compact_json, sign_paydata, signed_text, verify_paydata

UPLOAD = """{"sessionID":"fe2374-8fnejf97-55616242","payExchangeInfoHead":{"guid":"9D55BA71-55DE-41F4-8B50-C36C83B3B419",
"initalRequest":"https://pay.example/gateway.do?a=1&b=2","initalResponse":"ok","ebpCode":"461216012c",
"payCode":"312226T001","payTransactionId":"2018121222001354081010726129","totalAmount":100.50,"currency":"142",
"verDept":"3","payType":"1","tradingTime":"20181212041803","note":"批量订单"},
"payExchangeInfoLists":[{"orderNo":"SO1","goodsInfo":[{"gname":"面霜","itemLink":"http://m.example/d?id=9"}],
"recpAccount":"2201","recpCode":"","recpName":"某公司"}],"serviceTime":1544519952469,"certNo":"X","signValue":""}"""


def parsed():
    return json.loads(UPLOAD, parse_float=Decimal)


def test_signed_text_is_the_connectors_form():
    text = signed_text(parsed())
    assert text.startswith('"sessionID":"fe2374-8fnejf97-55616242"||"payExchangeInfoHead":"{"guid":"9D55BA71')
    assert '"totalAmount":100.50,' in text  # the number as sent, not 100.5
    assert '"note":"批量订单"}"||"payExchangeInfoLists":"[{"orderNo":"SO1","goodsInfo":[{"gname":"面霜"' in text
    assert text.endswith('"recpName":"某公司"}]"||"serviceTime":"1544519952469"')
    assert "certNo" not in text and "signValue" not in text and " " not in text


def test_floats_are_refused():
    with pytest.raises(TypeError):
        compact_json({"totalAmount": 100.5})


@pytest.mark.parametrize("algorithm", ["sm2", "rsa"])
def test_sign_then_verify_and_tampering(algorithm):
    key_pem, cert_pem = test_identity("PLATFORM", algorithm)
    key, cert = PrivateKey.load(key_pem), Certificate.load(cert_pem)
    payload = parsed()
    payload["signValue"] = sign_paydata(key, payload)
    verify_paydata(cert, json.loads(json.dumps(payload, default=str).replace('"100.50"', "100.50"),
                                    parse_float=Decimal))
    payload["payExchangeInfoLists"][0]["goodsInfo"][0]["gname"] = "面膜"
    with pytest.raises(SignatureError) as err:
        verify_paydata(cert, payload)
    assert err.value.reason == crypto.SIGNATURE_MISMATCH


def test_missing_or_bad_sign_value():
    _, cert_pem = test_identity("PLATFORM")
    cert = Certificate.load(cert_pem)
    with pytest.raises(SignatureError) as err:
        verify_paydata(cert, parsed())
    assert err.value.reason == crypto.NOT_SIGNED
    with pytest.raises(SignatureError) as err:
        verify_paydata(cert, parsed(), "***")
    assert err.value.reason == crypto.MALFORMED
    payload = parsed()
    del payload["serviceTime"]
    with pytest.raises(SignatureError) as err:
        signed_text(payload)
    assert err.value.reason == crypto.MALFORMED and "serviceTime" in err.value.message
