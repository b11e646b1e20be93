"""Feeds source: feed lists -> polled feeds -> new entries -> fetched article pages.

    inputs (feed URLs, YAML / OPML / text lists)
      -> PollFeeds      one element per run: polls every feed ``stop_after`` times, each poll
                        a call of the pure ``poll_feeds``; yields FeedItem for entries not
                        seen before (canonical URL or entry id, this run or saved state)
      -> GroupByHost    page fetches keyed by publisher host: one worker serves a host at a
                        time, so per-host politeness holds across Beam workers
      -> FetchPages     FeedItem -> Document (html bytes of the page) | Failure
      -> SaveFeedState  seen keys + feed validators (ETag, Last-Modified, body hash) -> state

``parse_feed`` reads RSS 0.9x/1.0/2.0, Atom, CDF (via feedparser, always fed bytes from a
stream so it never does its own I/O), JSON Feed 1.x, news sitemaps and sitemap indexes
(parsed here with an XML parser that neither expands entities nor touches the network).

Conservation: every entry that a poll reads and has not seen before leaves as exactly one
``Document`` or one ``Failure``; entries already seen are counted in ``feeds_entries_seen``
and are not inputs. A feed that cannot be fetched or parsed is one row per run: a ``Failure``
(its own stage and reason) in the run where it starts failing, and while it keeps failing the
same way a filter row ``feed_still_failing`` that names the first failure and since when (the
streak lives in the feed state), so that a broken feed is reported in every run but counts
against ``run.max_failure_ratio`` once, not in every later run that has nothing new.
"""

from __future__ import annotations

import calendar
import concurrent.futures
import dataclasses
import hashlib
import html
import io
import json
import logging
import posixpath
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms import records
from transforms.fsutil import stage_file, write_atomic
from transforms.http import (
    FEED_TYPES,
    ROBOTS_UNAVAILABLE,
    FetchSettings,
    Response,
    SafeFetcher,
)
from transforms.records import FILTER_STAGE, UTC, Document, Failure, utcnow

LOG = logging.getLogger(__name__)
READ_STAGE = "read"
PARSE_STAGE = "parse"
FETCH_STAGE = "fetch"
#: Reasons after which a later run should try the entry again (not saved as seen).
TRANSIENT_REASONS = frozenset({"timeout", "connection_error", "dns_error", "http_429"})
#: Filter reason of a feed that fails as it did in the previous run (reported, not counted).
STILL_FAILING = "feed_still_failing"
STATE_FILE = "_state/feeds.json"


def is_transient(failure: Failure) -> bool:
    """Worth trying again in a later run: not saved as seen. robots.txt that answered 5xx
    disallows "for now" (RFC 9309, ``robots_unavailable``), so that counts too."""
    reason = failure.reason
    return reason in TRANSIENT_REASONS or reason.startswith("http_5") or reason == ROBOTS_UNAVAILABLE


