"""The shape of an ingest request body, checked reading by reading."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
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


_batch = TypeAdapter(list[ReadingIn])


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


def parse_items(items: list[object]) -> tuple[list[tuple[int, ReadingIn]], list[dict]]:
    """Split items into (index, reading) pairs that have the right shape and rejections that don't."""
    try:
        # One call into pydantic-core for the usual all-good batch.
        return list(enumerate(_batch.validate_python(items))), []
    except ValidationError:
        pass
    valid, rejected = [], []
    for index, item in enumerate(items):
        try:
            valid.append((index, ReadingIn.model_validate(item)))
        except ValidationError as error:
            code, params = describe(error)
            rejected.append(rejection(index, code, **params))
    return valid, rejected
