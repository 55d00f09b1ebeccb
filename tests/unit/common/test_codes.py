"""Rule codes: each described once, with the customs return codes DOMAIN §1 gives."""
from __future__ import annotations

from services.common import codes


def test_every_code_has_a_description_and_the_customs_codes_of_the_domain():
    names = [v for k, v in vars(codes).items() if k.isupper() and isinstance(v, str)]
    assert set(names) == set(codes.CODES)
    assert all(c.description for c in codes.CODES.values())
    assert codes.CODES[codes.SINGLE_LIMIT].customs == (-621005,)
    assert codes.CODES[codes.ANNUAL_LIMIT].customs == (-621018,)
    assert codes.CODES[codes.DUPLICATE].customs == (-301010, -621004)
    assert codes.CODES[codes.LOCKED].customs == (-301011,)
