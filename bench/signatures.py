"""Signature benchmark: verifications per second on one core, SM2-SM3 and RSA-SHA256.

Prints one JSON object. Usage: python -m bench.signatures [--seconds S] [--rounds R]
Figures, each the best of R rounds of about S seconds (least disturbed by other processes):
- ``primitive``: ``crypto.verify`` of a signature over a canonical SignedInfo (~600 bytes);
- ``xmldsig``: ``xmldsig.verify_ceb`` of a signed one-order CEB311 message already parsed
  (SignedInfo C14N + signature, then C14N of the document + digest), what the gateway adds
  per signed message after its own parse;
- ``xmldsig_with_parse``: the same from bytes (the safe parser included);
- ``sign``: ``xmldsig.sign_ceb`` from bytes;
- ``gateway_examine_621``: what the gateway's Submit does per item (``submission.examine``: parse,
  field rules, sender check, records) for a signed one-inventory CEB621, with the signature not
  checked (no policy: the sandan before signatures) and checked against the registry (default).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

from lxml import etree

from services.common.ceb import safe_xml
from services.common.ceb.writer import write_message
from services.common.signing import crypto, xmldsig
from services.common.signing.registry import CertificateBook, record_for
from services.gateway.signatures import STANDARD, SignaturePolicy
from services.gateway.submission import CEB_XML, examine
from services.tools.generator import generate


def rate(seconds: float, rounds: int, fn) -> float:
    """Calls of ``fn`` per second: the best of ``rounds`` runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            for _ in range(20):
                fn()
            calls += 20
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, calls / elapsed)
    return round(best)


def message(code: str = "CEB311") -> bytes:
    found = generate(1, seed=7, fault_share=0)[0]
    return write_message(code, [found.order if code == "CEB311" else found.inventory])


def gateway_examine(seconds: float, rounds: int) -> dict:
    xml = message("CEB621")
    agent = etree.fromstring(xml).findtext(".//{http://www.chinaport.gov.cn/ceb}agentCode")
    key = crypto.PrivateKey.generate("sm2")
    cert = crypto.make_certificate(key, agent)
    signed = xmldsig.sign_ceb(xml, key, cert)
    book = CertificateBook()
    book.apply(record_for(cert, agent, by="bench", at_ms=0))
    codes = frozenset({agent})
    figures = {}
    for name, policy in (("signature_not_checked_per_s", None),
                         ("signature_checked_per_s", SignaturePolicy(STANDARD, book))):
        def once(policy=policy):
            submission = examine(CEB_XML, "CEB621", signed, codes, "bench", None, policy)
            assert submission.accepted, submission.refused
        figures[name] = rate(seconds, rounds, once)
    return figures


def figures(algorithm: str, xml: bytes, seconds: float, rounds: int) -> dict:
    key = crypto.PrivateKey.generate(algorithm)
    cert = crypto.make_certificate(key, "3301963K27")
    signed = xmldsig.sign_ceb(xml, key, cert)
    root = etree.fromstring(signed)
    info = xmldsig.read_signature(root)
    signed_info = xmldsig.canonical_signed_info(info.signed_info)
    raw = crypto.sign(key, signed_info)
    xmldsig.verify_ceb(root, cert)  # it does verify
    return {
        "message_bytes": len(signed),
        "primitive_verify_per_s": rate(seconds, rounds, lambda: crypto.verify(cert, signed_info, raw, key.algorithm)),
        "xmldsig_verify_per_s": rate(seconds, rounds, lambda: xmldsig.verify_ceb(root, cert)),
        "xmldsig_verify_with_parse_per_s": rate(seconds, rounds, lambda: xmldsig.verify_ceb(
            safe_xml.load(signed, source="bench", max_bytes=len(signed)), cert)),
        "sign_per_s": rate(seconds, rounds, lambda: xmldsig.sign_ceb(xml, key, cert)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="length of one measuring run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure; the best is kept")
    args = parser.parse_args(argv)
    xml = message()
    result = {
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}, "
                   f"{_openssl()}",
        "one_core": True,
        "sm2_sm3": figures("sm2", xml, args.seconds, args.rounds),
        "rsa_sha256_2048": figures("rsa", xml, args.seconds, args.rounds),
        "gateway_examine_621_sm2": gateway_examine(args.seconds, args.rounds),
    }
    print(json.dumps(result))
    return 0


def _openssl() -> str:
    import ssl
    return ssl.OPENSSL_VERSION


if __name__ == "__main__":
    raise SystemExit(main())
