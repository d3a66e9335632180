"""Request and response bodies of the HTTP API (pydantic: bad input is a 422 that says what)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_K = 1000
MAX_LIST = 10_000  # allow/deny list length
MAX_EVENTS = 1000  # events per POST


def _utf8_text(value: str) -> str:
    """JSON escapes can carry lone surrogates, which no response or log could encode back."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid UTF-8 text (no lone surrogates)") from None
    return value


RawId = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_utf8_text)]


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: RawId = Field(description="Raw user id as in the training data")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = Field(True, strict=True)
    allow: list[RawId] | None = Field(None, max_length=MAX_LIST, description="Only these items")
    deny: list[RawId] | None = Field(None, max_length=MAX_LIST, description="Never these items")


class Recommendation(BaseModel):
    item: str
    score: float
    title: str | None = None


class RecommendOut(BaseModel):
    items: list[Recommendation]
    model_version: int
    fallback: str | None = Field(None, description="'popularity' when the user is unknown")
    unknown_items: list[str] = Field(default_factory=list, description="Request items not in the catalogue")


class SimilarOut(BaseModel):
    item: str
    items: list[Recommendation]
    model_version: int


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: RawId
    item: RawId
    type: Literal["view", "click", "purchase", "rating", "interaction"] = "interaction"
    value: float = Field(1.0, allow_inf_nan=False, strict=True)  # strict: true is not 1.0
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False, strict=True)
    context: dict[str, Any] | None = Field(None, description="Optional JSON object (device, page, ...)")


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsOut(BaseModel):
    accepted: int
    first_offset: int | None


class ErrorOut(BaseModel):
    """Body of every error response: one line saying what went wrong."""

    detail: str


_ERROR_MEANINGS = {
    400: "the body is not valid JSON",
    401: "missing or wrong bearer token",
    404: "unknown item",
    409: "the served model has no item embeddings",
    413: "request body over the size limit",
    503: "no model published yet",
}


def error_responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI `responses=` entries documenting the given error status codes."""
    return {code: {"model": ErrorOut, "description": _ERROR_MEANINGS[code]} for code in codes}

