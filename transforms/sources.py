"""Bounded sources: WARC archives, JSON lines and plain-text files, all read through fsspec.

``ReadDocuments`` turns a list of fsspec globs into ``Document`` values (and ``Failure`` values
for what cannot be read). Globs are expanded when the pipeline is built, so a missing input stops
the run before any work. Each matched file is a work unit, and a gzipped WARC larger than
``warc_range_mb`` is cut into byte ranges that are work units of their own (``warc_ranges``):
a few large archives then still spread evenly over many workers. Units are spread over the
workers by ``Reshuffle``. An input can also be a part of a file (``input_part``:
``<file>#bytes=<start>-<end>``), as size-limited batches (``run.batch_mb``) list them.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics
from fsspec.implementations.local import LocalFileSystem

from transforms.extract import source_host
from transforms.http import HTML_TYPES, TooLarge, codings, dechunk, decompress, detect_charset, parse_content_type
from transforms.records import FAILED, FILTER_STAGE, METRICS_NAMESPACE, UTC, Document, Failure, utcnow

LOG = logging.getLogger(__name__)

SOURCE_KINDS = ("feeds", "warc", "jsonl", "text")
#: Content types that say nothing about the payload: a response labelled so is taken as HTML
#: when the archive's own detection (``WARC-Identified-Payload-Type``, written by Common Crawl
#: and Heritrix-based crawlers) says it is
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream", "application/unknown", "unknown/unknown"})


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
    # A gzipped WARC larger than this many MB is read as equal byte ranges of at most this
    # size, each its own work unit (0 = whole files only). The local runner deals units out to
    # its workers by count before they start, so many equal units share the work evenly
    # (1,000 pages in 4 files on 2 workers: extraction children's CPU 14.8 s / 18.8 s with
    # whole files, 16.6 / 17.6 with 2 MB ranges). Each range costs one more open and seek, and
    # remote filesystems read whole blocks (gcsfs/s3fs: ~5 MB), so remote archives want larger
    # ranges (configs/backfill.yaml: 32).
    warc_range_mb: float = 2.0

    def __post_init__(self) -> None:
        if self.max_record_bytes <= 0:
            raise ValueError("max_record_bytes: must be positive")
        if not self.warc_range_mb >= 0:
            raise ValueError("warc_range_mb: must be 0 (whole files) or positive")
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


_GLOB = re.compile(r"[*?\[]")


def expand_inputs(patterns: Iterable[str]) -> list[str]:
    """fsspec globs -> sorted, de-duplicated list of file URLs. Raises InputError when a pattern
    matches nothing, so a typo stops the run with a clear message instead of an empty output."""
    urls: list[str] = []
    for pattern in patterns:
        try:
            fs, path = fsspec.core.url_to_fs(pattern)
            # a pattern with glob characters (* ? [) is expanded; a plain path must exist
            paths = fs.glob(path) if _GLOB.search(path) else [path] if fs.exists(path) else []
            files = [p for p in paths if not fs.isdir(p)]
        except Exception as err:  # bad protocol, missing credentials...
            raise InputError(f"cannot open input {pattern!r}: {err}") from err
        if not files:
            if _GLOB.search(path):
                raise InputError(f"input {pattern!r} matches no file")
            raise InputError(f"input {pattern!r}: no such file (a folder needs a pattern such as folder/*.warc.gz)")
        # local files by their paths, whether named as paths or file:// URLs: --resume matches
        # the manifest's inputs by name
        remote = "://" in pattern and not isinstance(fs, LocalFileSystem)
        urls.extend(fs.unstrip_protocol(p) if remote else p for p in files)
    return sorted(set(urls))


#: Epoch numbers from this on are milliseconds (JavaScript's Date.now()): as seconds they would
#: be after the year 5000
_EPOCH_MS_FROM = 100_000_000_000


def parse_datetime(value: object, *, strict: bool = False) -> datetime | None:
    """ISO 8601 string, RFC 2822 string or epoch seconds or milliseconds (a number or a
    string of digits) -> aware UTC datetime, else None."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) >= 9:
            value = int(value.strip())  # shorter digit strings are ISO basic dates (20260305)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value) / 1000 if abs(value) >= _EPOCH_MS_FROM else float(value)
            return datetime.fromtimestamp(seconds, UTC)
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


#: Years a record's own date (JSON lines ``published`` / ``fetched``, WARC-Date) may fall in, as
#: for page dates (``extract.parse_datetime``): outside, it is a typo or a sentinel (0001, 9999)
#: and counts as no date; such a year would put the article in an event-time window that cannot
#: be computed, and stop the run.
RECORD_YEARS = (1990, 2100)


def record_datetime(value: object) -> datetime | None:
    """``parse_datetime`` of a record's date, None when it is in no plausible year."""
    parsed = value if isinstance(value, datetime) else parse_datetime(value)
    if parsed is None or not RECORD_YEARS[0] <= parsed.year <= RECORD_YEARS[1]:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _failure(url: str, stage: str, reason: str, detail: str) -> Failure:
    return Failure(url=url, stage=stage, reason=reason, detail=detail[:500], at=utcnow())


# --------------------------------------------------------------------------- text files

#: A closing full stop (or ellipsis), perhaps inside a closing quote or bracket. Question and
#: exclamation marks end headlines as often as sentences ("Who pays for the bridge?"), so they
#: do not make a line a sentence (CONTRACT: a title is short, with no closing full stop).
_SENTENCE_END = re.compile(r"[.…]['\"”’“)]?$")


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


