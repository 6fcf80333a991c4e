"""The shape of an ingest request body, checked reading by reading."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _plain_or_not_finite(text: str) -> bool:
    """Plain decimal digits, or "NaN"/"Infinity" (left for the finite-number check to name)."""
    if _DECIMAL_TEXT.fullmatch(text):
        return True
    try:
        return not Decimal(text).is_finite()
    except InvalidOperation:
        return False


_MESSAGES = {
    "missing": "{field} is required",
    "extra_forbidden": "unknown field {field!r}",
    "timezone_aware": "timestamp must include a time zone, e.g. 'Z' or '+01:00'",
    "finite_number": "energy_kwh must be a finite number",
    "greater_than_equal": "energy_kwh must not be negative",
    "decimal_max_places": "energy_kwh has more than 3 decimal places",
    "decimal_max_digits": "energy_kwh is too large",
    "decimal_whole_digits": "energy_kwh is too large",
    "decimal_parsing": "energy_kwh must be a number or a decimal string",
    "decimal_type": "energy_kwh must be a number or a decimal string",
    "datetime_parsing": "timestamp must be an ISO 8601 date-time, e.g. 2026-11-22T10:15:00Z",
    "datetime_from_date_parsing": "timestamp must be an ISO 8601 date-time, e.g. 2026-11-22T10:15:00Z",
    "datetime_type": "timestamp must be an ISO 8601 date-time, e.g. 2026-11-22T10:15:00Z",
    "model_type": "each reading must be an object with timestamp and energy_kwh",
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
            raise ValueError("timestamp must be an ISO 8601 date-time string")
        return value

    @field_validator("energy_kwh", mode="before")
    @classmethod
    def _plain_numbers_only(cls, value: object) -> object:
        # Decimal() also takes " 5", "+5", "1e3", "1_000" and non-ASCII digits; a meter's register is
        # none of those, so a string must be plain digits (a sign only so "-1" says "negative").
        if isinstance(value, bool) or (isinstance(value, str) and not _plain_or_not_finite(value)):
            raise ValueError("energy_kwh must be a number or a decimal string")
        return value

    @property
    def utc_timestamp(self) -> datetime:
        return self.timestamp.astimezone(UTC)


_batch = TypeAdapter(list[ReadingIn])


def describe(error: ValidationError) -> str:
    """One clear sentence for the first problem of an item."""
    first = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "reading"
    template = _MESSAGES.get(first["type"])
    if template:
        return template.format(field=field)
    message = first["msg"].removeprefix("Value error, ")
    return message if message.startswith(field) else f"{field}: {message}"


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
            rejected.append({"index": index, "error": describe(error)})
    return valid, rejected
