"""Random guids in CEB's form: a version-4 UUID, 36 characters, upper case.

Every receipt carries one (four per declaration), and ``str(uuid.uuid4()).upper()`` costs
about twice this: it builds a UUID object and its int before formatting.
"""
from __future__ import annotations

import os

_VARIANT = "89AB"  # RFC 4122 variant: the top two bits of the 17th hex digit are 10


def random_guid() -> str:
    h = os.urandom(16).hex().upper()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
