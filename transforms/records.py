"""Record types that flow between stages, and the one pyarrow schema of each written record.

Every stage takes and returns these small immutable values:

    Document  --ExtractMainText-->  Article  --CleanText/Fingerprint/...-->  Article
                        \\ any stage: Failure (tagged output ``failed``)

Timestamps are timezone-aware UTC ``datetime`` values everywhere; they are written as
``timestamp[us, UTC]``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

#: One Beam metrics namespace for the whole pipeline.
METRICS_NAMESPACE = "storybeam"
#: Tag of the side output that carries ``Failure`` values out of every stage.
FAILED = "failed"
#: Stage name of failures that are deliberate drops (counted as ``filtered`` in summary.json).
FILTER_STAGE = "filter"

UTC = timezone.utc


def utcnow() -> datetime:
    """The wall clock, called at run time only (never at import)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Document:
    """One input document before extraction: raw HTML bytes or plain text, plus what the
    source knew about it (feed entry metadata, WARC headers, JSON fields)."""

    url: str
    source_kind: str  # 'feeds' | 'warc' | 'jsonl' | 'text'
    fetched_at: datetime
    html: bytes | None = None
    text: str | None = None
    title: str | None = None
    published_at: datetime | None = None
    content_type: str | None = None
    charset: str | None = None  # declared by HTTP header / WARC record, if any
    language: str | None = None
    author: str | None = None
    categories: tuple[str, ...] = ()
    feed_url: str | None = None
    entry_id: str | None = None
    topic_hint: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A document that failed or was filtered at some stage, with a short stable reason code."""

    url: str
    stage: str  # fetch, parse, read, extract, clean, filter, write, late, ...
    reason: str  # http_404, timeout, too_large, blocked_address, not_html, empty_text, ...
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Article:
    """An extracted article. Stages fill fields in order with ``dataclasses.replace``."""

    url: str
    fetched_at: datetime
    text: str
    source: str = ""  # publisher host
    title: str | None = None
    published_at: datetime | None = None
    language: str | None = None
    author: str | None = None
    categories: tuple[str, ...] = ()
    feed_url: str | None = None
    topic_hint: str | None = None
    extractor: str = ""  # which extractor produced the text
    # cleaning
    rules_fired: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()  # audit: text the cleaner removed
    # fingerprint
    canonical_url: str = ""
    article_id: str = ""
    content_hash: str = ""
    signature: tuple[int, ...] = ()  # near-duplicate fingerprint (not written)
    shingle_count: int = 0  # distinct word shingles of the text (not written)
    # topics / stories
    topic: str = ""
    topic_terms: tuple[str, ...] = ()
    story_id: str = ""
    duplicate_of: str | None = None

    @property
    def event_time(self) -> datetime:
        """Event time used for windowing: published, else fetched."""
        return self.published_at or self.fetched_at


@dataclass(frozen=True, slots=True)
class Story:
    story_id: str
    topic: str
    title: str
    article_ids: tuple[str, ...]
    size: int
    first_published: datetime | None
    last_published: datetime | None
    window_start: datetime | None
    window_end: datetime | None


def replace(record: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` under a short name (records are frozen)."""
    return dataclasses.replace(record, **changes)


_TS = pa.timestamp("us", tz="UTC")

ARTICLE_SCHEMA = pa.schema(
    [
        ("article_id", pa.string()),
        ("url", pa.string()),
        ("canonical_url", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("published_at", _TS),
        ("fetched_at", _TS),
        ("language", pa.string()),
        ("topic", pa.string()),
        ("story_id", pa.string()),
        ("content_hash", pa.string()),
        ("duplicate_of", pa.string()),
        ("author", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("feed_url", pa.string()),
        ("extractor", pa.string()),
        ("topic_terms", pa.list_(pa.string())),
        ("rules_fired", pa.list_(pa.string())),
        ("removed", pa.list_(pa.string())),
    ]
)

STORY_SCHEMA = pa.schema(
    [
        ("story_id", pa.string()),
        ("topic", pa.string()),
        ("title", pa.string()),
        ("article_ids", pa.list_(pa.string())),
        ("size", pa.int64()),
        ("first_published", _TS),
        ("last_published", _TS),
        ("window_start", _TS),
        ("window_end", _TS),
    ]
)

FAILURE_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("at", _TS),
    ]
)


def _row(record: Any, schema: pa.Schema) -> dict[str, Any]:
    row = {}
    for name in schema.names:
        value = getattr(record, name)
        row[name] = list(value) if isinstance(value, tuple) else value
    return row


def to_table(records: list[Any], schema: pa.Schema) -> pa.Table:
    """Records (any of the dataclasses above) -> a table with exactly ``schema``."""
    return pa.Table.from_pylist([_row(r, schema) for r in records], schema=schema)


SCHEMAS = {"articles": ARTICLE_SCHEMA, "stories": STORY_SCHEMA, "failures": FAILURE_SCHEMA}
