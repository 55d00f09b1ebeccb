"""The tax-rate table: HS-code prefix → (VAT rate, consumption-tax rate).

The table is data, not code (DOMAIN §3 calls the default a decision and wants it
overridable), so it lives in a CSV with the columns
``hs_prefix,vat_rate,consumption_rate,description``. A line's rates come from the LONGEST
prefix of its ``gcode`` found in the table; the row with an empty prefix is the default and
must exist, so every HS code has rates and the hot path never meets a missing one. Blank
lines and lines starting with ``#`` are ignored.
"""
from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

from services.common import config
from services.common.money import AmountError, parse_amount

SHIPPED = Path(__file__).with_name("tax_rates.csv")
COLUMNS = ("hs_prefix", "vat_rate", "consumption_rate", "description")
_ONE = Decimal(1)


class RateFileError(ValueError):
    """A rate file that cannot be used; the message names the file and line."""


class RateTable:
    """Rates by HS prefix, looked up by longest matching prefix."""

    __slots__ = ("_rates", "_longest", "descriptions", "source")

    def __init__(self, rates: dict[str, tuple[Decimal, Decimal]], *, descriptions: dict[str, str] | None = None,
                 source: str = "") -> None:
        if "" not in rates:
            raise RateFileError(f"{source or 'rate table'}: no default row (empty hs_prefix)")
        self._rates = dict(rates)
        self._longest = max(len(p) for p in self._rates)
        self.descriptions = dict(descriptions or {})
        self.source = source

    def lookup(self, gcode: str) -> tuple[Decimal, Decimal]:
        """(vat, consumption) for an HS code."""
        code = gcode.strip()
        rates = self._rates
        for n in range(min(len(code), self._longest), 0, -1):
            found = rates.get(code[:n])
            if found is not None:
                return found
        return rates[""]

    def prefixes(self) -> list[str]:
        return sorted(self._rates)

    def __len__(self) -> int:
        return len(self._rates)


def load_rates(path: str | Path | None = None) -> RateTable:
    """Read a rate CSV; ``None`` means the ``SANDAN_TAX_RATES`` setting, else the shipped table."""
    chosen = Path(path) if path else Path(config.get("SANDAN_TAX_RATES") or SHIPPED)
    try:
        with chosen.open(encoding="utf-8-sig", newline="") as fh:
            return parse_rates(fh, source=str(chosen))
    except OSError as exc:
        raise RateFileError(f"{chosen}: cannot read the rate file ({exc.strerror or exc})") from None


def parse_rates(lines, *, source: str = "<rates>") -> RateTable:
    """Build a table from CSV text lines (an open file or a list of strings)."""
    reader = csv.reader(lines)
    rates: dict[str, tuple[Decimal, Decimal]] = {}
    descriptions: dict[str, str] = {}
    header_seen = False
    for row in reader:
        where = f"{source}:{reader.line_num}"
        if not row or all(not cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        cells = [cell.strip() for cell in row]
        if not header_seen:
            if tuple(cells) != COLUMNS:
                raise RateFileError(f"{where}: header must be {','.join(COLUMNS)}, found {','.join(cells)}")
            header_seen = True
            continue
        if len(cells) != len(COLUMNS):
            raise RateFileError(f"{where}: expected {len(COLUMNS)} columns, found {len(cells)}")
        prefix, vat_text, consumption_text, description = cells
        if prefix and not (prefix.isascii() and prefix.isdigit() and len(prefix) <= 10):
            raise RateFileError(f"{where}: hs_prefix {prefix!r} is not 1-10 digits")
        if prefix in rates:
            raise RateFileError(f"{where}: hs_prefix {prefix!r} appears twice")
        vat = _rate(vat_text, "vat_rate", where)
        consumption = _rate(consumption_text, "consumption_rate", where)
        rates[prefix] = (vat, consumption)
        descriptions[prefix] = description
    if not header_seen:
        raise RateFileError(f"{source}: empty rate file")
    if "" not in rates:
        raise RateFileError(f"{source}: no default row (empty hs_prefix)")
    return RateTable(rates, descriptions=descriptions, source=source)


def _rate(text: str, column: str, where: str) -> Decimal:
    try:
        value = parse_amount(text)
    except AmountError:
        raise RateFileError(f"{where}: {column} {text!r} is not a decimal number") from None
    # c = 1 would divide by zero in P/(1-c); a rate is a fraction, not a percentage.
    if not (0 <= value < _ONE):
        raise RateFileError(f"{where}: {column} {text} must be at least 0 and below 1")
    return value