@dataclass(frozen=True)
class FeedSettings:
    """How feeds are read and remembered."""

    # New entries taken from one feed per poll (newest first when dates are known); the rest
    # are taken by the next polls or runs (the feed is read again until none are left).
    max_entries_per_feed: int = 200
    # fsspec URL of the seen-entry state kept across runs; None = <output>/_state/feeds.json
    # (no state at all when there is no output root either).
    state_path: str | None = None
    # Fetch each entry's article page; False passes the feed summary on as the page.
    fetch_articles: bool = True
    # Seen entries older than this are forgotten, so the state file stays small.
    state_max_age_days: float = 30.0
    # Entry dates later than now + this are treated as wrong and dropped (seconds).
    max_future_s: float = 86_400.0
    # Entry dates before this year are treated as wrong and dropped.
    min_year: int = 1990
    # Feeds fetched in parallel within one poll (per-host limits of `fetch` still apply).
    feed_threads: int = 8
    # Child sitemaps read from one sitemap index per poll.
    max_child_sitemaps: int = 20

    def __post_init__(self) -> None:
        for name in ("max_entries_per_feed", "feed_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        for name in ("state_max_age_days", "max_future_s", "max_child_sitemaps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if not 1900 <= self.min_year <= 2100:
            raise ValueError("min_year: must be a year between 1900 and 2100")
        if self.state_path is not None and not str(self.state_path).strip():
            raise ValueError("state_path: must be a path/URL or null")


@dataclass(frozen=True)
class FeedSpec:
    """One feed to poll."""

    url: str
    name: str | None = None
    topic: str | None = None  # topic hint passed on to every entry's Document
    poll_interval_s: float | None = None  # poll this feed at most this often


@dataclass(frozen=True)
class FeedEntry:
    """One entry as read from a feed; every string is ``str``; dates are UTC."""

    link: str | None
    id: str | None = None
    title: str | None = None
    published: datetime | None = None
    categories: tuple[str, ...] = ()
    author: str | None = None
    summary: str | None = None
    # the entry's full content as HTML (RSS content:encoded, Atom content, JSON Feed
    # content_html/content_text), when the feed carries more than its summary
    content: str | None = None
    # the language the feed states for the entry (xml:lang, the feed's <language>, JSON Feed
    # language, news:language); the page's own statement wins over it
    language: str | None = None


@dataclass(frozen=True)
class ParsedFeed:
    """``kind``: rss, rdf, atom, cdf, jsonfeed, sitemap, sitemap_index or unknown."""

    url: str
    kind: str
    title: str | None = None
    entries: tuple[FeedEntry, ...] = ()
    bozo: bool = False
    bozo_reason: str | None = None
    # entry dates dropped as impossible (far future, before min_year)
    bad_dates: int = 0
    # the bozo flag only says the HTTP labels were off (content type, declared encoding)
    bozo_recoverable: bool = False

    @property
    def usable(self) -> bool:
        """A feed we understood: entries, or a recognised (perhaps empty) feed whose only
        trouble, if any, was a mislabelled content type or encoding."""
        if self.entries:
            return True
        if self.kind == "unknown":
            return False
        return not self.bozo or self.bozo_recoverable or self.title is not None


@dataclass(frozen=True)
class FeedItem:
    """A new entry on its way to the page fetch."""

    feed_url: str
    entry: FeedEntry
    keys: tuple[str, ...]  # seen-state keys (canonical URL, entry id)
    topic: str | None = None


# --------------------------------------------------------------------------- parsing


def _s(value: Any) -> str | None:
    """Any feedparser/JSON value -> stripped str or None (never bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif isinstance(value, dict):
        value = value.get("name") or value.get("value") or value.get("term")
        return _s(value)
    elif not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            return None
    value = value.strip()
    return value or None


@dataclass(frozen=True)
class _DateRule:
    now: datetime
    min_year: int
    max_future_s: float

    def check(self, value: datetime | None) -> tuple[datetime | None, bool]:
        """-> (date or None, was it dropped?)."""
        if value is None:
            return None, False
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if value.year < self.min_year:
            return None, True
        if value > self.now + timedelta(seconds=self.max_future_s):
            return None, True
        return value, False


def _from_struct(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(tuple(value)[:9]), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


#: Zone names feedparser's RFC 822 parser reads right (it takes every other name as UTC).
_FEEDPARSER_ZONES = frozenset(
    "ut gmt z utc adt ast at edt est et cdt cst ct mdt mst mt pdt pst pt met mest a n m y".split()
)
#: Zone names of RFC 822 dates as feeds write them -> minutes east of UTC. Ambiguous names
#: take their meaning in news feeds: IST is India Standard Time (+05:30; Indian outlets write
#: it, Irish ones write GMT/+0100), BST British Summer Time (not Bangladesh). Names that are
#: both ambiguous and common (CST, AST: US, as feedparser reads them) are left to feedparser;
#: any other name is unknown and the date is left empty rather than taken as UTC.
ZONE_OFFSETS_MIN: dict[str, int] = {
    # Europe
    "wet": 0, "west": 60, "bst": 60, "ist": 330, "cet": 60, "cest": 120, "mez": 60, "mesz": 120,
    "eet": 120, "eest": 180, "msk": 180, "trt": 180,
    # Africa
    "wat": 60, "cat": 120, "sast": 120, "eat": 180,
    # Asia, Oceania
    "pkt": 300, "npt": 345, "ict": 420, "wib": 420, "hkt": 480, "sgt": 480, "myt": 480,
    "pht": 480, "awst": 480, "jst": 540, "kst": 540, "acst": 570, "acdt": 630, "aest": 600,
    "aedt": 660, "nzst": 720, "nzdt": 780, "idt": 180,
    # Americas
    "hst": -600, "akst": -540, "akdt": -480, "nst": -210, "ndt": -150, "brt": -180, "art": -180,
}  # fmt: skip
_NAMED_ZONE = re.compile(r"(\d{1,2}:\d{1,2}(?::\d{1,2})?)\s*\(?([A-Za-z]{1,5})\)?\s*$")


def _named_zone_date(text: str) -> tuple[bool, datetime | None]:
    """An RFC 822 date ending in a zone name feedparser would take as UTC -> (True, the date
    at that zone's offset, or None for an unknown name); (False, None) for other dates."""
    match = _NAMED_ZONE.search(text)
    if not match:
        return False, None
    zone = match.group(2).lower()
    if zone in _FEEDPARSER_ZONES or zone in ("am", "pm"):
        return False, None
    if zone not in ZONE_OFFSETS_MIN:
        return True, None  # never a silently wrong time
    minutes = ZONE_OFFSETS_MIN[zone]
    offset = f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    fixed = f"{text[: match.start(2)].rstrip(' (')} {offset}"
    try:
        from feedparser.datetimes import _parse_date

        value = _from_struct(_parse_date(fixed))
    except Exception:  # noqa: BLE001 - feedparser's date parsers are best effort
        value = None
    return True, value or _lenient_date(fixed)


def parse_date(text: Any) -> datetime | None:
    """RFC 3339 / ISO 8601 / RFC 822 and the many forms feedparser knows -> UTC, or None."""
    text = _s(text)
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None:
        named, value = _named_zone_date(text)
        if named:
            return value
        try:
            from feedparser.datetimes import _parse_date

            value = _from_struct(_parse_date(text))
        except Exception:  # noqa: BLE001 - feedparser's date parsers are best effort
            value = None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


_MONTHS = {
    m: i
    for i, m in enumerate(
        [
            "jan",
            "feb",
            "mar",
            "apr",
            "may",
            "jun",
            "jul",
            "aug",
            "sep",
            "oct",
            "nov",
            "dec",
        ],
        1,
    )
}
_LOOSE_DATE = re.compile(
    r"(\d{1,2})\s*([A-Za-z]{3})[a-z]*\.?\s*(\d{4})[\sT,]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?"
    r"\s*(?:GMT|UTC|Z)?\s*(?:([+-])(\d{1,2})(?::?(\d{2}))?)?"
)


def _lenient_date(text: str | None) -> datetime | None:
    """Dates feedparser gives up on, as real feeds write them: ``Thu,28 Jul 2022 4:35:5
    GMT+9`` (no zero padding, hour-only offsets)."""
    match = _LOOSE_DATE.search(text or "")
    if not match:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    if month.lower() not in _MONTHS:
        return None
    try:
        value = datetime(
            int(year),
            _MONTHS[month.lower()],
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m or 0))
        value = value - offset if sign == "+" else value + offset
    return value


_XML_NOISE = re.compile(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(\[.*?\])?\s*>", re.DOTALL | re.IGNORECASE)
_FIRST_TAG = re.compile(rb"<\s*(?:[A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")


def _sniff(body: bytes) -> str:
    head = body[:8192]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    stripped = head.lstrip()
    if stripped[:1] in (b"{", b"["):
        return "json"
    match = _FIRST_TAG.search(_XML_NOISE.sub(b"", head))
    return match.group(1).decode("ascii").lower() if match else ""


def parse_feed(
    body: bytes,
    url: str,
    headers: dict | None = None,
    *,
    now: datetime | None = None,
    min_year: int = 1990,
    max_future_s: float = 86_400.0,
) -> ParsedFeed:
    """Bytes of a feed -> ParsedFeed. Never raises: anything unreadable comes back with
    ``kind='unknown'``, ``bozo=True`` and the reason."""
    rule = _DateRule(now or utcnow(), min_year, max_future_s)
    try:
        if not isinstance(body, (bytes, bytearray)):
            return ParsedFeed(url, "unknown", bozo=True, bozo_reason="body is not bytes")
        body = bytes(body)
        if not body.strip():
            return ParsedFeed(url, "unknown", bozo=True, bozo_reason="empty document")
        root = _sniff(body)
        mime = (headers or {}).get("content-type", "") if headers else ""
        if root == "json" or ("json" in str(mime).lower() and root not in ("rss", "feed", "rdf")):
            return _parse_json_feed(body, url, rule)
        if root in ("urlset", "sitemapindex"):
            return _parse_sitemap(body, url, rule)
        return _parse_with_feedparser(body, url, headers, rule, root)
    except Exception as err:  # noqa: BLE001 - a bad feed is data, never a crash
        return ParsedFeed(url, "unknown", bozo=True, bozo_reason=f"{type(err).__name__}: {err}"[:300])


_KINDS = {"rss090": "rdf", "rss10": "rdf", "cdf": "cdf"}


#: feedparser's bozo exceptions that only say the HTTP labels were wrong: the XML parsed.
_RECOVERABLE = frozenset({"CharacterEncodingOverride", "NonXMLContentType", "CharacterEncodingUnknown"})


def _parse_with_feedparser(body: bytes, url: str, headers: dict | None, rule: _DateRule, root: str = "") -> ParsedFeed:
    import feedparser

    # No made-up Content-Location: feedparser would resolve bare guids ("12345") against it.
    # Relative entry links are joined with the feed URL afterwards instead.
    response_headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    # A stream, never bytes or str: feedparser opens str as a URL and bytes as a file path.
    result = feedparser.parse(io.BytesIO(body), response_headers=response_headers)
    version = _s(result.get("version")) or ""
    if version.startswith("atom"):
        kind = "atom"
    elif version in _KINDS:
        kind = _KINDS[version]
    elif version.startswith("rss"):
        kind = "rss"
    elif version.startswith("json"):
        kind = "jsonfeed"
    elif root == "channel":  # CDF: feedparser reads it but reports no version
        kind = "cdf"
    else:
        kind = "unknown"
    entries, bad = [], 0
    feed = result.get("feed", {}) or {}
    language = _s(feed.get("language"))
    for raw in result.get("entries", []) or []:
        entry, dropped = _feedparser_entry(raw, rule, language, kind)
        if entry.link and not _is_http_url(entry.link):
            entry = dataclasses.replace(entry, link=urljoin(url, entry.link))
        bad += dropped
        entries.append(entry)
    bozo = bool(result.get("bozo"))
    reason = result.get("bozo_exception")
    return ParsedFeed(
        url=url,
        kind=kind,
        title=plain_title(feed.get("title")),
        entries=tuple(entries),
        bozo=bozo,
        bozo_reason=f"{type(reason).__name__}: {reason}"[:300] if bozo and reason else None,
        bad_dates=bad,
        bozo_recoverable=bozo and type(reason).__name__ in _RECOVERABLE,
    )


_PAGE_TYPES = frozenset({"", "text/html", "application/xhtml+xml"})
#: Tags that separate words (the rest, inline markup such as <b> or <em>, just go).
_BREAKING_TAG = re.compile(r"<\s*/?\s*(?:br|p|div|li|h[1-6]|tr|td|th)\b[^<>]*>", re.IGNORECASE)
_TAG = re.compile(r"<\s*/?\s*[A-Za-z][^<>]*>")


def plain_title(value: Any) -> str | None:
    """A title as feeds carry it (HTML for feedparser: ``Fish &amp; chips``, ``Mayor <b>says</b>``)
    -> plain text on one line: tags removed, entities unescaped, white space collapsed."""
    text = _s(value)
    if not text:
        return None
    text = _TAG.sub("", _BREAKING_TAG.sub(" ", text))
    return " ".join(html.unescape(text).split()) or None


def _same_language(hreflang: Any, language: str | None) -> bool:
    hreflang = _s(hreflang)
    if not hreflang or not language:
        return False
    return re.split(r"[-_]", hreflang.lower())[0] == re.split(r"[-_]", language.lower())[0]


def _entry_link(raw: Any, language: str | None, kind: str = "rss") -> str | None:
    """The entry's page: its first rel=alternate link of an HTML type (the one in the feed's
    language when several are), else its first alternate of any type, else an RSS guid that
    is a permalink. feedparser keeps the *last* alternate and offers an Atom entry's id
    (``tag:...``) as its link when it has none; neither is the page."""
    alternates = [
        c for c in raw.get("links", []) or [] if (c.get("rel") or "alternate") == "alternate" and _s(c.get("href"))
    ]
    pages = [c for c in alternates if (_s(c.get("type")) or "").lower() in _PAGE_TYPES] or alternates
    chosen = next((c for c in pages if _same_language(c.get("hreflang"), language)), pages[0] if pages else None)
    if chosen is not None:
        return _s(chosen.get("href"))
    link = _s(raw.get("link"))
    if link and link == _s(raw.get("id")) and not _is_http_url(link):
        # an id offered as the link: only an RSS permalink guid may be relative (joined with
        # the feed URL later); tag:, urn: or an Atom id that is no http(s) URL is not a page
        try:
            scheme = urlsplit(link).scheme
        except ValueError:
            return None
        if scheme or kind != "rss":
            return None
    return link


def _feedparser_entry(
    raw: Any, rule: _DateRule, language: str | None = None, kind: str = "rss"
) -> tuple[FeedEntry, bool]:
    language = _s(raw.get("language")) or _s((raw.get("title_detail") or {}).get("language")) or language
    link = _entry_link(raw, language, kind)
    published, dropped = None, False
    for key in ("published", "updated", "created"):
        if not raw.get(key):
            continue
        text = _s(raw.get(key)) or ""
        named, parsed = _named_zone_date(text)
        if not named:
            parsed = _from_struct(raw.get(f"{key}_parsed")) or _lenient_date(text)
        value, _ = rule.check(parsed)
        if value is not None:
            published, dropped = value, False
            break
        dropped = True  # a date was given but it is unparseable or impossible
    categories = []
    for tag in raw.get("tags", []) or []:
        term = _s(tag.get("term")) or _s(tag.get("label"))
        if term and term not in categories:
            categories.append(term)
    author = _s(raw.get("author")) or _s((raw.get("author_detail") or {}).get("name"))
    content = next(
        (
            _as_html(c.get("value"), c.get("type"))
            for c in raw.get("content") or []
            if isinstance(c, dict) and _s(c.get("value"))
        ),
        None,
    )
    summary = _s(raw.get("summary")) or content
    return (
        FeedEntry(
            link=link,
            id=_s(raw.get("id")),
            title=plain_title(raw.get("title")),
            published=published,
            categories=tuple(categories),
            author=author,
            summary=summary,
            content=content,
            language=language,
        ),
        dropped,
    )


def _as_html(value: Any, content_type: Any = "text/html") -> str | None:
    """Entry content -> HTML: markup as it is, plain text (``text/plain``, JSON Feed's
    ``content_text``) escaped, its blank-line-separated paragraphs as ``<p>``."""
    text = _s(value)
    if text is None or "html" in (_s(content_type) or "text/html").lower():
        return text
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs if p)


def _parse_json_feed(body: bytes, url: str, rule: _DateRule) -> ParsedFeed:
    try:
        data = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as err:
        return ParsedFeed(url, "unknown", bozo=True, bozo_reason=f"not JSON: {err}"[:300])
    if not isinstance(data, dict) or not isinstance(data.get("items"), list):
        return ParsedFeed(url, "unknown", bozo=True, bozo_reason="JSON without an items list")
    version = _s(data.get("version")) or ""
    bozo_reason = None
    if not version.startswith("https://jsonfeed.org/version/"):
        bozo_reason = f"unexpected JSON Feed version {version!r}"
    base = _s(data.get("home_page_url")) or _s(data.get("feed_url")) or url
    feed_authors = _json_authors(data)
    feed_language = _s(data.get("language"))
    entries, bad = [], 0
    for item in data["items"]:
        if not isinstance(item, dict):
            bozo_reason = bozo_reason or "item that is not an object"
            continue
        link = _s(item.get("url")) or _s(item.get("external_url"))
        if link:
            link = urljoin(base, link)
        published, dropped = rule.check(parse_date(item.get("date_published")))
        if published is None:
            modified, dropped_modified = rule.check(parse_date(item.get("date_modified")))
            published, dropped = modified or None, dropped or dropped_modified
        if published is not None:
            dropped = False
        bad += dropped
        tags = item.get("tags") if isinstance(item.get("tags"), list) else []
        authors = _json_authors(item) or feed_authors
        content = _s(item.get("content_html")) or _as_html(item.get("content_text"), "text/plain")
        summary = _s(item.get("summary")) or content
        entries.append(
            FeedEntry(
                link=link,
                id=_s(item.get("id")),
                title=plain_title(item.get("title")),
                published=published,
                categories=tuple(dict.fromkeys(t for t in (_s(t) for t in tags) if t)),
                author=", ".join(authors) if authors else None,
                summary=summary,
                content=content,
                language=_s(item.get("language")) or feed_language,
            )
        )
    return ParsedFeed(
        url=url,
        kind="jsonfeed",
        title=plain_title(data.get("title")),
        entries=tuple(entries),
        bozo=bozo_reason is not None,
        bozo_reason=bozo_reason,
        bad_dates=bad,
    )


def _json_authors(obj: dict) -> list[str]:
    authors = obj.get("authors")
    if not isinstance(authors, list):
        authors = [obj.get("author")] if obj.get("author") else []
    names = [_s(a.get("name")) if isinstance(a, dict) else _s(a) for a in authors]
    return [n for n in names if n]


def _safe_xml_parser():
    from lxml import etree

    # No DTD loading, no entity expansion, no network: a billion-laughs or XXE document
    # parses to text without expanded entities.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        recover=True,
        remove_comments=True,
        remove_pis=True,
    )


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1].lower() if isinstance(tag, str) else ""