#: C0 control characters that text does not contain (tab, line feed, vertical tab, form feed and
#: carriage return aside); binary data decoded as some 8-bit charset is full of them
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
#: Byte order marks of the UTF-16/32 encodings, whose text has NUL bytes (UTF-32 first: its
#: little-endian mark begins with UTF-16's)
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(data: bytes) -> str | None:
    """Bytes of a text file -> str: UTF-8 (with or without BOM), UTF-16/32 with a BOM, else a
    detected charset. None when the bytes are not text: NUL bytes outside UTF-16/32 (images,
    archives, compressed data; a single-byte charset would still "decode" them), no charset
    that fits, or more than 1% control characters."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                return None
            break
    else:
        if b"\x00" in data:
            return None
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            encoding = detect_charset(data)
            if encoding is None:
                return None
            # detected on the first 200 kB: a stray byte after them is replaced, not fatal
            text = data.decode(encoding, errors="replace")
    if len(_CONTROL.findall(text)) * 100 > len(text):
        return None
    return text


def read_text_file(url: str, settings: SourceSettings, fetched_at: datetime) -> Iterator[Document | Failure]:
    """One plain-text file -> one Document (title from its first line, ``split_title``).

    A compressed file (``.gz``, ``.bz2``, ``.xz``... by its name) is read decompressed, capped at
    ``max_record_bytes`` after decompression. A file that is not text (``decode_text``) becomes
    Failure(filter, not_text) rather than an article of mojibake."""
    try:
        with fsspec.open(url, "rb", compression="infer") as handle:
            data = handle.read(settings.max_record_bytes + 1)
    except (OSError, EOFError, zlib.error) as err:  # also a .gz that is not gzip, or is cut short
        yield _failure(url, "read", "unreadable", repr(err))
        return
    if len(data) > settings.max_record_bytes:
        yield _failure(url, "read", "too_large", f"more than {settings.max_record_bytes} bytes")
        return
    text = decode_text(data)
    if text is None:
        yield _failure(
            url, FILTER_STAGE, "not_text", f"binary data, not text ({len(data)} bytes, starting {data[:8]!r})"
        )
        return
    title, body = split_title(text)
    yield Document(url=url, source_kind="text", fetched_at=fetched_at, text=body, title=title)


# --------------------------------------------------------------------------- JSON lines


def _field(obj: dict, key: str) -> str | None:
    """A string field of a JSON line, None when absent, not a string or blank: dumps write
    absent fields as "" as often as they leave them out."""
    value = obj.get(key)
    return value if isinstance(value, str) and value.strip() else None


def document_from_json(obj: object, fetched_at: datetime) -> Document:
    """One JSON object with ``url`` and ``html`` or ``text`` (optional ``title``,
    ``published``) -> Document. A record with both keeps both (extraction reads the html and
    falls back to the text); without a title, the text's first line is one when it reads like
    one (``split_title``). Raises ValueError naming what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("line is not a JSON object")
    url = _field(obj, "url")
    if url is None:
        raise ValueError("missing 'url'")
    html, text, title = _field(obj, "html"), _field(obj, "text"), _field(obj, "title")
    if html is None and text is None:
        raise ValueError("needs 'html' or 'text'")
    if text is not None and title is None:
        title, text = split_title(text)
    categories = obj.get("categories") or ()
    return Document(
        url=url.strip(),
        source_kind="jsonl",
        fetched_at=record_datetime(obj.get("fetched")) or fetched_at,
        html=html.encode("utf-8") if html is not None else None,
        charset="utf-8" if html is not None else None,
        text=text,
        title=title,
        published_at=record_datetime(obj.get("published")),
        language=_field(obj, "language"),
        author=_field(obj, "author"),
        categories=tuple(str(c) for c in categories) if isinstance(categories, list) else (),
    )


#: A file of one JSON value (an array of records, or one pretty-printed record) is read whole,
#: up to this many times ``max_record_bytes``; larger ones should be written as JSON lines
JSON_FILE_RECORDS = 20


def read_jsonl_file(url: str, settings: SourceSettings, fetched_at: datetime) -> Iterator[Document | Failure]:
    """One JSON lines file -> a Document or Failure per non-blank line (``<url>#L<line>``).

    A file whose first line opens a JSON array, or a pretty-printed object that the line alone
    does not close (what ``json.dump`` writes), is read as one JSON value instead
    (``_read_json_value``): its records are ``<url>#<n>`` (1-based), not one ``bad_json`` row
    per line of the layout. Records whose url names no host (``example.com/a``, an identifier)
    are read, with an empty ``source``, and the file logs one warning."""
    relative = 0
    example = ""
    for item in _read_jsonl(url, settings, fetched_at):
        if isinstance(item, Document) and not source_host(item.url):
            relative += 1
            example = example or item.url
        yield item
    if relative:
        LOG.warning(
            "%s: %d record(s) whose url names no host (e.g. %r; absolute URLs start with https://): read "
            "with an empty source (publisher host), so per-host cleaning does not apply to them",
            url,
            relative,
            example[:80],
        )


