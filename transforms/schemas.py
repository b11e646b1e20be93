"""The one pyarrow schema of each written record (``transforms/records.py``), and records ->
tables.

Kept apart from the record types so that importing them does not import pyarrow: the extraction
child process imports ``transforms.extract`` and with it the records, and pyarrow (with numpy)
was a third of its start-up (~0.1 s of ~0.33 s, at every start of a child).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

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
