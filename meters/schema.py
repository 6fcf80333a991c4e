"""The shape of an ingest request body, checked reading by reading."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from meters.reasons import rejection

_KWH = Decimal("0.001")
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _plain_or_not_finite(text: str) -> bool:
    """Plain decimal digits, or "NaN"/"Infinity" (left for the finite-number check to name)."""
    if _DECIMAL_TEXT.fullmatch(text):
        return True
    try:
        return not Decimal(text).is_finite()
    except InvalidOperation:
        return False


# pydantic error type -> our code (meters/reasons.py renders the sentence).
_CODES = {
    "missing": "reading.missing_field",
    "extra_forbidden": "reading.unknown_field",
    "timezone_aware": "reading.naive",
    "finite_number": "reading.not_finite",
    "greater_than_equal": "reading.negative",
    "decimal_max_places": "reading.too_precise",
    "decimal_max_digits": "reading.too_large",
    "decimal_whole_digits": "reading.too_large",
    "decimal_parsing": "reading.not_a_number",
    "decimal_type": "reading.not_a_number",
    "datetime_parsing": "reading.bad_timestamp",
    "datetime_from_date_parsing": "reading.bad_timestamp",
    "datetime_type": "reading.bad_timestamp",
    "datetime_object_invalid": "reading.bad_timestamp",
    "model_type": "reading.not_an_object",
}


class ReadingIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timestamp: AwareDatetime
    energy_kwh: Decimal = Field(ge=0, max_digits=15, decimal_places=3, allow_inf_nan=False)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_text_only(cls, value: object) -> object:
        # pydantic would read a bare number as a Unix time; the contract says ISO 8601 text.
        # (datetime objects come from Python callers such as seed_demo, never from JSON.)
        if not isinstance(value, str | datetime):
            raise PydanticCustomError("reading.timestamp_not_text", "timestamp must be text")
        return value

    @field_validator("timestamp", mode="after")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        # Year 1 with a positive offset, or 9999-12-31 with a negative one, has no UTC instant in
        # datetime's range: astimezone() raises OverflowError. Refuse it here, as a rejection.
        try:
            return value.astimezone(UTC)
        except OverflowError:
            code = "reading.future" if value.year > 1 else "reading.out_of_range"
            raise PydanticCustomError(code, "timestamp out of range") from None

    @field_validator("energy_kwh", mode="before")
    @classmethod
    def _plain_numbers_only(cls, value: object) -> object:
        # Decimal() also takes " 5", "+5", "1e3", "1_000" and non-ASCII digits; a meter's register is
        # none of those, so a string must be plain digits (a sign only so "-1" says "negative").
        if isinstance(value, bool) or (isinstance(value, str) and not _plain_or_not_finite(value)):
            raise PydanticCustomError("reading.not_a_number", "not a number")
        return value

    @property
    def utc_timestamp(self) -> datetime:
        return self.timestamp  # _in_utc made it UTC

    @property
    def register_kwh(self) -> Decimal:
        """The register as stored, to the thousandth (100 is 100.000)."""
        return self.energy_kwh.quantize(_KWH)


def describe(error: ValidationError) -> tuple[str, dict[str, str]]:
    """The code (and its sentence's parameters) of the first problem of an item."""
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "reading"
    kind = first["type"]
    if kind.startswith("reading."):
        return kind, {}
    if kind in _CODES:
        return _CODES[kind], {"field": field}
    return "reading.malformed", {"field": field, "detail": first["msg"].removeprefix("Value error, ")}


class PlainReading(NamedTuple):
    """A reading in the form meters send, checked without pydantic: the values ReadingIn would hold."""

    utc_timestamp: datetime
    energy_kwh: Decimal
    register_kwh: Decimal  # energy_kwh to the thousandth, as stored


Checked = ReadingIn | PlainReading  # what ingest takes: utc_timestamp and register_kwh

# The form meters send: ISO 8601 to the second (a fraction at most to the microsecond) with Z or an
# offset, and the register as a JSON number or plain decimal text, under 10^12 with at most 3 decimals.
# An item in exactly that form is checked by plain_reading() in a few comparisons (a quarter of what
# pydantic takes, which is most of a 1,000-reading batch's Python time); pydantic judges every other
# item and names its problem. tests/meters/test_schema.py holds the two equal on what the first takes.
_PLAIN_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)  # an offset's minutes stop at 59: fromisoformat reads "-00:60" as an hour, pydantic refuses it
_PLAIN_KWH_TEXT = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,3})?")
_MAX_KWH = Decimal(10) ** 12


def plain_reading(item: object) -> PlainReading | None:
    """``item`` checked, if it is in the form meters send and pydantic would take it as it is; else None."""
    if type(item) is not dict or len(item) != 2:
        return None
    timestamp, kwh = item.get("timestamp"), item.get("energy_kwh")
    if type(timestamp) is not str or not _PLAIN_TIME.fullmatch(timestamp):
        return None
    kind = type(kwh)  # exact types: bool is an int, and never a register
    if kind is Decimal:  # a JSON number with a fraction or an exponent (parsed with parse_float=Decimal)
        if not (kwh.is_finite() and 0 <= kwh < _MAX_KWH):
            return None
    elif kind is int:
        if not 0 <= kwh < _MAX_KWH:
            return None
        kwh = Decimal(kwh)
    elif kind is str and _PLAIN_KWH_TEXT.fullmatch(kwh):
        kwh = Decimal(kwh)
    else:
        return None
    register = kwh.quantize(_KWH)
    if register != kwh:  # more than 3 decimals
        return None
    try:
        moment = datetime.fromisoformat(timestamp).astimezone(UTC)
    except (ValueError, OverflowError):  # no such day or offset, or no UTC instant: pydantic says which
        return None
    return PlainReading(moment, kwh, register)


def parse_items(items: list[object]) -> tuple[list[tuple[int, Checked]], list[dict]]:
    """Split items into (index, reading) pairs that have the right shape and rejections that don't."""
    valid: list[tuple[int, Checked]] = []
    rejected = []
    for index, item in enumerate(items):
        if (plain := plain_reading(item)) is not None:
            valid.append((index, plain))
            continue
        try:
            valid.append((index, ReadingIn.model_validate(item)))
        except ValidationError as error:
            code, params = describe(error)
            rejected.append(rejection(index, code, **params))
    return valid, rejected