def _read_jsonl(url: str, settings: SourceSettings, fetched_at: datetime) -> Iterator[Document | Failure]:
    try:
        with fsspec.open(url, "rb", compression="infer") as handle:
            lines = enumerate(handle, start=1)
            opening = next(((n, raw) for n, raw in lines if raw.strip()), None)
            if opening is None:
                return
            first = opening[1]
            if _opens_json_value(first):
                cap = JSON_FILE_RECORDS * settings.max_record_bytes
                yield from _read_json_value(url, first + handle.read(cap + 1 - len(first)), cap, fetched_at)
                return
            for lineno, raw in chain([opening], lines):
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
    except (OSError, EOFError, zlib.error) as err:
        yield _failure(url, "read", "unreadable", repr(err))


def _opens_json_value(line: bytes) -> bool:
    """Whether the first line of a file starts a JSON value that spans lines: an array, or an
    object that is not complete on its own line."""
    head = line.lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return True
    if not head.startswith(b"{"):
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False


def _read_json_value(url: str, data: bytes, cap: int, fetched_at: datetime) -> Iterator[Document | Failure]:
    if len(data) > cap:
        yield _failure(url, "read", "too_large", f"a JSON file of more than {cap} bytes: write JSON lines instead")
        return
    try:
        value = json.loads(data)
    except ValueError as err:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        yield _failure(url, "read", "bad_json", str(err))
        return
    for n, record in enumerate(value if isinstance(value, list) else [value], start=1):
        try:
            yield document_from_json(record, fetched_at)
        except ValueError as err:
            yield _failure(f"{url}#{n}", "read", "bad_record", str(err))


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


#: Start of a gzip member: magic bytes and the deflate method
_GZIP_MEMBER = b"\x1f\x8b\x08"
_SCAN_BYTES = 1 << 18


def _may_cut(url: str, range_bytes: int) -> bool:
    """Whether ``warc_ranges`` may cut the file at all: ranges wanted, and gzip members to find."""
    return range_bytes > 0 and url.lower().endswith(".gz")


