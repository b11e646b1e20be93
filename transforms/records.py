"""Record types that flow between stages (their pyarrow schemas: ``transforms/schemas.py``).

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
