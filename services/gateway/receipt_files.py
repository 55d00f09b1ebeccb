"""Receipt messages as files for an enterprise's connector: named by the message's own guid and
written whole (a temporary file in the same folder, then a rename), so a connector polling the
folder never picks up half a file."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

_ROOT_GUID = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?CEB\d{3}Message\b[^>]*?\sguid=\"([0-9A-Za-z-]{1,64})\"")
_SNIFF_BYTES = 4096


def root_guid(payload: bytes) -> str:
    """The ``guid`` attribute of a CEB message's root element ("" when none is found)."""
    found = _ROOT_GUID.search(payload[:_SNIFF_BYTES])
    return found.group(1).decode() if found else ""


def write_atomically(path: Path, data: bytes) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