def warc_ranges(
    url: str, size: int, range_bytes: int, start: int = 0, end: int | None = None
) -> list[tuple[str, int, int | None]]:
    """Work units of one input file, or of its bytes [start, end): (url, start, end), end None
    for the file's end.

    Only a gzipped WARC (``.gz``) larger than ``range_bytes`` is cut, into equal ranges of at
    most ``range_bytes`` (the runner deals units out by count, so equal units share the work
    best). Its records are gzip members, and a record belongs to the range its member starts
    in (``read_warc_file``), so the ranges of a range hold the same records as it."""
    span = (size if end is None else end) - start
    if not _may_cut(url, range_bytes) or span <= range_bytes:
        return [(url, start, end)]
    count = -(-span // range_bytes)
    starts = [start + span * i // count for i in range(count)]
    return [(url, at, nxt) for at, nxt in zip(starts, [*starts[1:], end], strict=True)]


#: An input part: bytes [start, end) of one file, as a batch lists it and the manifest records it
_PART = re.compile(r"^(?P<url>.+)#bytes=(?P<start>\d+)-(?P<end>\d+)$")


def input_part(url: str, start: int, end: int) -> str:
    """The name of bytes [start, end) of ``url`` as an input (``parse_input`` reads it back)."""
    return f"{url}#bytes={start}-{end}"


def parse_input(item: str) -> tuple[str, int, int | None]:
    """An input (a file URL or an ``input_part``) -> (url, start, end); end None: the file's end."""
    found = _PART.match(item)
    if found is None:
        return item, 0, None
    return found["url"], int(found["start"]), int(found["end"])


def input_parts(item: str, kind: str, size: int, part_bytes: int) -> list[str]:
    """An input (a file of ``size`` bytes, or an ``input_part``) as inputs of at most
    ``part_bytes``: a gzipped WARC is cut like ``warc_ranges``, other inputs stay whole."""
    url, start, end = parse_input(item)
    stop = size if end is None else end
    ranges = warc_ranges(url, stop, part_bytes, start, stop) if kind == "warc" else []
    if len(ranges) <= 1:
        return [item]
    return [input_part(url, at, nxt) for _, at, nxt in ranges]


def _member_at(handle, offset: int) -> bool:
    """True when a gzip member that inflates to a WARC record (``WARC/``) starts at ``offset``."""
    handle.seek(offset)
    head = handle.read(4096)
    if not head.startswith(_GZIP_MEMBER):
        return False
    try:
        return zlib.decompressobj(wbits=31).decompress(head, 8).startswith(b"WARC/")
    except zlib.error:
        return False


def _first_member(handle, start: int, end: int | None) -> int | None:
    """Offset of the first WARC record member starting in [start, end), or None."""
    at = start
    while end is None or at < end:
        handle.seek(at)
        block = handle.read(_SCAN_BYTES)
        if not block:
            return None
        found = block.find(_GZIP_MEMBER)
        while found != -1:
            if end is not None and at + found >= end:
                return None
            if _member_at(handle, at + found):
                return at + found
            found = block.find(_GZIP_MEMBER, found + 1)
        if len(block) < _SCAN_BYTES:
            return None
        at += len(block) - len(_GZIP_MEMBER) + 1  # a header cut by the block's end is seen next
    return None


# --------------------------------------------------------------------------- WARC framing
#
# fastwarc reads a record's block by its declared Content-Length and then looks for the next
# line that starts with "WARC/", skipping whatever comes before it without a word. So a wrong
# length loses records silently (too long: the next record's header is read as this record's
# payload, and that record is skipped; too short: the rest of the block is skipped), and so do
# bytes that are not WARC at all (a gzipped HTML page named .warc.gz gives no record and no
# error) and a file cut inside a record that is not read (a request or metadata record). The
# reader therefore keeps the raw bytes of each record as fastwarc reads them (``_Tap``), and
# once the next record's start is known checks them against the declared length
# (``frame_warc_bytes``): what does not fit becomes a failure, and records found in bytes that
# fastwarc skipped are read after all (``_WarcCheck``).

#: The first line of a record
_RECORD_START = re.compile(rb"WARC/\d+\.\d+\r?\n")
#: The blank line that ends a record's header (CRLF CRLF; bare line feeds from lax writers)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
#: The end of a record's block where another record starts: a blank line, then a WARC/ line
_NEXT_RECORD = re.compile(rb"\r?\n\r?\n(?=WARC/\d+\.\d+\r?\n)")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length[ \t]*:[ \t]*([^\r\n]*)")
_SPACE = b" \t\r\n"
#: What the tap keeps of a stretch longer than its cap (a record too large to read, which is
#: not checked): its last bytes, since fastwarc reads 64 KiB blocks and the next record's start
#: is among the last of them.
_TAP_KEEP = 1 << 18


@dataclass(frozen=True)
class WarcSpan:
    """One record, or stretch of bytes, of a WARC as its bytes frame it (``frame_warc_bytes``).

    ``state``: ``ok`` (the block has the declared length and the next record, or the end,
    follows it), ``bad_length`` (Content-Length missing, not a number, or not where the record
    ends: the record runs to the next record's start instead), ``truncated`` (the file ends
    before the record does) or ``junk`` (bytes that are not a WARC record). ``offset``: where it
    starts in the file (in a gzipped WARC, where its gzip member starts); ``data``: its bytes,
    uncompressed."""

    offset: int
    state: str
    data: bytes
    detail: str = ""


def _skip_space(data: bytes, at: int) -> int:
    while at < len(data) and data[at] in _SPACE:
        at += 1
    return at


def _declared_length(data: bytes, start: int, stop: int) -> tuple[int | None, str]:
    """The Content-Length of the header in data[start:stop] -> (length or None, as written)."""
    found = _CONTENT_LENGTH.search(data, start, stop)
    if found is None:
        return None, ""
    text = found.group(1).strip().decode("latin-1")
    return (int(text) if text.isascii() and text.isdigit() else None), text


def frame_records(data: bytes, offset: int, *, complete: bool, member: bool = False) -> list[WarcSpan]:
    """Uncompressed WARC bytes -> the records (and junk) they hold, each checked against its
    declared length. ``offset``: where ``data`` starts in the file; with ``member`` it is one
    gzip member, and every span gets the member's offset. ``complete``: the bytes end where the
    next record starts (a record declaring more than is there has a bad length), not where the
    file was cut (it is truncated)."""
    spans: list[WarcSpan] = []
    size = len(data)
    at = _skip_space(data, 0)
    while at < size:
        where = offset if member else offset + at
        if not _RECORD_START.match(data, at):
            found = _NEXT_RECORD.search(data, at)
            stop = found.end() if found else size
            spans.append(WarcSpan(where, "junk", data[at:stop], f"{stop - at} bytes that are not a WARC record"))
            at = stop
            continue
        head = _HEADER_END.search(data, at)
        if head is None:
            state = "junk" if complete else "truncated"
            spans.append(WarcSpan(where, state, data[at:], "the data ends inside a record's header"))
            break
        body = head.end()
        declared, written = _declared_length(data, at, head.start())
        end = body + declared if declared is not None else size + 1
        if end <= size:
            after = _skip_space(data, end)
            if after >= size or _RECORD_START.match(data, after) or _HEADER_END.match(data, end):
                spans.append(WarcSpan(where, "ok", data[at:end]))
                at = after
                continue
        if declared is not None and end > size and not complete:
            detail = f"the file ends {size - body} bytes into a block of {declared}"
            spans.append(WarcSpan(where, "truncated", data[at:], detail))
            break
        found = _NEXT_RECORD.search(data, body)
        stop, after = (found.start(), found.end()) if found else (len(data.rstrip(_SPACE)), size)
        stop = max(stop, body)
        if declared is None:
            detail = f"Content-Length {written!r} is not a number" if written else "no Content-Length"
        else:
            detail = f"Content-Length {declared}, but the record's block has {stop - body} bytes"
        spans.append(WarcSpan(where, "bad_length", data[at:stop], detail))
        at = after
    return spans


def _next_member_in(raw: bytes, at: int) -> int:
    """Offset of the next gzip member in ``raw`` from ``at`` on that inflates to a record."""
    found = raw.find(_GZIP_MEMBER, at)
    while found != -1:
        try:
            if zlib.decompressobj(wbits=31).decompress(raw[found : found + 4096], 8).startswith(b"WARC/"):
                return found
        except zlib.error:
            pass
        found = raw.find(_GZIP_MEMBER, found + 1)
    return len(raw)


def frame_warc_bytes(raw: bytes, offset: int, *, at_eof: bool, limit: int) -> list[WarcSpan] | None:
    """The raw bytes of a WARC from one record's start to the next's (``at_eof``: to the end
    of the file) -> what they hold (``frame_records``); a gzipped WARC is inflated member by
    member. [] when a member inflates to more than ``limit`` bytes (not checked). None when the
    gzip members do not each hold one record (one stream for the whole file, or members of
    many records): fastwarc's record offsets then say nothing about where records are."""
    if not raw.startswith(_GZIP_MEMBER[:2]):
        return frame_records(raw, offset, complete=not at_eof)
    spans: list[WarcSpan] = []
    at = 0
    while at < len(raw):
        inflater = zlib.decompressobj(wbits=31)
        try:
            data = inflater.decompress(raw[at:], limit)
        except zlib.error as err:
            stop = _next_member_in(raw, at + 1)
            spans.append(WarcSpan(offset + at, "junk", b"", f"{stop - at} bytes that do not inflate: {err}"))
            at = stop
            continue
        if inflater.unconsumed_tail:
            return []
        if not inflater.eof:
            if not at_eof:
                return None  # the member goes on past the next record's start
            found = frame_records(data, offset + at, complete=False, member=True)
            if not found or found[-1].state != "truncated":
                found.append(WarcSpan(offset + at, "truncated", b"", "the file ends inside a gzip member"))
            return spans + found
        found = frame_records(data, offset + at, complete=True, member=True)
        if sum(span.state != "junk" for span in found) > 1:
            return None
        spans.extend(found)
        at = len(raw) - len(inflater.unused_data)
    return spans


def _member_fits(raw: bytes) -> bool:
    """The check's fast path for a gzipped WARC (nearly every record): ``raw`` starts a gzip
    member whose trailer (ISIZE: the inflated size mod 2**32) is the size its record declares
    (header, block of Content-Length bytes, CRLF CRLF), so ``raw`` is that member and nothing
    else. Inflates the header only: inflating every record a second time cost 0.11 ms per
    record of 46 KB (fastwarc's own read: 0.15 ms); this costs ~0.01 ms."""
    if len(raw) < 18 or not raw.startswith(_GZIP_MEMBER):
        return False
    for size in (1 << 10, 1 << 14):  # a WARC header is ~0.4-1 KB, ~0.3-0.6 KB compressed
        try:
            head = zlib.decompressobj(wbits=31).decompress(raw[:size], 4 * size)
        except zlib.error:
            return False
        found = _HEADER_END.search(head)
        if found is not None:
            break
    if found is None or not _RECORD_START.match(head):
        return False
    declared, _ = _declared_length(head, 0, found.start())
    if declared is None:
        return False
    return int.from_bytes(raw[-4:], "little") == (found.end() + declared + 4) % (1 << 32)


class _Tap:
    """The file handle fastwarc reads (through ``read``, in blocks of 64 KiB), keeping what it
    read from a mark on: ``take(upto)`` returns (offset, bytes [mark, upto)) and moves the mark
    there. Keeps at most ``cap`` bytes: for a longer stretch (a record too large to read, a
    large file that is no WARC) ``take`` returns None for the bytes."""

    def __init__(self, handle, offset: int, cap: int) -> None:
        self._handle = handle
        self._mark = offset
        self._buffer = bytearray()
        self._cap = cap
        self._dropped = False
        self.at_eof = False
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        if not data and size:
            self.at_eof = True
        self.total += len(data)
        self._buffer += data
        if len(self._buffer) > self._cap:
            cut = len(self._buffer) - _TAP_KEEP
            del self._buffer[:cut]
            self._mark += cut
            self._dropped = True
        return data

    def tell(self) -> int:
        return self._handle.tell()

    @property
    def offset(self) -> int:
        """File offset of the end of what was read."""
        return self._mark + len(self._buffer)

    def take(self, upto: int | None = None) -> tuple[int, bytes | None]:
        stop = len(self._buffer) if upto is None else min(max(upto - self._mark, 0), len(self._buffer))
        at = self._mark
        data = None if self._dropped else bytes(self._buffer[:stop])
        del self._buffer[:stop]
        self._mark += stop
        self._dropped = False
        return at, data


class _GzipStreamCheck:
    """For a gzipped WARC whose members are not one record each (``frame_warc_bytes`` None):
    its bytes are inflated once more only to tell, at the end, whether the last member is
    complete (a file cut inside a record that is not read would otherwise leave no trace)."""

    def __init__(self) -> None:
        self._inflater = None
        self.error = ""
        self.unchecked = False

    def feed(self, data: bytes | None) -> None:
        if data is None:
            self.unchecked = True
        while data and not self.error and not self.unchecked:
            if self._inflater is None:
                self._inflater = zlib.decompressobj(wbits=31)
            try:
                self._inflater.decompress(data, 1 << 20)
                while self._inflater.unconsumed_tail:
                    self._inflater.decompress(self._inflater.unconsumed_tail, 1 << 20)
            except zlib.error as err:
                self.error = str(err)
                return
            if not self._inflater.eof:
                return
            data, self._inflater = self._inflater.unused_data, None

    @property
    def complete(self) -> bool:
        return self._inflater is None


@dataclass
class _Held:
    """A record fastwarc read, its outputs waiting for its bytes to be checked."""

    offset: int
    target: str
    outputs: list[Document | Failure]
    selected: bool  # read as a document (else skipped: counted, no output)


class _WarcCheck:
    """Holds each record's outputs until the next record's start is known, checks the record's
    bytes (``frame_warc_bytes``), and yields its outputs or, when they do not frame, one
    Failure(read, bad_length | truncated_record), then what fastwarc skipped: records (read
    as any record is, by ``judge``) and bytes that are no record (Failure(read, bad_warc))."""

    def __init__(self, url: str, tap: _Tap, end: int | None, judge: Callable, limit: int) -> None:
        self._url, self._tap, self._end, self._judge, self._limit = url, tap, end, judge, limit
        self._held: _Held | None = None
        self._stream: _GzipStreamCheck | None = None
        self._records = 0
        self._failed = False  # any failure yielded
        self._last: Document | Failure | None = None

    def hold(self, held: _Held) -> None:
        self._held, self._records = held, self._records + 1

    def flush(self) -> Iterator[Document | Failure]:
        """The held record's outputs, unchecked (the file cannot be read any further)."""
        held, self._held = self._held, None
        if held is not None:
            yield from held.outputs

    def release(self, upto: int | None) -> Iterator[Document | Failure]:
        """Check the bytes up to ``upto`` (the next record's start, or the first of the next
        range; None: all that fastwarc read, to the end of the file) and yield what they hold:
        the held record's outputs, or the failure that replaces them, then what was skipped."""
        at_eof = upto is None and self._tap.at_eof
        held, self._held = self._held, None
        spans: list[WarcSpan] | None = []
        if self._stream is None:
            at, raw = self._tap.take(upto)
            if raw is not None and held is not None and _member_fits(raw):
                spans = [WarcSpan(at, "ok", b"")]
            elif raw is not None:
                spans = frame_warc_bytes(raw, at, at_eof=at_eof, limit=self._limit)
                if spans is None:
                    self._stream = _GzipStreamCheck()
                    self._stream.feed(raw)
                    spans = []
        else:
            self._stream.feed(self._tap.take()[1])
        for item in self._outputs(held, spans):
            self._failed = self._failed or isinstance(item, Failure)
            self._last = item
            yield item
        if at_eof:
            yield from self._at_eof()

    def _outputs(self, held: _Held | None, spans: list[WarcSpan]) -> Iterator[Document | Failure]:
        first = spans[0] if spans and held is not None and spans[0].offset == held.offset else None
        if first is not None and first.state == "junk":
            first = None
        if held is not None:
            yield from self._verdict(held, first)
        for span in spans[1:] if first is not None else spans:
            if self._end is not None and span.offset >= self._end:
                continue  # in the next range, which reads it
            yield from self._recover(span)

    def _verdict(self, held: _Held, span: WarcSpan | None) -> Iterator[Document | Failure]:
        if span is None or span.state == "ok":
            yield from held.outputs
        elif span.state == "bad_length":
            if held.selected:
                yield _failure(held.target, "read", "bad_length", span.detail)
        elif held.selected and [getattr(o, "reason", None) for o in held.outputs] == ["truncated_record"]:
            yield from held.outputs  # its own detail counts the payload bytes
        else:
            where = held.target if held.selected else f"{self._url}#{span.offset}"
            yield _failure(where, "read", "truncated_record", span.detail)

    def _recover(self, span: WarcSpan) -> Iterator[Document | Failure]:
        """A span fastwarc skipped: a record read after all, or a failure saying what was lost."""
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        where = f"{self._url}#{span.offset}"
        if span.state == "junk":
            yield _failure(where, "read", "bad_warc", span.detail)
            return
        records = ArchiveIterator(
            io.BytesIO(span.data), record_types=WarcRecordType.any_type, parse_http=True, quirks_mode=True
        )
        record = next(iter(records), None)
        if record is None:  # nothing of its header left (a file cut at a member's start)
            reason = "truncated_record" if span.state == "truncated" else "bad_warc"
            yield _failure(where, "read", reason, span.detail)
            return
        held = self._judge(record, span.offset, read=span.state == "ok")
        if span.state == "ok":
            yield from held.outputs
        elif span.state == "truncated" or held.selected:
            reason = "bad_length" if span.state == "bad_length" else "truncated_record"
            yield _failure(held.target if held.selected else where, "read", reason, span.detail)

    def _at_eof(self) -> Iterator[Document | Failure]:
        where = f"{self._url}#{self._tap.offset}"
        said = isinstance(self._last, Failure) and self._last.reason == "truncated_record"
        if self._stream is not None and not self._stream.unchecked:
            if self._stream.error:
                yield _failure(where, "read", "bad_warc", f"the gzip stream does not inflate: {self._stream.error}")
            elif not self._stream.complete and not said:
                yield _failure(where, "read", "truncated_record", "the file ends inside a gzip member")
        elif self._records == 0 and not self._failed and self._tap.total:
            yield _failure(f"{self._url}#0", "read", "bad_warc", f"no WARC record in {self._tap.total} bytes")


def read_warc_file(
    url: str, settings: SourceSettings, counts: WarcCounts | None = None, start: int = 0, end: int | None = None
) -> Iterator[Document | Failure]:
    """Every selected record of one WARC / WARC.gz file -> Document or Failure.

    Response records carry the HTTP status and content type: an archived redirect (3xx) ->
    Failure(filter, http_<code>) (a pointer to a page, which the crawl archives on its own),
    other non-2xx -> Failure(read, http_<code>); non-HTML -> Failure(filter, not_html); a
    payload that does not decode -> Failure(read, bad_encoding); a record cut short (truncated gzip
    member or file) -> Failure(read, truncated_record). A stream that cannot be parsed any further
    ends with one Failure(read, bad_warc) naming the offset.

    Each record's bytes are checked against its declared length (``_WarcCheck``): a record
    whose Content-Length is wrong -> Failure(read, bad_length), and the records fastwarc
    skipped after it are read after all; bytes that are not WARC records (a file that is no
    WARC at all) -> Failure(read, bad_warc) at their offset (``<url>#<offset>``); a file cut
    inside a record that is not read -> Failure(read, truncated_record) at its offset.

    ``start``/``end``: a byte range of a gzipped WARC (``warc_ranges``). Its records are those
    whose gzip member starts in [start, end): the reader starts at the first member at or after
    ``start`` and stops at the first record that starts a member at or after ``end``. Both
    ends use one test (``_member_at``: a gzip header that inflates to ``WARC/``), so adjacent
    ranges meet exactly. A file compressed as one stream has no member after its first: the
    range holding offset 0 reads it whole, the others read nothing."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    counts = counts if counts is not None else WarcCounts()
    wanted = [getattr(WarcRecordType, t) for t in settings.warc_record_types]  # enum is unhashable
    lo = parse_datetime(settings.date_from)
    hi = parse_datetime(settings.date_to)

    def judge(record, offset: int, read: bool = True) -> _Held:
        """A record -> its outputs (none when it is skipped); ``read`` False: only whether
        it is selected."""
        target = _target_uri(record.headers.get("WARC-Target-URI")) or f"{url}#{offset}"
        date = record.record_date
        date = date.astimezone(UTC) if date is not None else None
        selected = (
            any(record.record_type == w for w in wanted)
            and _record_date_ok(date, lo, hi)
            and _host_ok(source_host(target), settings.hosts_allow, settings.hosts_deny)
        )
        if not selected:
            counts.skipped += 1
            return _Held(offset, target, [], False)
        # a date in no plausible year selects as it reads, and the record is read as undated
        read_as = [_document_from_record(record, target, record_datetime(date), settings)] if read else []
        return _Held(offset, target, read_as, True)

    position = start
    check = None
    try:
        with fsspec.open(url, "rb") as handle, _LazyHandle(url) as probe:
            if start:
                first = _first_member(handle, start, end)
                if first is None:
                    return
                handle.seek(first)
                position = first
            limit = settings.max_record_bytes + (1 << 20)
            tap = _Tap(handle, position, limit)
            check = _WarcCheck(url, tap, end, judge, limit)
            for record in ArchiveIterator(tap, record_types=WarcRecordType.any_type, parse_http=True, quirks_mode=True):
                position = record.stream_pos
                if end is not None and position >= end and _member_at(probe.handle, position):
                    yield from check.release(position)
                    return  # the next range's first record
                yield from check.release(position)
                check.hold(judge(record, position))
            yield from check.release(None)
    except (OSError, ValueError, EOFError, zlib.error) as err:
        if check is not None:
            yield from check.flush()
        yield _failure(f"{url}#{position}", "read", "bad_warc", repr(err))


def _target_uri(value: str | None) -> str:
    """WARC-Target-URI without the angle brackets of the WARC 1.0 grammar (``<uri>``), which
    some writers keep."""
    value = (value or "").strip()
    return value[1:-1].strip() if value.startswith("<") and value.endswith(">") else value


class _LazyHandle:
    """A second handle on a file, opened on first use (the range end check reads elsewhere in
    the file while the iterator keeps its own position)."""

    def __init__(self, url: str) -> None:
        self._url, self._handle = url, None

    @property
    def handle(self):
        if self._handle is None:
            self._handle = fsspec.open(self._url, "rb").open()
        return self._handle

    def __enter__(self) -> _LazyHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()


def _document_from_record(record, target: str, date: datetime | None, settings: SourceSettings) -> Document | Failure:
    http = record.http_headers
    status = http.status_code if http is not None else 0
    if status and not 200 <= status < 300:
        stage = FILTER_STAGE if 300 <= status < 400 else "read"
        return _failure(target, stage, f"http_{status}", "archived HTTP status")
    if http is not None:  # an HTTP response without a Content-Type is given to extraction to judge
        content_type = (record.http_content_type or "").lower() or None
        if content_type in GENERIC_TYPES:  # the server did not say: what the archiver found in it
            identified = parse_content_type(record.headers.get("WARC-Identified-Payload-Type"))[0]
            content_type = identified if identified in HTML_TYPES else content_type
        if content_type and content_type not in HTML_TYPES:
            return _failure(target, FILTER_STAGE, "not_html", content_type)
    else:  # no HTTP message (a crawler's dns: record, a resource): the record's own type decides
        content_type = parse_content_type(record.headers.get("Content-Type"))[0] or None
        if content_type not in HTML_TYPES:
            return _failure(target, FILTER_STAGE, "not_html", content_type or "record without HTTP or content type")
    expected = record.content_length  # payload bytes the record declares
    if expected > settings.max_record_bytes:
        return _failure(target, "read", "too_large", f"record of {expected} bytes")
    body = record.reader.read()
    # A truncated gzip member or file yields a payload shorter than declared, silently.
    if len(body) < expected:
        return _failure(target, "read", "truncated_record", f"{len(body)} of {expected} payload bytes")
    if http is not None:
        body = _decoded_payload(body, http, settings.max_record_bytes)
        if isinstance(body, tuple):
            return _failure(target, "read", *body)
    return Document(
        url=target,
        source_kind="warc",
        fetched_at=date or utcnow(),
        html=body,
        content_type=content_type,
        charset=record.http_charset or None,
    )


def _decoded_payload(body: bytes, http, cap: int) -> bytes | tuple[str, str]:
    """The page as the server meant it, or (reason, detail). Archives written by crawlers such
    as wget, Heritrix or Browsertrix keep the HTTP body as it was sent (chunked, compressed);
    Common Crawl stores it decoded and renames the two headers (``X-Crawler-...``). A step
    that fails on a body that already reads as markup is taken as done by the archiver (some
    decode but keep the header); otherwise the record is a ``bad_encoding`` failure."""
    transfer = codings(http.get("Transfer-Encoding"))
    steps: list[tuple[str, Callable[[bytes], bytes]]] = []
    if transfer and transfer[-1] == "chunked":
        steps.append(("chunked", dechunk))
        transfer = transfer[:-1]
    content = codings(http.get("Content-Encoding")) + transfer  # content codings were applied first
    if content:
        steps.append((", ".join(content), lambda data: decompress(data, content, cap)))
    for name, undo in steps:
        try:
            decoded = undo(body)
            if body and not decoded:
                raise ValueError("nothing decoded")
            body = decoded
        except TooLarge as err:
            return "too_large", str(err)
        except ValueError as err:
            if body.lstrip().removeprefix(b"\xef\xbb\xbf")[:1] != b"<":
                return "bad_encoding", f"{name}: {err}"
    return body


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


def file_size(url: str) -> int | None:
    """Size in bytes of a file, None when it cannot be read now (its reader reports why)."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        return int(fs.size(path) or 0)
    except (OSError, ValueError, TypeError):
        return None


def _split_file(item: str, kind: str, range_bytes: int) -> list[tuple[str, int, int | None]]:
    """One input (a file or an ``input_part``) -> its work units (``warc_ranges``; other
    kinds: the whole file)."""
    url, start, end = parse_input(item)
    if kind != "warc" or not _may_cut(url, range_bytes):  # no size lookup for these
        return [(url, start, end)]
    if end is not None:
        return warc_ranges(url, end, range_bytes, start, end)
    size = file_size(url)
    if size is None:  # unreadable now: the whole-file reader reports it
        return [(url, start, end)]
    return warc_ranges(url, size, range_bytes, start)


class _ReadFile(beam.DoFn):
    """(file URL, start, end) -> Document (main) | Failure (tagged ``failed``)."""

    def __init__(self, kind: str, settings: SourceSettings, fetched_at: datetime):
        self._kind = kind
        self._settings = settings
        self._fetched_at = fetched_at
        self._docs = Metrics.counter(METRICS_NAMESPACE, f"read_{kind}_documents")
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "read_skipped_records")
        self._files = Metrics.counter(METRICS_NAMESPACE, "read_files")
        self._ranges = Metrics.counter(METRICS_NAMESPACE, "read_ranges")

    def process(self, unit: tuple[str, int, int | None]):
        url, start, end = unit
        if self._kind == "warc":
            counts = WarcCounts()
            items: Iterable[Document | Failure] = read_warc_file(url, self._settings, counts, start, end)
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
        self._ranges.inc()
        if start == 0:
            self._files.inc()
        if start == 0 and end is None:
            LOG.info("read %s", url)
        else:  # a 1 GB archive in 2 MB ranges would log 500 lines; progress lines count them
            LOG.debug("read %s bytes %d-%s", url, start, "" if end is None else end)


class ReadDocuments(beam.PTransform):
    """PBegin -> ``.ok``: PCollection[Document], ``.failed``: PCollection[Failure].

    ``files`` are already-expanded file URLs (see ``expand_inputs``) or parts of them
    (``input_part``, as size-limited batches list them). Files are spread over the
    workers, which look up their sizes and cut large gzipped WARCs into byte ranges; the ranges
    are spread again."""

    def __init__(self, kind: str, files: list[str], settings: SourceSettings, fetched_at: datetime):
        super().__init__()
        if kind not in ("warc", "jsonl", "text"):
            raise ValueError(f"unknown file source {kind!r}")
        self._kind, self._files, self._settings, self._fetched_at = kind, files, settings, fetched_at

    def expand(self, pbegin):
        range_bytes = int(self._settings.warc_range_mb * (1 << 20)) if self._kind == "warc" else 0
        # (reshuffle=False: SpreadFiles spreads them; Create's own would be one more step)
        units = pbegin | "ListFiles" >> beam.Create(self._files, reshuffle=False) | "SpreadFiles" >> beam.Reshuffle()
        if range_bytes > 0:
            units = (
                units
                | "SplitFiles" >> beam.FlatMap(_split_file, self._kind, range_bytes)
                | "SpreadRanges" >> beam.Reshuffle()
            )
        else:
            units = units | "WholeFiles" >> beam.Map(parse_input)
        return units | "ReadFile" >> beam.ParDo(_ReadFile(self._kind, self._settings, self._fetched_at)).with_outputs(
            FAILED, main="ok"
        )


def default_fetched_at() -> datetime:
    """Run start, truncated to the second so that re-runs within a second window agree."""
    now = utcnow()
    return now - timedelta(microseconds=now.microsecond)
