"""Bounded sources: WARC archives, JSON lines and plain-text files, all read through fsspec.

``ReadDocuments`` turns a list of fsspec globs into ``Document`` values (and ``Failure`` values
for what cannot be read). Globs are expanded when the pipeline is built, so a missing input stops
the run before any work; each matched file is one work unit, spread over workers by a
``Reshuffle`` so that one large archive does not serialise the run.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics

from transforms.extract import source_host
from transforms.records import FAILED, FILTER_STAGE, METRICS_NAMESPACE, UTC, Document, Failure, utcnow

LOG = logging.getLogger(__name__)

SOURCE_KINDS = ("feeds", "warc", "jsonl", "text")
HTML_TYPES = ("text/html", "application/xhtml+xml")


class InputError(ValueError):
    """A usage error about ``--input`` (no file matches, unreadable location)."""


@dataclass(frozen=True)
class SourceSettings:
    # Largest WARC record or text/JSON document read, in bytes; larger ones become failures
    # with reason too_large (a news page is rarely above 2 MB; 10 MB leaves room for inline data).
    max_record_bytes: int = 10_000_000
    # WARC record types processed as documents; other types (request, metadata, warcinfo ...)
    # are counted as skipped records, not inputs.
    warc_record_types: tuple[str, ...] = ("response",)
    # Only WARC records whose WARC-Date falls in [date_from, date_to) are read (ISO dates, empty
    # = unbounded). Records outside are skipped, like non-response records.
    date_from: str = ""
    date_to: str = ""
    # Host filters for WARC records (suffix match: "example.com" also matches "www.example.com").
    hosts_allow: tuple[str, ...] = ()
    hosts_deny: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_record_bytes <= 0:
            raise ValueError("max_record_bytes: must be positive")
        for name in ("date_from", "date_to"):
            value = getattr(self, name)
            if value:
                try:
                    parse_datetime(value, strict=True)
                except ValueError as err:
                    raise ValueError(f"{name}: not an ISO date: {value!r}") from err
        bad = set(self.warc_record_types) - {"response", "resource", "revisit"}
        if bad:
            raise ValueError(f"warc_record_types: unsupported {sorted(bad)}")


# --------------------------------------------------------------------------- helpers


def expand_inputs(patterns: Iterable[str]) -> list[str]:
    """fsspec globs -> sorted, de-duplicated list of file URLs. Raises InputError when a pattern
    matches nothing, so a typo stops the run with a clear message instead of an empty output."""
    urls: list[str] = []
    for pattern in patterns:
        try:
            fs, _, paths = fsspec.get_fs_token_paths(pattern)
        except Exception as err:  # bad protocol, missing credentials...
            raise InputError(f"cannot open input {pattern!r}: {err}") from err
        files = [p for p in paths if not fs.isdir(p)] if paths else []
        if not files:
            raise InputError(f"input {pattern!r} matches no file")
        urls.extend(fs.unstrip_protocol(p) if "://" in pattern else p for p in files)
    return sorted(set(urls))


def parse_datetime(value: object, *, strict: bool = False) -> datetime | None:
    """ISO 8601 string, RFC 2822 string or epoch seconds -> aware UTC datetime, else None."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), UTC)
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            from email.utils import parsedate_to_datetime

            parsed = parsedate_to_datetime(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        if strict:
            raise ValueError(f"not a date: {value!r}") from None
        return None


def _failure(url: str, stage: str, reason: str, detail: str) -> Failure:
    return Failure(url=url, stage=stage, reason=reason, detail=detail[:500], at=utcnow())


# --------------------------------------------------------------------------- text files

_SENTENCE_END = re.compile(r"[.!?…]['\"”’)]?$")


def looks_like_title(line: str) -> bool:
    """A first line reads like a title when it is short and has no closing full stop."""
    line = line.strip()
    return 0 < len(line) <= 200 and len(line.split()) <= 25 and not _SENTENCE_END.search(line)


def split_title(text: str) -> tuple[str | None, str]:
    """Plain-text article -> (title, body). The first non-empty line is the title when it reads
    like one; otherwise the title is empty and that line stays the first paragraph."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip():
            if looks_like_title(line):
                return line.strip(), "\n".join(lines[i + 1 :]).strip("\n")
            return None, text
    return None, ""


def decode_text(data: bytes) -> str:
    """Bytes of a text file -> str: UTF-8 (with or without BOM), else a detected charset."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        return str(best) if best is not None else data.decode("utf-8", errors="replace")


def read_text_file(url: str, settings: SourceSettings, fetched_at: datetime) -> Iterator[Document | Failure]:
    try:
        with fsspec.open(url, "rb") as handle:
            data = handle.read(settings.max_record_bytes + 1)
    except OSError as err:
        yield _failure(url, "read", "unreadable", repr(err))
        return
    if len(data) > settings.max_record_bytes:
        yield _failure(url, "read", "too_large", f"more than {settings.max_record_bytes} bytes")
        return
    title, body = split_title(decode_text(data))
    yield Document(url=url, source_kind="text", fetched_at=fetched_at, text=body, title=title)


# --------------------------------------------------------------------------- JSON lines


def document_from_json(obj: object, fetched_at: datetime) -> Document:
    """One JSON object with ``url`` and ``html`` or ``text`` (optional ``title``,
    ``published``) -> Document. Raises ValueError naming what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    url = obj.get("url")
    if not isinstance(url, str) or not url:
        raise ValueError("missing 'url'")
    html, text = obj.get("html"), obj.get("text")
    if not isinstance(html, str) and not isinstance(text, str):
        raise ValueError("needs 'html' or 'text'")
    title = obj.get("title") if isinstance(obj.get("title"), str) else None
    if isinstance(text, str) and not isinstance(html, str) and title is None:
        title, text = split_title(text)
    categories = obj.get("categories") or ()
    return Document(
        url=url,
        source_kind="jsonl",
        fetched_at=parse_datetime(obj.get("fetched")) or fetched_at,
        html=html.encode("utf-8") if isinstance(html, str) else None,
        charset="utf-8" if isinstance(html, str) else None,
        text=text if not isinstance(html, str) else None,
        title=title,
        published_at=parse_datetime(obj.get("published")),
        language=obj.get("language") if isinstance(obj.get("language"), str) else None,
        author=obj.get("author") if isinstance(obj.get("author"), str) else None,
        categories=tuple(str(c) for c in categories) if isinstance(categories, list) else (),
    )


def read_jsonl_file(url: str, settings: SourceSettings, fetched_at: datetime) -> Iterator[Document | Failure]:
    try:
        with fsspec.open(url, "rb", compression="infer") as handle:
            for lineno, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                where = f"{url}#L{lineno}"
                if len(raw) > settings.max_record_bytes:
                    yield _failure(where, "read", "too_large", f"line of {len(raw)} bytes")
                    continue
                try:
                    yield document_from_json(json.loads(raw), fetched_at)
                except json.JSONDecodeError as err:
                    yield _failure(where, "read", "bad_json", str(err))
                except ValueError as err:
                    yield _failure(where, "read", "bad_record", str(err))
    except (OSError, EOFError) as err:
        yield _failure(url, "read", "unreadable", repr(err))


# --------------------------------------------------------------------------- WARC


def _record_date_ok(date: datetime | None, lo: datetime | None, hi: datetime | None) -> bool:
    if date is None:
        return lo is None and hi is None
    return (lo is None or date >= lo) and (hi is None or date < hi)


def _host_ok(host: str, allow: tuple[str, ...], deny: tuple[str, ...]) -> bool:
    def match(pattern: str) -> bool:
        return host == pattern or host.endswith("." + pattern)

    if any(match(d) for d in deny):
        return False
    return not allow or any(match(a) for a in allow)


@dataclass
class WarcCounts:
    """What a WARC scan saw besides documents (for metrics and summary.json)."""

    skipped: int = 0


def read_warc_file(
    url: str, settings: SourceSettings, counts: WarcCounts | None = None
) -> Iterator[Document | Failure]:
    """Every selected record of one WARC / WARC.gz file -> Document or Failure.

    Response records carry the HTTP status and content type: non-2xx -> Failure(read,
    http_<code>); non-HTML -> Failure(filter, not_html); a record cut short (truncated gzip
    member or file) -> Failure(read, truncated_record). A stream that cannot be parsed any further
    ends with one Failure(read, bad_warc) naming the offset."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    counts = counts if counts is not None else WarcCounts()
    wanted = [getattr(WarcRecordType, t) for t in settings.warc_record_types]  # enum is unhashable
    lo = parse_datetime(settings.date_from)
    hi = parse_datetime(settings.date_to)
    position = 0
    try:
        with fsspec.open(url, "rb") as handle:
            for record in ArchiveIterator(handle, record_types=WarcRecordType.any_type, parse_http=True):
                position = record.stream_pos
                target = record.headers.get("WARC-Target-URI") or f"{url}#{position}"
                date = record.record_date
                date = date.astimezone(UTC) if date is not None else None
                if not any(record.record_type == w for w in wanted) or not _record_date_ok(date, lo, hi):
                    counts.skipped += 1
                    continue
                if not _host_ok(source_host(target), settings.hosts_allow, settings.hosts_deny):
                    counts.skipped += 1
                    continue
                yield _document_from_record(record, target, date, settings)
    except (OSError, ValueError, EOFError) as err:
        yield _failure(f"{url}#{position}", "read", "bad_warc", repr(err))


def _document_from_record(record, target: str, date: datetime | None, settings: SourceSettings) -> Document | Failure:
    http = record.http_headers
    if http is not None and http.status_code and not 200 <= http.status_code < 300:
        return _failure(target, "read", f"http_{http.status_code}", "archived HTTP status")
    content_type = (record.http_content_type or "").lower() or None
    if http is not None and content_type and content_type not in HTML_TYPES:
        return _failure(target, FILTER_STAGE, "not_html", content_type)
    expected = record.content_length  # payload bytes the record declares
    if expected > settings.max_record_bytes:
        return _failure(target, "read", "too_large", f"record of {expected} bytes")
    body = record.reader.read()
    # A truncated gzip member or file yields a payload shorter than declared, silently.
    if len(body) < expected:
        return _failure(target, "read", "truncated_record", f"{len(body)} of {expected} payload bytes")
    return Document(
        url=target,
        source_kind="warc",
        fetched_at=date or utcnow(),
        html=body,
        content_type=content_type,
        charset=record.http_charset or None,
    )


def write_warc(path: str, pages: Iterable[tuple[str, bytes, datetime, str]], *, gzip: bool = True) -> None:
    """Write (url, body, date, content_type) pages as WARC response records (for samples,
    fixtures and benchmarks). Uses warcio's writer; reading goes through fastwarc."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    with fsspec.open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=gzip)
        for url, body, date, content_type in pages:
            http = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
            stamp = date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            record = writer.create_warc_record(
                url, "response", payload=io.BytesIO(body), http_headers=http, warc_headers_dict={"WARC-Date": stamp}
            )
            writer.write_record(record)


# --------------------------------------------------------------------------- transform


class _ReadFile(beam.DoFn):
    """file URL -> Document (main) | Failure (tagged ``failed``)."""

    def __init__(self, kind: str, settings: SourceSettings, fetched_at: datetime):
        self._kind = kind
        self._settings = settings
        self._fetched_at = fetched_at
        self._docs = Metrics.counter(METRICS_NAMESPACE, f"read_{kind}_documents")
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "read_skipped_records")
        self._files = Metrics.counter(METRICS_NAMESPACE, "read_files")

    def process(self, url: str):
        if self._kind == "warc":
            counts = WarcCounts()
            items: Iterable[Document | Failure] = read_warc_file(url, self._settings, counts)
        elif self._kind == "jsonl":
            counts, items = None, read_jsonl_file(url, self._settings, self._fetched_at)
        else:
            counts, items = None, read_text_file(url, self._settings, self._fetched_at)
        for item in items:
            if isinstance(item, Failure):
                Metrics.counter(METRICS_NAMESPACE, f"{item.stage}_{item.reason}").inc()
                yield beam.pvalue.TaggedOutput(FAILED, item)
            else:
                self._docs.inc()
                yield item
        if counts is not None and counts.skipped:
            self._skipped.inc(counts.skipped)
        self._files.inc()
        LOG.info("read %s", url)


class ReadDocuments(beam.PTransform):
    """PBegin -> ``.ok``: PCollection[Document], ``.failed``: PCollection[Failure].

    ``files`` are already-expanded file URLs (see ``expand_inputs``)."""

    def __init__(self, kind: str, files: list[str], settings: SourceSettings, fetched_at: datetime):
        super().__init__()
        if kind not in ("warc", "jsonl", "text"):
            raise ValueError(f"unknown file source {kind!r}")
        self._kind, self._files, self._settings, self._fetched_at = kind, files, settings, fetched_at

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._files)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFile"
            >> beam.ParDo(_ReadFile(self._kind, self._settings, self._fetched_at)).with_outputs(FAILED, main="ok")
        )


def default_fetched_at() -> datetime:
    """Run start, truncated to the second so that re-runs within a second window agree."""
    now = utcnow()
    return now - timedelta(microseconds=now.microsecond)