def _child_text(element: Any, *path: str) -> str | None:
    node = element
    for name in path:
        node = next((c for c in node if _local(c.tag) == name), None)
        if node is None:
            return None
    return _s("".join(node.itertext()))


def _parse_sitemap(body: bytes, url: str, rule: _DateRule) -> ParsedFeed:
    from lxml import etree

    parser = _safe_xml_parser()
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as err:
        return ParsedFeed(url, "unknown", bozo=True, bozo_reason=f"XMLSyntaxError: {err}"[:300])
    if root is None:
        return ParsedFeed(url, "unknown", bozo=True, bozo_reason="no XML root element")
    errors = [str(e) for e in parser.error_log]
    index = _local(root.tag) == "sitemapindex"
    entries, bad = [], 0
    for node in root:
        if _local(node.tag) not in ("url", "sitemap"):
            continue
        loc = _child_text(node, "loc")
        if not loc:
            continue
        loc = urljoin(url, loc)
        published = None
        dropped = False
        for path in (("news", "publication_date"), ("lastmod",)):
            text = _child_text(node, *path)
            if text:
                published, dropped = rule.check(parse_date(text))
                if published:
                    break
        bad += dropped
        keywords = _child_text(node, "news", "keywords") or ""
        entries.append(
            FeedEntry(
                link=loc,
                title=plain_title(_child_text(node, "news", "title")),
                published=published,
                categories=tuple(dict.fromkeys(k.strip() for k in keywords.split(",") if k.strip())),
                language=_child_text(node, "news", "publication", "language"),
            )
        )
    return ParsedFeed(
        url=url,
        kind="sitemap_index" if index else "sitemap",
        entries=tuple(entries),
        bozo=bool(errors),
        bozo_reason=errors[0][:300] if errors else None,
        bad_dates=bad,
    )


