"""The platform's payment data: a JSON-lines file it appends to (one order's raw data a line)."""
from __future__ import annotations

from pathlib import Path

from services.paydata_platform.responder import read_record


class PaydataFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def find(self, order_no: str) -> dict | None:
        """The last record of ``order_no`` in the file (a later line corrects an earlier one)."""
        found = None
        try:
            with self.path.open(encoding="utf-8") as lines:
                for line in lines:
                    if order_no in line:
                        record = read_record(line)
                        if record is not None and record["orderNo"].strip() == order_no:
                            found = record
        except FileNotFoundError:
            return None
        return found
