"""Request and response bodies of the HTTP API (pydantic: bad input is a 422 that says what)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_K = 1000
MAX_LIST = 10_000  # allow/deny list length
MAX_EVENTS = 1000  # events per POST


class RecommendIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=256, description="Raw user id as in the training data")
    k: int = Field(10, ge=1, le=MAX_K)
    exclude_seen: bool = True
    allow: list[str] | None = Field(None, max_length=MAX_LIST, description="Only these items")
    deny: list[str] | None = Field(None, max_length=MAX_LIST, description="Never these items")


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

    user: str = Field(min_length=1, max_length=256)
    item: str = Field(min_length=1, max_length=256)
    type: Literal["view", "click", "purchase", "rating", "interaction"] = "interaction"
    value: float = Field(1.0, allow_inf_nan=False)
    timestamp: float | None = Field(None, ge=0, allow_inf_nan=False)
    context: dict[str, Any] | None = Field(None, description="Optional JSON object (device, page, ...)")


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsOut(BaseModel):
    accepted: int
    first_offset: int | None