# --------------------------------------------------------------------------- feed lists

_SPEC_KEYS = {"url", "name", "topic", "topic_hint", "poll_interval_s", "poll_interval"}


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _spec_from(item: Any, where: str) -> FeedSpec:
    if isinstance(item, str):
        item = {"url": item}
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a URL or a mapping with 'url'")  # noqa: TRY004
    unknown = set(item) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}")
    url = _s(item.get("url"))
    if not url or not _is_http_url(url):
        raise ValueError(f"{where}: url: {item.get('url')!r} is not an http(s) URL")
    interval = item.get("poll_interval_s", item.get("poll_interval"))
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ValueError(f"{where}: poll_interval_s: must be a positive number of seconds")
        interval = float(interval)
    return FeedSpec(
        url=url,
        name=_s(item.get("name")),
        topic=_s(item.get("topic", item.get("topic_hint"))),
        poll_interval_s=interval,
    )


def load_feed_list(path: str) -> list[FeedSpec]:
    """A YAML list (``configs/feeds.yaml``: ``feeds: [{url, name, topic, poll_interval_s}]``
    or a bare list; entries may be plain URL strings), an OPML file (``xmlUrl`` outlines;
    a parent outline's title becomes the topic hint) or a text file of URLs, one a line.
    Raises ``ValueError`` naming the file and entry on anything it cannot use."""
    import fsspec

    try:
        with fsspec.open(path, "rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read feed list: {err}") from None
    lower = path.lower()
    head = data[:2048].lstrip().lower()
    if _is_feed_document(head):
        raise ValueError(
            f"{path}: is a feed itself (RSS, Atom, JSON Feed or a sitemap), not a list of feeds: pass its "
            "http(s) URL, or list that URL in a feed list (a local file can be served with `python -m "
            "http.server`, its host:port allowed with --allow-hosts)"
        )
    if lower.endswith((".opml", ".xml")) or head.startswith(b"<?xml") or b"<opml" in head:
        specs = _load_opml(data, path)
    elif lower.endswith((".yaml", ".yml", ".json")):
        specs = _load_yaml(data, path)
    else:
        specs = [
            _spec_from(line.strip(), f"{path}:{number}")
            for number, line in enumerate(data.decode("utf-8-sig", errors="replace").splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return _dedupe(specs)


#: root elements of the documents a feed URL serves (RSS 0.9x/2.0 and 1.0, Atom, sitemaps)
_FEED_ROOTS = (b"<rss", b"<rdf:rdf", b"<feed", b"<urlset", b"<sitemapindex")


def _is_feed_document(head: bytes) -> bool:
    """Whether the start of a file (lowercased) is a feed rather than a list of feeds."""
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"{"):  # JSON may escape its slashes
        return b"jsonfeed.org/version" in head.replace(b"\\/", b"/")
    return b"<opml" not in head and any(root in head for root in _FEED_ROOTS)


def _load_yaml(data: bytes, path: str) -> list[FeedSpec]:
    import yaml

    try:
        doc = yaml.safe_load(data.decode("utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None
    if isinstance(doc, dict):
        unknown = set(doc) - {"feeds"}
        if unknown:
            raise ValueError(f"{path}: unknown top-level key(s) {sorted(unknown)} (expected 'feeds')")
        doc = doc.get("feeds") or []
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise ValueError(f"{path}: expected a list of feeds")  # noqa: TRY004
    return [_spec_from(item, f"{path}: feeds[{i}]") for i, item in enumerate(doc)]


def _load_opml(data: bytes, path: str) -> list[FeedSpec]:
    from lxml import etree

    try:
        root = etree.fromstring(data, _safe_xml_parser())
    except etree.XMLSyntaxError as err:
        raise ValueError(f"{path}: not valid OPML: {err}") from None
    if root is None or _local(root.tag) != "opml":
        raise ValueError(f"{path}: not an OPML document")
    specs: list[FeedSpec] = []

    def walk(node: Any, topic: str | None) -> None:
        for child in node:
            if _local(child.tag) != "outline":
                continue
            attrs = {k.lower(): v for k, v in child.attrib.items()}
            title = _s(attrs.get("title")) or _s(attrs.get("text"))
            url = _s(attrs.get("xmlurl"))
            if url:
                category = _s((attrs.get("category") or "").strip("/").split("/")[-1])
                specs.append(
                    _spec_from(
                        {"url": url, "name": title, "topic": category or topic},
                        f"{path}: outline {title or url!r}",
                    )
                )
            walk(child, title or topic)

    body = next((c for c in root if _local(c.tag) == "body"), root)
    walk(body, None)
    return specs


def _dedupe(specs: Iterable[FeedSpec]) -> list[FeedSpec]:
    seen, out = set(), []
    for spec in specs:
        if spec.url not in seen:
            seen.add(spec.url)
            out.append(spec)
    return out


def resolve_inputs(inputs: Sequence[str]) -> list[FeedSpec]:
    """``--input`` values -> feed specs: http(s) URLs are feeds, anything else a feed list.
    Raises ``ValueError`` when they list no feed at all (an empty file, ``feeds: []``)."""
    specs: list[FeedSpec] = []
    for value in inputs:
        value = value.strip()
        if _is_http_url(value):
            specs.append(FeedSpec(url=value))
        else:
            specs.extend(load_feed_list(value))
    if not specs:
        raise ValueError(f"no feeds listed in {', '.join(inputs) or 'the inputs'}")
    return _dedupe(specs)


# --------------------------------------------------------------------------- seen state


def _canonical(url: str) -> str:
    try:
        from transforms.fingerprint import canonicalize_url
    except ImportError:  # pragma: no cover - fingerprint ships with the package
        return url.strip().split("#", 1)[0]
    return canonicalize_url(url)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def entry_keys(entry: FeedEntry, feed_url: str) -> tuple[str, ...]:
    """Seen-state keys: the canonical URL, the entry id (scoped to the feed, since RSS guids
    are often bare numbers), or a digest of the entry when it has neither."""
    keys = []
    if entry.link:
        keys.append("u:" + _digest(_canonical(entry.link)))
    if entry.id:
        keys.append("i:" + _digest(f"{feed_url}\n{entry.id}"))
    if not keys:
        published = entry.published.isoformat() if entry.published else ""
        keys.append("h:" + _digest(f"{feed_url}\n{entry.title}\n{published}\n{entry.summary}"))
    return tuple(keys)


@dataclass
class FeedCache:
    """What we remember of one feed to recognise it unchanged, and its failure streak."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    # "stage/reason" of the failure the feed has had since ``failing_since`` (unix time)
    failing: str | None = None
    failing_since: float | None = None
    # a sitemap index: the child sitemaps it listed, polled again while it stays unchanged
    children: tuple[str, ...] | None = None


@dataclass
class FeedState:
    """Seen entry keys (key -> unix time first seen) and per-feed validators."""

    seen: dict[str, float] = field(default_factory=dict)
    feeds: dict[str, FeedCache] = field(default_factory=dict)

    def is_seen(self, keys: Iterable[str]) -> bool:
        return any(k in self.seen for k in keys)

    def mark(self, keys: Iterable[str], when: float) -> None:
        for key in keys:
            self.seen.setdefault(key, when)

    def to_json(self) -> dict:
        return {
            "version": 1,
            "seen": self.seen,
            "feeds": {
                url: {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cache).items()}
                for url, cache in sorted(self.feeds.items())
            },
        }

    @classmethod
    def from_json(cls, data: Any) -> FeedState:
        if not isinstance(data, dict) or data.get("version") != 1:
            return cls()
        seen = {str(k): float(v) for k, v in (data.get("seen") or {}).items() if isinstance(v, (int, float))}
        feeds = {}
        for url, value in (data.get("feeds") or {}).items():
            if isinstance(value, dict):
                since = value.get("failing_since")
                feeds[str(url)] = FeedCache(
                    etag=_s(value.get("etag")),
                    last_modified=_s(value.get("last_modified")),
                    body_hash=_s(value.get("body_hash")),
                    failing=_s(value.get("failing")),
                    failing_since=float(since) if isinstance(since, (int, float)) else None,
                    children=_children(value.get("children")),
                )
        return cls(seen=seen, feeds=feeds)


def _children(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(url for url in (_s(v) for v in value) if url)


def state_path_of(settings: FeedSettings, output_root: str | None) -> str | None:
    """Where the seen state lives: ``feeds.state_path``, else ``<output>/_state/feeds.json``."""
    if settings.state_path:
        return settings.state_path
    return posixpath.join(output_root.rstrip("/"), STATE_FILE) if output_root else None


def seen_keys_of_rows(rows: Iterable[Document | Failure | Any]) -> list[str]:
    """Seen-state keys of committed output rows (articles, failures) whose outcome is final:
    the canonical-URL key of each row's URL (an entry's link; transient failures are left
    out, to be tried again). What a streaming run saves after each commit."""
    keys = []
    for row in rows:
        if isinstance(row, Failure) and is_transient(row):
            continue
        if getattr(row, "url", None):
            keys.extend(entry_keys(FeedEntry(link=row.url), ""))
    return keys


def load_state(path: str | None) -> FeedState:
    """Saved state, or an empty one when there is none (or it is unreadable: logged)."""
    if not path:
        return FeedState()
    import fsspec

    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            return FeedState.from_json(json.load(handle))
    except FileNotFoundError:
        return FeedState()
    except (OSError, ValueError) as err:
        LOG.warning("feed state %s unreadable (%s); starting afresh", path, err)
        return FeedState()


def _state_bytes(state: FeedState) -> bytes:
    return json.dumps(state.to_json(), sort_keys=True).encode("utf-8")


def save_state(path: str, state: FeedState) -> None:
    """Write the state whole, then move it into place (readers never see half a file)."""
    write_atomic(path, _state_bytes(state))


def stage_state(path: str, state: FeedState, token: str) -> tuple[str, str]:
    """Write the state under a pending name for the sink's commit to move into place."""
    return stage_file(path, _state_bytes(state), token)


def merge_state(
    old: FeedState,
    seen_keys: Iterable[str],
    feeds: dict[str, FeedCache],
    retry_feeds: Iterable[str],
    *,
    now: float,
    max_age_s: float,
) -> FeedState:
    """Old state + this run's final entries and feed validators; forgets old keys. Feeds
    with entries to retry lose their validators so the next run reads them in full."""
    seen = {k: t for k, t in old.seen.items() if now - t <= max_age_s}
    for key in seen_keys:
        seen.setdefault(key, now)
    merged = dict(old.feeds)
    merged.update(feeds)
    for url in retry_feeds:
        merged.pop(url, None)
    return FeedState(seen=seen, feeds=merged)


# --------------------------------------------------------------------------- one poll


FetchFn = Callable[..., "Response | Failure"]


@dataclass
class PollResult:
    items: list[FeedItem] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stats: Counter = field(default_factory=Counter)
    # seen-state keys of entries settled by the poll itself (no link: reported once, then
    # seen like a fetched entry); the keys of ``items`` are settled by their page fetch
    settled: list[tuple[str, ...]] = field(default_factory=list)


def _failure(url: str, stage: str, reason: str, detail: str) -> Failure:
    return Failure(url=url, stage=stage, reason=reason, detail=detail[:500], at=utcnow())


def read_feed(
    spec: FeedSpec,
    fetch: FetchFn,
    state: FeedState,
    settings: FeedSettings,
    now: datetime,
) -> tuple[ParsedFeed | None, Failure | None, str]:
    """Fetch and parse one feed with conditional GET -> (feed or None, failure, status) where
    status is ``new``, ``not_modified`` (304) or ``unchanged`` (same body hash). An unchanged
    sitemap index comes back as its remembered child sitemaps: their URLs are usually stable
    while their contents change, so they are polled (with their own validators) every time."""
    cache = state.feeds.get(spec.url) or FeedCache()
    response = fetch(spec.url, accept=FEED_TYPES, etag=cache.etag, last_modified=cache.last_modified)
    if isinstance(response, Failure):
        return None, response, "failed"
    body_hash = response.body_hash
    if response.status == 304 or cache.body_hash == body_hash:
        if cache.failing:  # read as before: the failure streak is over
            state.feeds[spec.url] = dataclasses.replace(cache, failing=None, failing_since=None)
        status = "not_modified" if response.status == 304 else "unchanged"
        if cache.children is None:
            return None, None, status
        children = tuple(FeedEntry(link=url) for url in cache.children)
        return ParsedFeed(spec.url, "sitemap_index", entries=children), None, status
    parsed = parse_feed(
        response.body,
        spec.url,
        response.headers,
        now=now,
        min_year=settings.min_year,
        max_future_s=settings.max_future_s,
    )
    if not parsed.usable:
        detail = parsed.bozo_reason or f"no entries in a {parsed.kind} document"
        return parsed, _failure(spec.url, PARSE_STAGE, "bad_feed", detail), "failed"
    children = None
    if parsed.kind == "sitemap_index":
        children = tuple(e.link for e in parsed.entries[: settings.max_child_sitemaps] if e.link)
    state.feeds[spec.url] = FeedCache(
        etag=_s(response.headers.get("etag")),
        last_modified=_s(response.headers.get("last-modified")),
        body_hash=body_hash,
        children=children,
    )
    return parsed, None, "new"


def feed_failure(url: str, failure: Failure, state: FeedState, when: float) -> Failure:
    """A feed-level failure as this run reports it: the failure itself when the feed starts
    failing (or fails in a new way), which starts a streak in ``state``; a filter row
    ``feed_still_failing`` when it fails as it did before (already counted in that run)."""
    code = f"{failure.stage}/{failure.reason}"
    cache = state.feeds.get(url) or FeedCache()
    if cache.failing == code:
        since = datetime.fromtimestamp(cache.failing_since or when, UTC).isoformat(timespec="seconds")
        return _failure(url, FILTER_STAGE, STILL_FAILING, f"{code} since {since}: {failure.detail}")
    state.feeds[url] = dataclasses.replace(cache, failing=code, failing_since=when)
    return failure


def _newest_first(entries: Sequence[tuple[FeedEntry, Any]], cap: int) -> list[tuple[FeedEntry, Any]]:
    """(entry, keys) pairs -> at most ``cap`` of them, newest first (feed order when all fit)."""
    if len(entries) <= cap:
        return list(entries)
    floor = datetime.min.replace(tzinfo=UTC)
    return sorted(entries, key=lambda pair: pair[0].published or floor, reverse=True)[:cap]


def _unseen(entries: Iterable[FeedEntry], feed_url: str, state: FeedState) -> tuple[list, int]:
    """-> ([(entry, keys)] not seen before, in feed order, each once; number already seen)."""
    fresh, taken, seen = [], set(), 0
    for entry in entries:
        keys = entry_keys(entry, feed_url)
        if state.is_seen(keys) or taken.intersection(keys):
            seen += 1
            continue
        taken.update(keys)
        fresh.append((entry, keys))
    return fresh, seen


def poll_feeds(
    specs: Sequence[FeedSpec],
    fetch: FetchFn,
    state: FeedState,
    settings: FeedSettings,
    *,
    now: datetime | None = None,
    map_fn: Callable[..., Iterable] = map,
    reported: set[tuple[str, str]] | None = None,
) -> PollResult:
    """One poll of ``specs``: fetch each feed (conditional GET, body hash), parse it, and
    return the entries not in ``state`` (which is updated: entries are marked seen, feed
    validators stored). Pure apart from ``fetch``; ``map_fn`` may be a thread pool's map.
    ``reported`` (feed url, reason) pairs are not reported again (one failure per run)."""
    now = now or utcnow()
    result = PollResult()
    reported = set() if reported is None else reported
    when = now.timestamp()

    def one(
        spec: FeedSpec,
    ) -> tuple[FeedSpec, tuple[ParsedFeed | None, Failure | None, str]]:
        return spec, read_feed(spec, fetch, state, settings, now)

    queue = list(specs)
    children: list[FeedSpec] = []
    for depth in range(2):  # feeds, then child sitemaps of sitemap indexes (one level)
        for spec, (parsed, failure, status) in map_fn(one, queue):
            result.stats["feeds_polled"] += 1
            result.stats[f"feeds_{status}"] += 1
            if failure is not None:
                if (spec.url, failure.reason) not in reported:
                    reported.add((spec.url, failure.reason))
                    failure = feed_failure(spec.url, failure, state, when)
                    result.stats["feeds_still_failing"] += failure.reason == STILL_FAILING
                    result.failures.append(failure)
                continue
            if parsed is None:
                continue
            result.stats["feeds_bozo"] += parsed.bozo
            result.stats["feeds_bad_dates"] += parsed.bad_dates
            if parsed.kind == "sitemap_index":
                if depth == 0:
                    for entry in parsed.entries[: settings.max_child_sitemaps]:
                        children.append(FeedSpec(url=entry.link, name=spec.name, topic=spec.topic))
                continue
            fresh, seen = _unseen(parsed.entries, spec.url, state)
            result.stats["feeds_entries_seen"] += seen
            entries = _newest_first(fresh, settings.max_entries_per_feed)
            if len(entries) < len(fresh):
                # The rest wait for the next poll (or run), which must read the feed again
                # even if it has not changed: no validators are kept until none are left.
                waiting = len(fresh) - len(entries)
                result.stats["feeds_entries_capped"] += waiting
                cache = state.feeds.get(spec.url) or FeedCache()
                state.feeds[spec.url] = dataclasses.replace(cache, etag=None, last_modified=None, body_hash=None)
                LOG.info("%s: %d new entries over max_entries_per_feed wait for the next poll", spec.url, waiting)
            for entry, keys in entries:
                state.mark(keys, when)
                result.stats["feeds_entries_new"] += 1
                if not entry.link:
                    result.settled.append(keys)
                    result.failures.append(
                        _failure(
                            spec.url,
                            READ_STAGE,
                            "no_link",
                            f"entry {entry.id or entry.title!r} has no link",
                        )
                    )
                    continue
                result.items.append(FeedItem(feed_url=spec.url, entry=entry, keys=keys, topic=spec.topic))
        queue, children = [c for c in children if c.url], []
        if not queue:
            break
    return result


# --------------------------------------------------------------------------- pages


def _entry_document(item: FeedItem, fetched_at: datetime, url: str, body: bytes, content_type, charset) -> Document:
    """A page body + the feed entry's metadata -> Document."""
    entry = item.entry
    return Document(
        url=url,
        source_kind="feeds",
        fetched_at=fetched_at,
        html=body,
        content_type=content_type,
        charset=charset,
        title=entry.title,
        published_at=entry.published,
        language=entry.language,
        author=entry.author,
        categories=entry.categories,
        feed_url=item.feed_url,
        entry_id=entry.id,
        topic_hint=item.topic,
    )


def page_document(item: FeedItem, response: Response, fetched_at: datetime) -> Document:
    """A fetched page + the entry's metadata -> Document (url = the entry link as received)."""
    url = item.entry.link or response.url
    return _entry_document(item, fetched_at, url, response.body, response.content_type or None, response.charset)


def summary_document(item: FeedItem, fetched_at: datetime) -> Document:
    """``fetch_articles: false``: the entry's own content (else its summary) stands in for the
    page; a feed's summary beside its content is a teaser."""
    entry = item.entry
    title = html.escape(entry.title or "")
    body = entry.content or entry.summary or ""
    page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1>{body}</body></html>"
    return _entry_document(item, fetched_at, entry.link or item.feed_url, page.encode("utf-8"), "text/html", "utf-8")


def fetch_page(item: FeedItem, fetch: FetchFn, settings: FeedSettings) -> Document | Failure:
    """One entry -> its Document, or the fetch Failure (url = the entry link)."""
    if not settings.fetch_articles:
        return summary_document(item, utcnow())
    result = fetch(item.entry.link)
    if isinstance(result, Failure):
        return records.replace(result, url=item.entry.link)
    return page_document(item, result, utcnow())


def host_key(url: str | None) -> str:
    """Politeness key of a URL: lower-case host[:port] ('' for unparseable URLs)."""
    try:
        parts = urlsplit(url or "")
        host = (parts.hostname or "").lower()
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return ""


# --------------------------------------------------------------------------- Beam

_FETCHERS: dict[FetchSettings, SafeFetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def shared_fetcher(settings: FetchSettings) -> SafeFetcher:
    """One fetcher per worker process and settings: per-host limits and the robots cache
    are shared by every DoFn thread of the process."""
    with _FETCHERS_LOCK:
        fetcher = _FETCHERS.get(settings)
        if fetcher is None:
            fetcher = _FETCHERS[settings] = SafeFetcher(settings)
        return fetcher


def _count(stage: str, reason: str) -> None:
    Metrics.counter(records.METRICS_NAMESPACE, f"{stage}_{reason}").inc()


_STATE_TAG = "state"


class _PollFeeds(beam.DoFn):
    """(specs) -> FeedItem, plus tagged Failure and one tagged ('feeds', validators)."""

    def __init__(self, fetch, feeds, polls, interval, state_path, sleep=time.sleep):
        self._fetch_settings, self._settings = fetch, feeds
        self._polls, self._interval, self._state_path = polls, interval, state_path
        self._sleep = sleep

    def setup(self):
        self._fetcher = shared_fetcher(self._fetch_settings)

    def process(self, specs: tuple[FeedSpec, ...]) -> Iterator[Any]:
        state = load_state(self._state_path)
        reported: set[tuple[str, str]] = set()
        last_polled: dict[str, float] = {}
        with concurrent.futures.ThreadPoolExecutor(self._settings.feed_threads) as pool:
            for poll in range(self._polls):
                if poll:
                    self._sleep(self._interval or 0)
                clock = time.monotonic()
                due = [
                    s
                    for s in specs
                    if s.url not in last_polled
                    or clock - last_polled[s.url] + 0.5 >= (s.poll_interval_s or self._interval or 0)
                ]
                for spec in due:
                    last_polled[spec.url] = clock
                out = poll_feeds(
                    due,
                    self._fetcher.fetch,
                    state,
                    self._settings,
                    map_fn=pool.map,
                    reported=reported,
                )
                for name, value in out.stats.items():
                    Metrics.counter(records.METRICS_NAMESPACE, name).inc(value)
                for failure in out.failures:
                    _count(failure.stage, failure.reason)
                    yield beam.pvalue.TaggedOutput(records.FAILED, failure)
                for keys in out.settled:
                    yield beam.pvalue.TaggedOutput(_STATE_TAG, ("seen", keys))
                yield from out.items
        yield beam.pvalue.TaggedOutput(_STATE_TAG, ("feeds", state.feeds))


class _FetchPages(beam.DoFn):
    """(host, [FeedItem]) -> Document | tagged Failure, plus tagged state keys."""

    def __init__(self, fetch: FetchSettings, feeds: FeedSettings):
        self._fetch_settings, self._settings = fetch, feeds

    def setup(self):
        self._fetcher = shared_fetcher(self._fetch_settings)

    def process(self, element: tuple[str, Iterable[FeedItem]]) -> Iterator[Any]:
        _, items = element
        items = list(items)
        workers = max(1, min(self._fetch_settings.per_host_concurrency, len(items)))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda it: fetch_page(it, self._fetcher.fetch, self._settings), items)
            for item, result in zip(items, results, strict=True):
                if isinstance(result, Failure):
                    _count(result.stage, result.reason)
                    yield beam.pvalue.TaggedOutput(records.FAILED, result)
                    if is_transient(result):
                        yield beam.pvalue.TaggedOutput(_STATE_TAG, ("retry", item.feed_url))
                        continue
                else:
                    Metrics.counter(records.METRICS_NAMESPACE, "feeds_pages_fetched").inc()
                    yield result
                yield beam.pvalue.TaggedOutput(_STATE_TAG, ("seen", item.keys))


class _SaveState(beam.DoFn):
    """[state marks] -> saves the merged state (``token`` None) or stages it for the sink's
    commit and yields (pending URL, final URL)."""

    def __init__(self, path: str, settings: FeedSettings, token: str | None = None):
        self._path, self._settings, self._token = path, settings, token

    def process(self, marks: list[tuple[str, Any]]) -> Iterator[Any]:
        keys: list[str] = []
        feeds: dict[str, FeedCache] = {}
        retry: set[str] = set()
        for kind, value in marks:
            if kind == "seen":
                keys.extend(value)
            elif kind == "feeds":
                feeds.update(value)
            elif kind == "retry":
                retry.add(value)
        state = merge_state(
            load_state(self._path),
            keys,
            feeds,
            retry,
            now=time.time(),
            max_age_s=self._settings.state_max_age_days * 86_400,
        )
        if self._token is None:
            save_state(self._path, state)
            yield len(state.seen)
        else:
            yield stage_state(self._path, state, self._token)


class _Route(beam.DoFn):
    def process(self, element: Any) -> Iterator[Any]:
        if isinstance(element, Failure):
            yield beam.pvalue.TaggedOutput(records.FAILED, element)
        else:
            yield element


class ReadFeeds(beam.PTransform):
    """Pipeline root -> ``.ok``: PCollection[Document] (article pages of new feed entries),
    ``.failed``: PCollection[Failure] (bad feeds, entries whose page failed).

    ``inputs``: feed URLs and/or feed-list files (YAML, OPML, text). With ``stop_after`` N
    the feeds are polled N times, ``poll_interval_s`` apart (batch mode: the polls run inside
    one DoFn; ``poll_feeds`` is the per-poll logic a streaming source can reuse).
    """

    def __init__(
        self,
        inputs: list[str],
        fetch: FetchSettings,
        feeds: FeedSettings,
        *,
        poll_interval_s: float | None = None,
        stop_after: int | None = None,
        output_root: str | None = None,
        commit_token: str | None = None,
    ):
        super().__init__()
        if poll_interval_s is not None and poll_interval_s < 0:
            raise ValueError("poll_interval_s: must be >= 0")
        if stop_after is not None and stop_after < 1:
            raise ValueError("stop_after: must be >= 1")
        self._specs = tuple(resolve_inputs(inputs))
        if not self._specs:
            raise ValueError("inputs: no feeds given")
        self._fetch, self._feeds = fetch, feeds
        self._interval = poll_interval_s
        self._polls = stop_after or 1
        self._state_path = state_path_of(feeds, output_root)
        self._commit_token = commit_token
        #: with ``commit_token``: PCollection of (pending, final) state files for the sink
        self.staged_state = None

    def expand(self, pbegin):
        polled = (
            pbegin
            | "FeedList" >> beam.Create([self._specs])
            | "PollFeeds"
            >> beam.ParDo(
                _PollFeeds(
                    self._fetch,
                    self._feeds,
                    self._polls,
                    self._interval,
                    self._state_path,
                )
            ).with_outputs(records.FAILED, _STATE_TAG, main="items")
        )
        pages = (
            polled.items
            | "KeyByHost" >> beam.Map(lambda item: (host_key(item.entry.link), item))
            | "GroupByHost" >> beam.GroupByKey()
            | "FetchPages"
            >> beam.ParDo(_FetchPages(self._fetch, self._feeds)).with_outputs(records.FAILED, _STATE_TAG, main="ok")
        )
        if self._state_path:
            self.staged_state = (
                (polled[_STATE_TAG], pages[_STATE_TAG])
                | "StateMarks" >> beam.Flatten()
                | "CollectState" >> beam.combiners.ToList()
                | "SaveFeedState" >> beam.ParDo(_SaveState(self._state_path, self._feeds, self._commit_token))
            )
        return (
            (pages.ok, polled[records.FAILED], pages[records.FAILED])
            | "FeedOutputs" >> beam.Flatten()
            | "RouteFeedOutputs" >> beam.ParDo(_Route()).with_outputs(records.FAILED, main="ok")
        )


__all__ = [
    "FeedEntry",
    "FeedItem",
    "FeedSettings",
    "FeedSpec",
    "FeedState",
    "ParsedFeed",
    "PollResult",
    "ReadFeeds",
    "entry_keys",
    "fetch_page",
    "load_feed_list",
    "load_state",
    "parse_feed",
    "poll_feeds",
    "resolve_inputs",
    "save_state",
    "seen_keys_of_rows",
    "state_path_of",
]
