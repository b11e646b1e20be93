"""ExtractMainText: Document (HTML bytes or plain text) -> Article with main text and metadata.

The work is done by the pure function :func:`extract_document`; the PTransform around it only
routes results to the ``ok`` output and failures to the ``failed`` output.

Extraction of HTML pages:

1. Guards before any parsing: not HTML (content type or binary sniff) -> ``not_html``; empty
   bytes -> ``empty_page``; more than ``max_html_bytes`` -> ``too_large``.
2. Decoding: byte-order mark -> strict UTF-8 -> declared charset (HTTP/WARC, then
   ``<meta charset>``; a few bad bytes are replaced as browsers do) -> charset detection ->
   cp1252 with replacement (never fails).
3. Main text: trafilatura (``deduplicate=False, include_comments=False``). The JSON-LD
   ``articleBody`` replaces it when that is much longer (``jsonld_min_ratio``) or carries the
   same text with paragraph breaks; when the text is short compared with the page's visible
   text, a recall-oriented trafilatura pass is tried (see :func:`_choose_text`). Leading and
   trailing lines made of link text are trimmed (rule ``link_density``, recorded in
   ``rules_fired`` / ``removed``).
4. Metadata precedence (title, date, author, language): structured page metadata
   (JSON-LD / OpenGraph / ``<html lang>``) first, then the document's own (feed entry, WARC,
   JSON record), then trafilatura's heuristics (only run when the structured data lacks
   title, date or author; only those kept in ``metadata_heuristics``). Published dates
   from the heuristics carry no time of day, so a feed timestamp is preferred over them.

Time limit. trafilatura has no timeout, and a worker thread that merely "times out" keeps
burning CPU and memory: the extraction itself must be stopped. Three strategies:

* ``signal`` (used on the main thread, e.g. benchmarks, tests, DirectRunner in-process): a
  SIGALRM ``setitimer`` raises inside the extraction. No overhead.
* ``thread`` (opt-in, for DoFns on worker threads): a watcher thread raises ``ExtractTimeout`` in the
  extracting thread as an asynchronous exception (``PyThreadState_SetAsyncExc``). Like a
  signal handler it takes effect between bytecodes, so it stops what ``signal`` stops
  (trafilatura's work is Python code calling lxml in small steps), at the cost of one timer
  thread per page (~0.1 ms). An exception that lands in a finaliser is swallowed there, so
  the watcher raises again every 0.1 s until the extraction has ended. No memory cap.
* ``process`` (Beam runs DoFns on worker threads): extraction runs in a long-lived child
  Python process (plain subprocess, length-prefixed pickles over pipes); on timeout the
  child is killed and restarted on the next page. The child runs under an address-space
  limit (``max_memory_mb``), so a pathological page cannot exhaust the worker's memory; a
  child that dies is reported as ``extract_error``.

Measured on 80 trafilatura_eval pages (2 shared cores, noisy): no guard 40-43 ms/page,
signal 36-44 ms/page, process 38-43 ms/page, i.e. the guard costs less than the noise
(~1 ms to pickle a page); starting a child costs ~0.4 s and ~80 MB once per DoFn instance
(it imports trafilatura but not Beam: the Beam transform is in ``extract_transform.py``;
with Beam it took 2-3 s and ~170 MB). A 3.7 MB
page of 60,000 paragraphs takes 5.3 s (signal) / 6.2 s (process) unguarded and is stopped
after 2.1 s in both modes with ``timeout_s=2``; 200,000 nested ``<div>`` are cut by lxml's
depth limit (0.4 s, ``no_text``). ``isolation='auto'`` picks ``signal`` on
the main thread and ``process`` elsewhere. ``thread`` was measured against it on 1,000
pages with 2 workers: same docs/s within this VM's noise (the pipe is not where the 2-worker
time goes), peak memory 1,733 -> 1,444 MB, but no memory cap; so it is not the default.
"""

from __future__ import annotations

import codecs
import copy
import functools
import html as html_lib
import importlib
import json
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from transforms.fastxpath import compile_selector
from transforms.http import BINARY_MAGIC, detect_charset, parse_content_type
from transforms.records import FILTER_STAGE, Article, Document, Failure

STAGE = "extract"
_ISOLATION_MODES = ("auto", "signal", "thread", "process", "none")


#: trafilatura's metadata heuristics that ``ExtractSettings.metadata_heuristics`` can keep
METADATA_HEURISTICS = ("title", "date", "author")


@dataclass(frozen=True)
class ExtractSettings:
    """Settings of the extract stage (YAML section ``extract``)."""

    # Seconds one page may take before it goes to failures with reason 'timeout'. Typical news
    # pages take 20-200 ms; 20 s only catches runaway pages.
    timeout_s: float = 20.0
    # Larger pages go to failures ('too_large') unread. Real articles are < 2 MB of HTML.
    max_html_bytes: int = 5_000_000
    # Extracted text shorter than this (characters) is 'no_text': nothing worth cleaning.
    min_text_chars: int = 25
    # Keep table text (trafilatura include_tables); news tables (results, figures) are content.
    include_tables: bool = True
    # trafilatura's fast mode: no readability/justext comparison pass. About half the time
    # per page; benchmarks/extraction.py --fast prints what it costs in quality. Backfills
    # that are limited by extraction time can switch it on.
    fast: bool = False
    # Use JSON-LD / OpenGraph / <html lang> metadata and JSON-LD articleBody.
    use_structured_data: bool = True
    # trafilatura's heuristics for what the structured metadata does not state: title
    # (<h1>/<title>), date (htmldate), author (byline search). A backfill limited by extraction
    # time can keep only [title]: 2.5 ms less per page on trafilatura_eval, where 352 of 990
    # pages then have no published date (only the document's own, e.g. a feed entry's; else
    # windows use the fetch time) and 121 no author. benchmarks/throughput.py --light-metadata.
    metadata_heuristics: tuple[str, ...] = METADATA_HEURISTICS
    # When the main text is shorter than this share of the page's visible text and shorter
    # than fallback_max_chars, try JSON-LD articleBody and a recall-oriented trafilatura pass.
    fallback_min_share: float = 0.1
    # Pages whose main text is already this long (characters) never trigger the fallback.
    fallback_max_chars: int = 1500
    # JSON-LD articleBody replaces the main text when it is this many times longer (measured
    # on trafilatura_eval: 58 pages with articleBody, F1 0.911 -> 0.914 at 1.5).
    jsonld_min_ratio: float = 1.5
    # Leading/trailing lines of the main text whose characters are at least this share link
    # text are dropped (menus, related links, tag lists; rule 'link_density'). 1.0 = only
    # lines made entirely of links; set > 1 to switch off. 0.9 measured best on
    # trafilatura_eval (0.5 and 0.7 also remove linked headings that are content).
    link_density_max: float = 0.9
    # How the time limit is enforced: auto (signal on the main thread, else process), signal,
    # thread (no child process: ~290 MB less with 2 workers, same speed within noise; no
    # memory cap), process (adds the memory cap below and survives hangs inside C code),
    # none (no limit; tests only).
    isolation: str = "auto"
    # Address-space limit of the extraction child process (process isolation), in MiB.
    max_memory_mb: int = 2048
    # A page date later than the fetch time (the WARC-Date for archives) + this many seconds
    # is wrong (a template's expiry, a typo): it is ignored and the feed's or the record's own
    # date is used, if that one is not as far ahead too (a JSON line's "published": 2099).
    # One day, as feeds.max_future_s: time zones put honest dates up to ~14 h ahead.
    max_future_s: float = 86_400.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise ValueError("timeout_s: must be > 0 seconds")
        if self.max_html_bytes <= 0:
            raise ValueError("max_html_bytes: must be > 0")
        if self.min_text_chars < 0:
            raise ValueError("min_text_chars: must be >= 0")
        if not 0.0 <= self.fallback_min_share <= 1.0:
            raise ValueError("fallback_min_share: must be between 0 and 1")
        if self.link_density_max <= 0:
            raise ValueError("link_density_max: must be > 0 (> 1 switches the rule off)")
        if self.jsonld_min_ratio < 1:
            raise ValueError("jsonld_min_ratio: must be >= 1")
        if self.fallback_max_chars < 0:
            raise ValueError("fallback_max_chars: must be >= 0")
        unknown = sorted(set(self.metadata_heuristics) - set(METADATA_HEURISTICS))
        if unknown:
            raise ValueError(
                f"metadata_heuristics: unknown {', '.join(unknown)}; known: {', '.join(METADATA_HEURISTICS)}"
            )
        if self.isolation not in _ISOLATION_MODES:
            raise ValueError(f"isolation: must be one of {', '.join(_ISOLATION_MODES)}")
        if self.max_memory_mb < 256:
            raise ValueError("max_memory_mb: must be >= 256 (trafilatura needs ~150 MiB)")
        if self.max_future_s < 0:
            raise ValueError("max_future_s: must be >= 0 seconds")


class ExtractTimeout(Exception):
    """Raised inside an extraction that ran past its time limit."""


def _timed_out(seconds: float) -> ExtractTimeout:
    return ExtractTimeout(f"extraction took more than {seconds:g} s")


class _ExtractFailed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Helpers: host, guards, decoding
# ---------------------------------------------------------------------------------------------


def source_host(url: str) -> str:
    """Publisher host of ``url``: lower-case, without port and a leading ``www.``."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    host = host.lower().rstrip(".")
    return host.removeprefix("www.")


_HTML_TYPES = ("html", "xml", "text/plain")


def _not_html_reason(doc: Document) -> str | None:
    ctype = parse_content_type(doc.content_type)[0]
    if ctype and not any(t in ctype for t in _HTML_TYPES):
        return f"content type {ctype}"
    head = doc.html[:1024] if doc.html else b""
    if head.startswith(BINARY_MAGIC):
        return "binary content"
    if head.count(b"\x00") > 16 and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "binary content"
    return None


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _try_decode(data: bytes, charset: str | None, errors: str = "strict") -> str | None:
    if not charset:
        return None
    try:
        name = codecs.lookup(charset.strip().strip("\"'")).name
    except LookupError:
        return None
    if name in ("latin-1", "iso8859-1", "ascii"):
        name = "cp1252"  # what browsers do for these labels (WHATWG encoding standard)
    try:
        return data.decode(name, errors)
    except (UnicodeDecodeError, ValueError):
        return None


def decode_html(data: bytes, declared: str | None = None) -> str:
    """Bytes -> text: BOM, strict UTF-8, declared or <meta> charset, detection, cp1252."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            text = _try_decode(data, name)
            if text is not None:
                return text.lstrip("\ufeff")
    # Bytes that are valid UTF-8 and not plain ASCII are UTF-8 whatever the page declares:
    # legacy text almost never forms valid multi-byte sequences by chance, while pages that
    # declare iso-8859-1 but are served as UTF-8 are common (mojibake "â€™" otherwise).
    text = _try_decode(data, "utf-8")
    if text is not None:
        return text
    for candidate in (declared, *_META_CHARSET.findall(data[:8192])[:1]):
        if isinstance(candidate, bytes):
            candidate = candidate.decode("ascii", "ignore")
        text = _try_decode(data, candidate) or _try_decode(data, candidate, errors="replace")
        # A declared charset with a few bad bytes is still right (browsers replace them);
        # many replacements mean the declaration is wrong: detect instead.
        if text is not None and text.count("\ufffd") <= max(len(text) // 1000, 3):
            return text
    try:
        encoding = detect_charset(data)
        if encoding is not None:
            text = _try_decode(data, encoding)
            if text is not None:
                return text
    except ImportError:  # pragma: no cover - charset_normalizer comes with trafilatura
        pass
    return data.decode("cp1252", errors="replace")


# ---------------------------------------------------------------------------------------------
# Structured metadata: JSON-LD, OpenGraph, <html lang>
# ---------------------------------------------------------------------------------------------

_JSONLD = re.compile(
    r"<script[^>]+type\s*=\s*[\"']?application/ld\+json[\"']?[^>]*>(.*?)</script>",
    re.IGNORECASE | re.DOTALL,
)
_META_TAG = re.compile(r"<meta\s[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""([a-zA-Z:_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")
_HTML_LANG = re.compile(r"<html[^>]*\blang\s*=\s*[\"']?([A-Za-z]{2,3})(?:[-_][A-Za-z0-9]+)?", re.IGNORECASE)
_ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "opinionnewsarticle",
    "backgroundnewsarticle",
    "reviewnewsarticle",
    "blogposting",
    "liveblogposting",
    "socialmediaposting",
    "report",
    "scholarlyarticle",
    "techarticle",
}
_TAG = re.compile(r"<[^>]+>")
#: a part of each <meta> key that page_metadata reads (og:title, twitter:title,
#: article:published_time, datepublished, pubdate, author, article:author, og:locale, language,
#: article:section). A key is a lower-cased attribute value of the tag, so it is part of the
#: lower-cased tag: a tag without any of these parts is not parsed (~87 % of the tags of the 1k
#: corpus; page_metadata 0.295 -> 0.283 ms per page in extract_page, most of it the scans).
_META_KEY_PARTS = ("title", "published", "pubdate", "author", "locale", "language", "section")


@dataclass(frozen=True)
class PageMeta:
    """Metadata a page states explicitly (JSON-LD, OpenGraph, <html lang>)."""

    title: str | None = None
    published: str | None = None
    author: str | None = None
    language: str | None = None
    body: str | None = None  # JSON-LD articleBody
    section: str | None = None


def _walk_jsonld(node: Any) -> Iterator[dict]:
    if isinstance(node, list):
        for item in node:
            yield from _walk_jsonld(item)
    elif isinstance(node, dict):
        yield node
        for key in ("@graph", "mainEntity", "mainEntityOfPage", "itemListElement"):
            if key in node:
                yield from _walk_jsonld(node[key])


def _types(node: dict) -> set[str]:
    value = node.get("@type", ())
    values = value if isinstance(value, list) else [value]
    return {str(v).lower().rsplit("/", 1)[-1] for v in values}


def _person_name(value: Any) -> str | None:
    if isinstance(value, list):
        names = [n for n in (_person_name(v) for v in value) if n]
        return "; ".join(dict.fromkeys(names)) or None
    if isinstance(value, dict):
        value = value.get("name")
    if isinstance(value, str):
        value = " ".join(value.split())
        if value and not value.startswith("http") and len(value) < 120:
            return value
    return None


def _text_value(value: Any) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), None)
    if isinstance(value, str):
        value = html_lib.unescape(_TAG.sub(" ", value)) if "<" in value else value
        value = " ".join(value.split())
        return value or None
    return None


def _body_value(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if "<" in value:
        value = re.sub(r"(?i)</?(p|br|div|h[1-6]|li)\b[^>]*>", "\n", value)
        value = html_lib.unescape(_TAG.sub(" ", value))
    lines = [" ".join(line.split()) for line in value.splitlines()]
    return "\n".join(line for line in lines if line) or None


def page_metadata(html: str) -> PageMeta:
    """Explicit metadata of a page: JSON-LD article objects first, then OpenGraph/meta tags."""
    found: dict[str, str | None] = {}
    for raw in _JSONLD.findall(html):
        try:
            data = json.loads(raw.strip().rstrip(";"), strict=False)
        except ValueError:
            continue
        for node in _walk_jsonld(data):
            if not _types(node) & _ARTICLE_TYPES:
                continue
            found.setdefault("title", _text_value(node.get("headline") or node.get("name")))
            found.setdefault("published", _text_value(node.get("datePublished")))
            found.setdefault("author", _person_name(node.get("author")))
            found.setdefault("language", _text_value(node.get("inLanguage")))
            found.setdefault("body", _body_value(node.get("articleBody")))
            found.setdefault("section", _text_value(node.get("articleSection")))
            found = {k: v for k, v in found.items() if v}
    meta: dict[str, str] = {}
    for tag in _META_TAG.findall(html[:300_000]):
        lowered = tag.lower()
        if not any(part in lowered for part in _META_KEY_PARTS):
            continue  # its key, if any, is none that is read below
        attrs = {m[0].lower(): m[1] or m[2] or m[3] for m in _ATTR.findall(tag)}
        key = (attrs.get("property") or attrs.get("name") or attrs.get("itemprop") or "").lower()
        if key and attrs.get("content") and key not in meta:
            meta[key] = html_lib.unescape(attrs["content"]).strip()
    lang = _HTML_LANG.search(html[:5000])
    return PageMeta(
        title=found.get("title") or meta.get("og:title") or meta.get("twitter:title"),
        published=found.get("published")
        or meta.get("article:published_time")
        or meta.get("datepublished")
        or meta.get("pubdate"),
        author=found.get("author") or meta.get("author") or meta.get("article:author"),
        language=found.get("language")
        or (lang.group(1) if lang else None)
        or meta.get("og:locale")
        or meta.get("language"),
        body=found.get("body"),
        section=found.get("section") or meta.get("article:section"),
    )


def parse_datetime(value: str | None) -> datetime | None:
    """ISO-8601 (or YYYY-MM-DD) text -> tz-aware UTC datetime; naive values are taken as UTC."""
    if not value:
        return None
    value = value.strip().replace("Z", "+00:00")
    value = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", value)  # +0100 -> +01:00
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        match = re.match(r"(\d{4})-(\d{2})-(\d{2})", value)
        if not match:
            return None
        try:
            parsed = datetime(*map(int, match.groups()))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not 1990 <= parsed.year <= 2100:
        return None
    return parsed.astimezone(UTC)


def _not_future(value: datetime | None, fetched_at: datetime | None, max_future_s: float) -> datetime | None:
    """A page's or record's date, or None when it lies more than ``max_future_s`` after the
    fetch (a clock or template error; the article would open a window and a partition there)."""
    if value is None or fetched_at is None:
        return value
    if fetched_at.tzinfo is None:
        fetched_at = fetched_at.replace(tzinfo=UTC)
    return None if (value - fetched_at).total_seconds() > max_future_s else value


def language_code(value: str | None) -> str | None:
    """'en-US', 'de_DE', 'fr' -> ISO 639-1 two-letter code, else None."""
    if not value:
        return None
    code = re.split(r"[-_ ]", value.strip().lower(), maxsplit=1)[0]
    return code if re.fullmatch(r"[a-z]{2}", code) else None


# ---------------------------------------------------------------------------------------------
# Main text
# ---------------------------------------------------------------------------------------------


_HIDDEN_OPEN = re.compile(r"<(script|style|noscript|template|svg)\b", re.IGNORECASE)
_HIDDEN_CLOSE = {
    name: re.compile(rf"</{name}\s*>", re.IGNORECASE) for name in ("script", "style", "noscript", "template", "svg")
}


def _strip_hidden(html: str) -> str:
    """``html`` with every script/style/noscript/template/svg element replaced by a space:
    the same as ``re.sub(r"(?is)<(script|...)\b.*?</\1\\s*>", " ", html)``, but looking for
    each closing tag directly instead of trying it at every character (2x faster)."""
    parts, done, at = [], 0, 0
    while (opening := _HIDDEN_OPEN.search(html, at)) is not None:
        closing = _HIDDEN_CLOSE[opening.group(1).lower()].search(html, opening.end())
        if closing is None:  # unclosed: not removed, look for the next opening tag
            at = opening.start() + 1
            continue
        parts += (html[done : opening.start()], " ")
        done = at = closing.end()
    parts.append(html[done:])
    return "".join(parts)


def _visible_text_chars(html: str) -> int:
    """Rough size of the page's visible text (for the 'too short' fallback test)."""
    body = re.sub(r"(?s)<!--.*?-->", " ", _strip_hidden(html))
    return len(" ".join(html_lib.unescape(_TAG.sub(" ", body)).split()))


#: ``<a ...>inner</a>``: the same matches as ``(?is)<a\b[^>]*>(.*?)</a\s*>``, with the lazy
#: ``.*?`` unrolled into runs of non-``<`` characters (no attempt at every character: 1.4x faster)
_ANCHOR = re.compile(r"<[aA]\b[^>]*>([^<]*(?:<(?!/[aA]\s*>)[^<]*)*)</[aA]\s*>")


def anchor_texts(html: str, min_chars: int = 12) -> list[str]:
    """Whitespace-normalised texts of the page's links (at least ``min_chars`` long), longest
    first: the raw material of the link-density signal."""
    texts = set()
    for inner in _ANCHOR.findall(html):
        if len(inner) < min_chars:  # markup and entities only shrink into text
            continue
        text = " ".join(html_lib.unescape(_TAG.sub(" ", inner)).split())
        if len(text) >= min_chars:
            texts.add(text)
    return sorted(texts, key=len, reverse=True)


def link_density(line: str, anchors: list[str]) -> float:
    """Share of ``line``'s characters covered by link texts of the page."""
    norm = " ".join(line.split())
    if not norm:
        return 0.0
    covered = 0
    rest = norm
    for anchor in anchors:
        if len(anchor) > len(rest):
            continue
        while anchor in rest:
            covered += len(anchor)
            rest = rest.replace(anchor, " ", 1)
    return min(covered / len(norm), 1.0)


_BARE_URL = re.compile(r"(?:https?://|www\.)\S+$")


def trim_link_lines(text: str, anchors: list[str], threshold: float, keep: str | None = None) -> tuple[str, list[str]]:
    """Drop the leading and trailing runs of lines that are mostly link text (menus, related
    links, tag lists around the article). Lines inside the text are kept: a paragraph made of
    one link is often content, and so is a line equal to ``keep`` (the title, often a link to
    the article itself). Returns (text, removed lines)."""
    lines = text.splitlines()
    if not anchors or not lines or threshold > 1:
        return text, []
    keep_key = " ".join((keep or "").split()).casefold()

    def drop(line: str) -> bool:  # blank, or a line of links (only the edges are looked at)
        return not line.strip() or (
            " ".join(line.split()).casefold() != keep_key
            and not _BARE_URL.match(line.strip())  # a spelled-out source link is a reference
            and link_density(line, anchors) >= threshold
        )

    start, end = 0, len(lines)
    while start < end and drop(lines[start]):
        start += 1
    while end > start and drop(lines[end - 1]):
        end -= 1
    removed = [line for line in lines[:start] + lines[end:] if line.strip()]
    return "\n".join(lines[start:end]), removed


class _GivenTree:
    """A parsed tree handed to trafilatura for good: it prunes it in place instead of working
    on a copy (``bare_extraction`` copies a tree it is passed; ~1.1 ms per page). The
    caller must not read the tree afterwards. Unwrapped by ``_given_tree_loading``. ``html``:
    the page it was parsed from, for the rare second run of a page (``_shared_raw_tree``)."""

    __slots__ = ("tree", "html")

    def __init__(self, tree: Any, html: str) -> None:
        self.tree = tree
        self.html = html


def _trafilatura(html: Any, url: str, settings: ExtractSettings, **mode: bool) -> Any:
    """trafilatura on decoded HTML, an already parsed tree (which it copies, not changes) or
    a ``_GivenTree`` (which it may change)."""
    import trafilatura

    return trafilatura.bare_extraction(
        html,
        url=url or None,
        include_comments=False,
        include_tables=settings.include_tables,
        include_formatting=False,
        deduplicate=False,
        with_metadata=False,
        fast=settings.fast,
        **mode,
    )


def _choose_text(url: str, settings: ExtractSettings, main: str, meta: PageMeta, html: str):
    """Main text, or a fallback when trafilatura's text is short compared with the page.

    Returns (text, extractor name)."""
    if meta.body and " ".join(meta.body.split()) == " ".join(main.split()):
        return meta.body, "jsonld"  # same text, but JSON-LD kept the paragraph breaks
    if meta.body and len(meta.body) > settings.jsonld_min_ratio * len(main):
        # The publisher's own article body is much longer: trafilatura missed part of the
        # article (script-rendered pages, paywall teasers, split layouts).
        return meta.body, "jsonld"
    if len(main) >= settings.fallback_max_chars:
        return main, "trafilatura"
    page_chars = _visible_text_chars(html)
    if page_chars and len(main) >= settings.fallback_min_share * page_chars and main:
        return main, "trafilatura"
    candidates = [(main, "trafilatura")]
    if meta.body:
        candidates.append((meta.body, "jsonld"))
    recall = _trafilatura(html, url, settings, favor_recall=True)
    if recall is not None and recall.text:
        candidates.append((recall.text, "trafilatura_recall"))
    # Longest wins, but an alternative must beat the main text clearly (x1.5) to replace it.
    best_text, best_name = main, "trafilatura"
    for text, name in candidates[1:]:
        if len(text) > 1.5 * len(best_text):
            best_text, best_name = text, name
    return best_text, best_name


# Every byline XPath of trafilatura's author heuristic selects an <author> element, an element
# with a <rel> child, or an element whose class, id, rel, itemprop, data-testid or
# data-component attribute contains one of these words. A page without any of them has no
# byline to find, and the search (~14 ms per page, regex XPaths over every element) is
# skipped; on 1,611 pages (trafilatura_eval + l3s_gn1) it skips 45 % and never misses.
_BYLINE_WORDS = (
    "uthor", "yline", "byl", "BBL", "username", "screenname", "writer", "channel-name",
    "posted-by", "submitted-by", "journalist-name", "zuozhe", "bianji", "xiaobian",
)  # fmt: skip
_BYLINE_ATTRIBUTES = frozenset({"class", "id", "rel", "itemprop", "data-testid", "data-component"})
_BYLINE_ELEMENT = re.compile(r"<(?:author|rel)\b", re.IGNORECASE)


def _scans_by_part(words: tuple[str, ...], parts: tuple[str, ...]) -> dict[str, tuple[tuple[str, int], ...]]:
    """What to search for ``words``: each word containing one of ``parts`` is found through
    that part (with the part's offset in the word), every other word through itself."""
    scans: dict[str, tuple[tuple[str, int], ...]] = {}
    for word in words:
        key = next((part for part in parts if part in word), word)
        scans[key] = (*scans.get(key, ()), (word, word.index(key)))
    return scans


# Words sharing a part are found in one scan of the page: a scan reads the whole page when the
# part is absent (~0.15 ms for a page of the 1k corpus), while "name" occurs ~60 times per page,
# each occurrence tested for the four words ending in it (14 -> 9 scans; 0.52 -> 0.44 ms per
# page searched, in extract_page on the 1k corpus).
_BYLINE_SCANS = _scans_by_part(_BYLINE_WORDS, ("name", "ed-by", "bian"))


def _may_have_byline(html: str) -> bool:
    """False when no element of the page can match trafilatura's byline XPaths (see above).
    Each occurrence of a word is tested once, found through its part in ``_BYLINE_SCANS``."""
    if _BYLINE_ELEMENT.search(html):
        return True
    for key, words in _BYLINE_SCANS.items():
        found = html.find(key)
        while found != -1:
            for word, offset in words:
                at = found - offset
                if at >= 0 and html.startswith(word, at):
                    tag_start = html.rfind("<", 0, at)
                    if tag_start > html.rfind(">", 0, at) and _ends_byline_attribute(html, tag_start, at):
                        return True
            found = html.find(key, found + 1)
    return False


_NAME_STOP = frozenset("\"'<>/=")


def _ends_byline_attribute(html: str, tag_start: int, at: int) -> bool:
    """Whether ``html[tag_start:at]`` (inside one tag) ends in an attribute of
    ``_BYLINE_ATTRIBUTES`` and the start of its value: ``name = "value`` or ``name=value``,
    spaces allowed around "=", the value free of quotes, <, > and "=". A regex search for
    that pattern tries every position from the tag start, and a "tag" can be a whole script
    (a "<" in code, JSON-LD saying "author" 100 KB later): 1.6 ms per page on
    trafilatura_eval. Read backwards from ``at`` instead, the time does not depend on the
    tag's length (tests/test_extract.py checks both give the same answers)."""
    # the value holds none of "'<>=, so it starts after the last of them (no < or > is
    # between the tag start and ``at``)
    stop = max(html.rfind(char, tag_start, at) for char in "\"'=")
    if stop <= tag_start:
        return False
    equals = stop
    if html[stop] != "=":  # an opening quote: only spaces may separate it from the "="
        equals -= 1
        while equals > tag_start and html[equals].isspace():
            equals -= 1
        if html[equals] != "=":
            return False
    end = equals
    while end > tag_start and html[end - 1].isspace():
        end -= 1
    start = end
    while start > tag_start and html[start - 1] not in _NAME_STOP and not html[start - 1].isspace():
        start -= 1
    return start < end and html[start:end].lower() in _BYLINE_ATTRIBUTES


def _author_heuristic(tree: Any) -> str | None:
    """trafilatura's author heuristic (byline XPaths outside comments, dates, figures, ...)
    without its deep copy of the whole page.

    trafilatura prunes a copy of the tree, then takes the first byline candidate with 3-119
    characters of text. Pruning only removes whole subtrees and the XPaths test names and
    attributes, so the same candidates are found on the original tree minus those inside a
    pruned subtree; a candidate that itself contains a pruned part (rare) is left to
    trafilatura's own function, so the result is the same in every case."""
    from trafilatura.json_metadata import normalize_authors
    from trafilatura.metadata import extract_author
    from trafilatura.utils import trim
    from trafilatura.xpaths import AUTHOR_XPATHS

    discarded = _author_discard_test(tree)
    for expression in AUTHOR_XPATHS:
        for elem in expression(tree):
            if discarded(elem) or any(discarded(a) for a in elem.iterancestors()):
                continue
            if any(discarded(d) for d in elem.iterdescendants()):
                return extract_author(tree)
            content = trim(" ".join(elem.itertext()))
            if content and 2 < len(content) < 120:
                return normalize_authors(None, content)
    return None


_STEP = re.compile(r"\s*(\.?)//([A-Za-z_*][\w.-]*)\s*(.*?)\s*", re.DOTALL)
_NAME_UNION = re.compile(r"\s*\(((?:\.?//[\w-]+\|)+\.?//[\w-]+)\)")


def _as_self_tests(path: str) -> list[tuple[str, bool]] | None:
    """``(.)//NAME[...][...]`` branches (joined by "|") as tests of one element:
    ("self::NAME[...][...]", whether the branch is relative, so never selects its context
    element). None when a branch has another shape (more steps, functions, ...)."""
    branches, depth, quote, start = [], 0, "", 0
    for at, char in enumerate(path):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(path[start:at])
            start = at + 1
    branches.append(path[start:])
    expanded = []
    for branch in branches:  # "(.//a|.//b)[...]", as tag_union_xpath writes: ".//a[...]", ".//b[...]"
        union = _NAME_UNION.match(branch)
        if union is None:
            expanded.append(branch)
        else:
            expanded += [name + branch[union.end() :] for name in union.group(1).split("|")]
    tests = []
    for branch in expanded:
        match = _STEP.fullmatch(branch)
        if match is None:
            return None
        relative, name, predicates = match.groups()
        depth = 0
        for char in predicates:  # predicates only: nothing outside brackets
            depth += (char == "[") - (char == "]")
            if depth == 0 and char not in "]" and not char.isspace():
                return None
        tests.append((f"self::{name}{predicates}", bool(relative)))
    return tests


_discard_tests: dict[tuple[str, ...], list[tuple[Any, bool]] | None] = {}


def _author_discard_test(tree: Any) -> Any:
    """Whether an element of ``tree`` is one trafilatura's author search discards (an element
    of AUTHOR_DISCARD_XPATHS evaluated on ``tree``). trafilatura evaluates those XPaths over
    the whole page (~2 ms on the pages searched); the byline candidates, their ancestors
    and descendants are a few dozen elements, so each is tested alone, once
    (tests/test_extract.py checks the answers against the whole-page sets)."""
    from trafilatura.xpaths import AUTHOR_DISCARD_XPATHS, REGEXP_NS

    key = tuple(expression.path for expression in AUTHOR_DISCARD_XPATHS)
    if key not in _discard_tests:
        parts = [_as_self_tests(path) for path in key]
        _discard_tests[key] = (
            None
            if any(part is None for part in parts)
            else [
                (etree.XPath(test, namespaces={"re": REGEXP_NS}), relative) for part in parts for test, relative in part
            ]
        )
    tests = _discard_tests[key]
    if tests is None:  # another shape: the whole-page sets, as trafilatura does
        return {elem for expression in AUTHOR_DISCARD_XPATHS for elem in expression(tree)}.__contains__
    known: dict[Any, bool] = {}

    def discarded(elem: Any) -> bool:
        found = known.get(elem)
        if found is None:
            found = known[elem] = any(test(elem) for test, relative in tests if not (relative and elem is tree))
        return found

    return discarded


#: the <head> tags that trafilatura's category fallback reads (``extract_catstags``)
_CATEGORY_META = etree.XPath('.//meta[@property="article:section" or contains(@name, "subject")][@content]')


def _categories(tree: Any, html: str | None) -> list[str]:
    """trafilatura's category heuristic. Its link XPaths (regex tests over the whole page) only
    keep links whose href contains "/categor"; on a page without that string only its
    fallback, the <head> meta tags (article:section, *subject*), can answer, so it runs on
    a page made of a copy of <head> alone: same result, ~2 ms less per page. Most pages have
    no such tag, and then the answer is [] without the copy (~1 ms less per page searched)."""
    from lxml import html as lxml_html
    from trafilatura.metadata import extract_catstags

    if html is None or "/categor" in html:
        return extract_catstags("category", tree)
    head = tree.find("head")
    if head is None or not _CATEGORY_META(head):
        return []
    page = lxml_html.Element("html")
    page.append(copy.deepcopy(head))
    return extract_catstags("category", page)


def _heuristic_metadata(
    tree: Any, url: str, *, title: bool, date: bool, author: bool, html: str | None = None
) -> dict[str, Any] | None:
    """trafilatura's metadata heuristics, only the parts asked for: title (<h1>, <title>),
    date (htmldate, fast mode), author (bylines); categories always. The same values as
    ``trafilatura.metadata.extract_metadata`` for these fields, without its work on tags,
    licence, site name and, when not asked for, title, date and author. The author search is
    most of the cost (~14 of ~18 ms per page, measured on trafilatura_eval) and is skipped
    when the page has no attribute a byline XPath could match (``_may_have_byline``)."""
    from htmldate import find_date
    from trafilatura import metadata as tm
    from trafilatura.settings import set_date_params

    if tree is None or isinstance(tree, str):
        return None
    try:
        found = tm.examine_meta(tree)
        if found.author and " " not in found.author:  # as extract_metadata: a lone word is no name
            found.author = None
        try:
            found = tm.extract_meta_json(tree, found)
        except Exception:  # noqa: BLE001 - trafilatura guards its JSON-LD parser the same way
            pass
        if title and not found.title:
            found.title = tm.extract_title(tree)
        if author and not found.author and (html is None or _may_have_byline(html)):
            found.author = _author_heuristic(tree)
        if date:
            if not found.url:
                found.url = tm.extract_url(tree, url or None)
            params = {**set_date_params(False), "url": found.url}
            found.date = find_date(tree, **params)
        if not found.categories:
            found.categories = _categories(tree, html)
        found.clean_and_trim()
    except Exception:  # noqa: BLE001 - metadata is optional; text extraction already worked
        return None
    return {
        "title": found.title if title else None,
        "date": found.date if date else None,
        "author": found.author if author else None,
        "categories": found.categories,
    }


_lookup_installed = False


def _fast_element_lookup() -> None:
    """Give trafilatura's HTML parser (and so every copy of a tree it parses) an element
    class lookup done in C, with the same classes as lxml.html's own.

    lxml.html looks up the Python class of every element proxy in Python
    (``HtmlElementClassLookup.lookup``): 2.25 million calls for 600 trafilatura_eval pages,
    since trafilatura copies and walks each tree several times. A namespace lookup with
    lxml.html's special classes (form, input, select, textarea, label) over a default of
    ``HtmlElement`` answers the same in C: 33 thousand Python calls, ~1 ms less per page,
    texts unchanged (tests/test_extract.py). Installed once per process, on the parser
    object trafilatura already uses; nothing else about parsing changes."""
    global _lookup_installed
    if _lookup_installed:
        return
    from lxml import html as lxml_html
    from trafilatura import utils

    lookup = etree.ElementNamespaceClassLookup(
        etree.ElementDefaultClassLookup(
            element=lxml_html.HtmlElement,
            comment=lxml_html.HtmlComment,
            pi=lxml_html.HtmlProcessingInstruction,
            entity=lxml_html.HtmlEntity,
        )
    )
    special = lookup.get_namespace(None)
    for name, cls in lxml_html.HtmlElementClassLookup._default_element_classes.items():
        special[name] = cls
    utils.HTML_PARSER.set_element_class_lookup(lookup)
    _lookup_installed = True


# ``re:test(NODES, 'pattern'[, 'flags'])`` inside an XPath: NODES a union of attributes.
_REGEX_TEST = re.compile(r"re:test\((@[\w-]+(?:\s*\|\s*@[\w-]+)*)\s*,\s*'([^']*)'(?:\s*,\s*'([^']*)')?\)")


def guarded_regex_xpath(path: str) -> str:
    """``path`` with each ``re:test(@attr, 'pattern')`` whose pattern cannot match an empty
    string written as ``(@attr and re:test(@attr, 'pattern'))``.

    lxml calls back into Python for every re:test an element reaches (~1 us each, most of
    the cost of trafilatura's content, comment and discard XPaths), also for elements
    without the attribute, where the test reads an empty string. Such a test is false
    whenever its pattern needs at least one character, so asking XPath first whether the
    attribute exists (in C) gives the same answer without the call. re:test reads the
    first node of its node set, or "" when it is empty; ``@id|@class`` is guarded as a
    whole. Patterns that can match "" are left as they are."""

    def guard(match: re.Match) -> str:
        nodes, pattern, flags = match.groups()
        try:
            empty_matches = re.search(pattern, "", re.IGNORECASE if flags and "i" in flags else 0)
        except re.error:
            return match.group(0)
        return match.group(0) if empty_matches is not None else f"(({nodes}) and {match.group(0)})"

    return _REGEX_TEST.sub(guard, path)


# ``.//*[self::div or self::p ...]``: every descendant element, then a test of its name.
_TAG_TEST_STEP = re.compile(r"(\.?)//\*\[\s*(self::[\w-]+(?:\s+or\s+self::[\w-]+)*)\s*\]")
# What a predicate may use for the rewrite below: functions that never return a number, so
# that the predicate is a test and not a position.
_TEST_FUNCTIONS = frozenset({"contains", "starts-with", "translate", "not", "re:test", "normalize-space", "string"})


def _predicates_end(path: str, at: int) -> int | None:
    """Index after the run of predicates ``[...][...]`` starting at ``at``, or None when one of
    them could be positional (a number, arithmetic, a function outside ``_TEST_FUNCTIONS``)."""
    while at < len(path) and path[at] == "[":
        depth, i, quote = 0, at, None
        while i < len(path):
            char = path[i]
            if quote:
                quote = None if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        else:
            return None
        body = re.sub(r"'[^']*'|\"[^\"]*\"", "''", path[at + 1 : i])
        functions = re.findall(r"([\w:-]+)\s*\(", body)  # and "and (", "or ("
        if any(name not in _TEST_FUNCTIONS and name not in ("and", "or") for name in functions) or re.search(
            r"(?<![\w-])\d|\+|(?<![/:])\*|\bdiv\b|\bmod\b|\[", body
        ):
            return None
        at = i + 1
    return at


def tag_union_xpath(path: str) -> str:
    """``path`` with each step ``.//*[self::a or self::b][TESTS]`` written as
    ``(.//a|.//b)[TESTS]`` (``//*`` alike), when the step ends the path (or a union member) and TESTS are
    tests, never positions.

    libxml2 evaluates a predicate for every element it visits (~0.25 us each for the
    ``self::`` or-chain alone); ``.//a`` selects by name while it walks. Both forms select the
    same elements in document order: a test does not depend on the context position, so
    filtering the union of the named elements equals testing every element's name first.
    Positional predicates (``[1]``) would count within each parent in the step form and
    within the whole set in the union form, so those steps are left as they are, as is any
    step followed by a further step."""
    out, at = [], 0
    for match in _TAG_TEST_STEP.finditer(path):
        if match.start() < at:
            continue
        before = path[: match.start()].rstrip()
        end = _predicates_end(path, match.end())
        if before[-1:] not in ("", "(", "|") or end is None:
            continue
        if path[end:].lstrip()[:1] not in ("", "|", ")"):
            continue
        relative, tests = match.groups()
        names = re.findall(r"self::([\w-]+)", tests)
        out.append(path[at : match.start()])
        out.append("(" + "|".join(f"{relative}//{name}" for name in names) + ")" + path[match.end() : end])
        at = end
    out.append(path[at:])
    return "".join(out)


def rewritten_xpath(path: str) -> str:
    """The form of a trafilatura XPath that storybeam installs: regex tests guarded
    (``guarded_regex_xpath``), name tests as unions (``tag_union_xpath``)."""
    return tag_union_xpath(guarded_regex_xpath(path))


_xpaths_guarded = False


def _guard_trafilatura_xpaths() -> None:
    """Swap every XPath of trafilatura (and of the modules it imports them into) for its
    ``rewritten_xpath`` form where that differs, once per process. Lists are changed in
    place, so every module holding the list sees the new objects; single XPaths are
    replaced wherever a trafilatura module holds them. tests/test_extract.py compares each
    installed XPath with its original, on generated and real pages.

    Where the rewritten path is in the subset ``fastxpath.compile_selector`` evaluates, the
    installed object is that Python selector (same ``path`` and call), else an lxml XPath.

    Measured with the variants alternating every 50 pages in one process: the regex guards,
    ~6 % less CPU in trafilatura.extract (400 pages; the whole-tree XPath evaluations alone
    ~22 % less); the name unions on top of them, 31.9 -> 30.0 ms/page (-6 %); the Python
    selectors on top of both, 25.3 -> 23.5 ms/page (-7 %; extract_html 33.2 -> 30.5, -8 %).
    All 990 trafilatura_eval pages, twice; texts (and extract_html's title, dates, author and
    categories) identical on all 990."""
    global _xpaths_guarded
    if _xpaths_guarded:
        return
    import trafilatura  # noqa: F401 - loads the modules walked below
    from trafilatura import xpaths

    # original -> replacement, and replacement -> itself: a list shared by several modules
    # is seen again (keys keep the originals alive)
    replaced: dict[Any, Any] = {}

    def guarded(expression: Any) -> Any:
        if not isinstance(expression, etree.XPath):
            return expression
        if expression not in replaced:
            path = rewritten_xpath(expression.path)
            new = compile_selector(path)
            if new is None and path != expression.path:
                try:
                    new = etree.XPath(path, namespaces={"re": xpaths.REGEXP_NS})
                except etree.XPathSyntaxError:
                    pass
            new = new or expression
            replaced[expression] = replaced[new] = new
        return replaced[expression]

    for name, module in list(sys.modules.items()):
        if name != "trafilatura" and not name.startswith("trafilatura."):
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, list) and any(isinstance(item, etree.XPath) for item in value):
                value[:] = [guarded(item) for item in value]
            elif isinstance(value, etree.XPath):
                setattr(module, attr, guarded(value))
    _xpaths_guarded = True


_CONTROL_BYTES = bytes(c for c in range(0x20) if c not in b"\t\n\r")


def may_hold_invalid_xml_chars(text: str) -> bool:
    """False when ``text`` has none of the characters trafilatura's INVALID_XML_CHARS removes
    (C0 controls but tab, line feed and carriage return; U+FFFE; U+FFFF). ``bytes.translate``
    scans a 130 KB page in ~0.25 ms where the regex takes ~0.9 ms. A character test on a str
    whose characters are all narrower than U+FFFE returns at once."""
    if "\ufffe" in text or "\uffff" in text:
        return True
    data = text.encode("utf-8", "surrogatepass")  # each control character is one byte here
    return len(data.translate(None, _CONTROL_BYTES)) != len(data)


class _InvalidXmlChars:
    """Stands in for trafilatura.utils.INVALID_XML_CHARS, which load_html's repair step
    substitutes over the whole page: the same substitution, skipped when a fast scan finds
    none of its characters (almost every page)."""

    def __init__(self, pattern: re.Pattern) -> None:
        self._pattern = pattern  # its other attributes (pattern, flags, search ...) pass through

    def sub(self, repl: Any, string: Any, count: int = 0) -> Any:
        if isinstance(string, str) and not may_hold_invalid_xml_chars(string):
            return string
        return self._pattern.sub(repl, string, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pattern, name)


def _fast_html_loading() -> None:
    """trafilatura's load_html, same trees in less time (3.6 -> ~2.5 ms per page):
    - its repair step's invalid-character substitution gets a fast scan (``_InvalidXmlChars``);
    - lxml parses a str as UTF-8 bytes, with the parser's declared UTF-8 (~0.45 ms less per page
      than lxml's own str path). A str lxml refuses (an XML encoding declaration) made
      load_html parse exactly these bytes anyway. A str that cannot be encoded (lone
      surrogates) keeps lxml's str path."""
    import lxml.html
    import trafilatura.utils as utils

    if isinstance(utils.INVALID_XML_CHARS, re.Pattern):
        utils.INVALID_XML_CHARS = _InvalidXmlChars(utils.INVALID_XML_CHARS)
    parse, parser = lxml.html.fromstring, utils.HTML_PARSER

    def fromstring(html: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(html, str) and not args and kwargs.get("parser") is parser:
            try:
                html = html.encode("utf-8")
            except UnicodeEncodeError:
                pass
        return parse(html, *args, **kwargs)

    utils.fromstring = fromstring


def _given_tree_loading() -> None:
    """``bare_extraction`` loads its input with ``trafilatura.core.load_html`` and copies a
    tree it was passed; a ``_GivenTree`` is unwrapped there instead, so it is not copied."""
    import trafilatura.core as core

    load = core.load_html

    def load_html(html: Any, *args: Any, **kwargs: Any) -> Any:
        return html.tree if type(html) is _GivenTree else load(html, *args, **kwargs)

    core.load_html = load_html


class _CleanedLater:
    """Stands in for the pre-conversion backup of the cleaned tree that
    ``trafilatura.core._prepare_tree`` copies on every page (~0.15 ms per page of the 1k
    corpus). The backup is read only by the jusText check of ``compare_extraction`` (unclean or
    short extractions: ~3 % of pages) and, with comments on, by the thread-forum path, which
    copies it. Both get ``tree_cleaning(copy(tree))`` made then: the raw tree is not changed
    before (readability works on a copy of it), and the cleaning is the one that made the
    discarded backup, so the tree is the same."""

    __slots__ = ("_tree", "_options")

    def __init__(self, tree: Any, options: Any) -> None:
        self._tree = tree
        self._options = options

    def build(self) -> Any:
        import trafilatura.core as core

        if getattr(_raw_tree_state, "spent", None) is not None:
            raise _RawTreeSpent  # readability has changed the raw tree (``_shared_raw_tree``)
        return core.tree_cleaning(copy.copy(self._tree), self._options)

    def __copy__(self) -> Any:
        return self.build()


#: trafilatura's functions that ``_lazy_cleaned_backup`` replaced, as shipped (for the tests)
SHIPPED_BACKUP_FUNCTIONS: dict[str, Any] = {}


def _lazy_cleaned_backup() -> None:
    """``trafilatura.core._prepare_tree`` without its copy of the cleaned tree: the backup is a
    ``_CleanedLater``, which ``external.justext_rescue`` (its reader) builds when it runs."""
    import trafilatura.core as core
    import trafilatura.external as external

    needed = ((core, "_prepare_tree"), (core, "tree_cleaning"), (core, "convert_tags"), (external, "justext_rescue"))
    if not all(hasattr(module, name) for module, name in needed):
        return  # a trafilatura laid out otherwise keeps its own copies
    SHIPPED_BACKUP_FUNCTIONS.update(_prepare_tree=core._prepare_tree, justext_rescue=external.justext_rescue)

    def prepare_tree(tree: Any, options: Any, url: str | None) -> tuple[Any, Any]:
        cleaned = core.tree_cleaning(copy.copy(tree), options)
        return core.convert_tags(cleaned, options, url), _CleanedLater(tree, options)

    rescue = external.justext_rescue

    def justext_rescue(tree: Any, options: Any) -> Any:
        return rescue(tree.build() if type(tree) is _CleanedLater else tree, options)

    core._prepare_tree = prepare_tree
    external.justext_rescue = justext_rescue


class _RawTreeSpent(Exception):
    """trafilatura was about to read a raw tree that readability has changed
    (``_shared_raw_tree``): its ``bare_extraction`` runs the page again without that speed-up."""


#: per thread: ``spent``, the raw tree readability is working on; ``stock``, True while a page
#: runs again with trafilatura's own copies
_raw_tree_state = threading.local()


def _shared_raw_tree() -> None:
    """``trafilatura.core._extract_and_compare`` without its copy of the raw tree for
    readability (which changes the tree it is given), when nothing reads the raw tree after
    it. Its caller reads the raw tree again only for
    - the baseline rescue: a text shorter than ``min_extracted_size``;
    - the recall escalation: a text shorter than ``ESCALATION_MAX_LENGTH``, which measures the
      page (``html2txt``, which only reads the tree), then retries on the raw tree when the text
      is less than ``ESCALATION_PAGE_SHARE`` of it.
    So a page whose own extraction is not that short hands readability the tree itself; for a
    text under ``ESCALATION_MAX_LENGTH`` the page is measured first and the caller's measure
    answered from it. Of the 1k corpus's extractions, 54 % are long enough and 36 % more are
    measured and long enough (~1.1 ms per page for the copy). Should readability's or jusText's
    shorter text be chosen so that the tree would be read after all, or the jusText check need
    the cleaned backup of the raw tree (``_CleanedLater``), the page is extracted again the
    shipped way (``_RawTreeSpent``, caught by ``bare_extraction``, which every caller of
    trafilatura goes through; 5 of the 1k corpus's pages). Balanced focus only: the recall
    retry reads its tree after this step whatever its length."""
    import trafilatura.core as core

    needed = (
        "_extract_and_compare", "extract_content", "compare_extraction", "html2txt", "bare_extraction",
        "ESCALATION_MAX_LENGTH", "ESCALATION_PAGE_SHARE",
    )  # fmt: skip
    if not all(hasattr(core, name) for name in needed):
        return  # a trafilatura laid out otherwise keeps its own copy
    # the module (``trafilatura.baseline`` is also the name of a function in the package)
    baseline = importlib.import_module("trafilatura.baseline")
    shipped = SHIPPED_BACKUP_FUNCTIONS["_extract_and_compare"] = core._extract_and_compare

    def measure(content: Any, clean: bool = True) -> str:
        return baseline.html2txt(content, clean)  # fasthtmlprocessing's while installed

    def html2txt(content: Any, clean: bool = True) -> str:
        measured = getattr(_raw_tree_state, "measured", None)
        if measured is not None and content is measured[0] and clean:
            _raw_tree_state.measured = None
            return measured[1]
        return measure(content, clean)

    def reads_tree_after(text: str, page: str | None, options: Any) -> bool:
        """Whether ``trafilatura_sequence`` reads the raw tree after this step."""
        if len(text) < options.min_extracted_size:
            return True
        if len(text) < core.ESCALATION_MAX_LENGTH:
            return page is None or len(text) < core.ESCALATION_PAGE_SHARE * len(page)
        return False

    def extract_and_compare(cleaned_tree: Any, backup: Any, tree: Any, options: Any) -> tuple[Any, str]:
        if options.fast or options.focus != "balanced" or getattr(_raw_tree_state, "stock", False):
            return shipped(cleaned_tree, backup, tree, options)
        _raw_tree_state.measured = None
        postbody, text = core.extract_content(cleaned_tree, options)
        page = None
        if options.min_extracted_size <= len(text) < core.ESCALATION_MAX_LENGTH:
            page = measure(tree)
            _raw_tree_state.measured = (tree, page)
        if reads_tree_after(text, page, options):
            return core.compare_extraction(backup, copy.copy(tree), postbody, text, options)
        _raw_tree_state.spent = tree
        try:
            postbody, text = core.compare_extraction(backup, tree, postbody, text, options)
        finally:
            _raw_tree_state.spent = None
        if reads_tree_after(text, page, options):
            _raw_tree_state.measured = None
            raise _RawTreeSpent
        return postbody, text

    shipped_bare = core.bare_extraction

    @functools.wraps(shipped_bare)
    def bare_extraction(*args: Any, **kwargs: Any) -> Any:
        try:
            return shipped_bare(*args, **kwargs)
        except _RawTreeSpent:
            # the raw tree readability changed is to be read after all: the page again, with
            # trafilatura's own copies (a tree handed over is gone; its page is parsed again)
            if args and type(args[0]) is _GivenTree:
                args = (args[0].html, *args[1:])
            elif type(kwargs.get("filecontent")) is _GivenTree:
                kwargs["filecontent"] = kwargs["filecontent"].html
            _raw_tree_state.stock = True
            try:
                return shipped_bare(*args, **kwargs)
            finally:
                _raw_tree_state.stock = False

    from transforms.fasthtmlprocessing import holders

    for module, attr in list(holders(shipped_bare)):  # trafilatura.bare_extraction, core's own, ...
        setattr(module, attr, bare_extraction)
    core._extract_and_compare = extract_and_compare
    core.html2txt = html2txt


_speedups_installed = False
_install_lock = threading.Lock()  # DoFn threads may extract their first pages at once


def speed_up_trafilatura() -> None:
    """Install, once per process, the speed-ups that keep trafilatura's results: the C
    element-class lookup (``_fast_element_lookup``), faster HTML loading
    (``_fast_html_loading``), no copy of a tree handed over (``_given_tree_loading``) nor of the
    cleaned tree's backup until it is read (``_lazy_cleaned_backup``) nor of the raw tree for
    readability when nothing reads it after (``_shared_raw_tree``), the
    rewritten XPaths, most of them evaluated in Python (``_guard_trafilatura_xpaths``),
    jusText's paragraphs made without SAX (``fastjustext``), readability's faster methods
    (``fastreadability``) and the faster page measure, tree cleaning and link-density tests of
    ``fasthtmlprocessing``. extract_html calls it; benchmarks/throughput.py too, for its plain
    loop with the same speed-ups."""
    global _speedups_installed
    if _speedups_installed:
        return
    with _install_lock:
        if not _speedups_installed:
            _fast_element_lookup()
            _fast_html_loading()
            _given_tree_loading()
            _lazy_cleaned_backup()
            _guard_trafilatura_xpaths()
            from transforms import fasthtmlprocessing, fastjustext, fastreadability

            fastjustext.install()
            fastreadability.install()
            fasthtmlprocessing.install()
            _shared_raw_tree()  # after them: it answers with their page measure
            _speedups_installed = True


_heap_frozen = False  # frozen after importing the extraction libraries
_heap_frozen_bare = False  # frozen without them (a Beam worker whose pages go to the child)


#: libraries whose log lines about a page ("discarding data", "empty HTML tree") say what the
#: page's row in failures/ says with a reason code; in extraction children and workers they
#: went to standard error with Python's last-resort handler
_EXTRACTION_LOGGERS = ("trafilatura", "htmldate", "courlan", "justext", "readability", "charset_normalizer")


def quiet_extraction_libraries() -> None:
    """Only CRITICAL lines of the extraction libraries are logged."""
    import logging

    for name in _EXTRACTION_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def freeze_startup_heap(libraries: bool = True) -> None:
    """Once per process, after the imports: import the extraction libraries, install the
    speed-ups, then move every object alive now into the garbage collector's permanent
    generation (``gc.freeze``). Modules, classes and compiled patterns live as long as the
    process, yet each full collection walked all of them again (full collections per
    1,000-page run on one worker: 0.55 -> 0.31 s). ``libraries=False`` freezes what is alive
    without importing them: a Beam worker that hands its pages to the extraction child need
    not load trafilatura (~1 s and ~100 MB per worker); if it later extracts a page itself,
    that page freezes again with them. Two threads that set up at once may both freeze:
    harmless."""
    global _heap_frozen, _heap_frozen_bare
    if _heap_frozen or (_heap_frozen_bare and not libraries):
        return
    import gc

    if libraries:
        import htmldate  # noqa: F401 - imported here so that its objects are frozen too
        import trafilatura  # noqa: F401

        speed_up_trafilatura()
        quiet_extraction_libraries()
        _load_justext_stoplist()
    gc.collect()
    gc.freeze()
    if libraries:
        _heap_frozen = True
    else:
        _heap_frozen_bare = True


def _load_justext_stoplist() -> None:
    """Load what trafilatura's jusText fallback reads on its first page: the words of all
    100 jusText stoplists (``jt_stoplist_init``) and jusText's lower-cased set of them
    (``define_stoplist``, cached by the tuple). Done here, with the imports, they are frozen
    with them, and the first page that reaches jusText does not pay ~0.15 s for them (an
    extraction child started ahead loads them before the run)."""
    from justext.core import define_stoplist
    from trafilatura import external

    define_stoplist(external.JT_STOPLIST or external.jt_stoplist_init())


def extract_html(html: str, url: str, settings: ExtractSettings) -> dict[str, Any]:
    """Decoded HTML -> plain dict of text and metadata (picklable, crosses process borders).

    The page is parsed once: the metadata heuristics read the tree (without changing it),
    then trafilatura's extraction is given it for good (``_GivenTree``). The rare second,
    recall-oriented extraction (``_choose_text``) parses the page again."""
    from trafilatura.utils import load_html

    speed_up_trafilatura()
    tree = load_html(html)
    meta = page_metadata(html) if settings.use_structured_data else PageMeta()
    found: dict[str, Any] = {}
    # The heuristics (title from <h1>/<title>, date by htmldate, author) only run when the
    # page states no title or date, and only for the fields it does not state.
    allowed = settings.metadata_heuristics
    title_wanted = not meta.title and "title" in allowed
    date_wanted = not meta.published and "date" in allowed
    if title_wanted or date_wanted:
        author_wanted = not meta.author and "author" in allowed
        found = (
            _heuristic_metadata(tree, url, title=title_wanted, date=date_wanted, author=author_wanted, html=html) or {}
        )
    result = _trafilatura(_GivenTree(tree, html) if tree is not None else html, url, settings)
    main = (result.text if result is not None else None) or ""
    text, extractor = _choose_text(url, settings, main, meta, html)
    title = meta.title or found.get("title")
    text, removed = trim_link_lines(text, anchor_texts(html), settings.link_density_max, title)
    categories = [c for c in (found.get("categories") or []) if isinstance(c, str)]
    if meta.section and meta.section not in categories:
        categories.append(meta.section)
    return {
        "text": text,
        "extractor": extractor,
        "title": title,
        "removed": removed,
        "title_fallback": found.get("title"),
        "published": meta.published,
        "date_heuristic": found.get("date"),
        "author": meta.author or found.get("author"),
        "language": meta.language,
        "categories": categories,
    }


# ---------------------------------------------------------------------------------------------
# Time limit: SIGALRM on the main thread, a killable child process elsewhere
# ---------------------------------------------------------------------------------------------


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise ExtractTimeout in this (main) thread after ``seconds``. An outer itimer (e.g.
    pytest-timeout) is re-armed afterwards with its remaining time."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise _timed_out(seconds)

    previous_handler = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            remaining = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_interval)


@contextmanager
def _thread_deadline(seconds: float) -> Iterator[None]:
    """Raise ExtractTimeout in this thread after ``seconds``, as an asynchronous exception
    (delivered between bytecodes, like a signal handler on the main thread)."""
    import ctypes

    ident = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    done = threading.Event()
    state = {"running": True, "fired": False}

    def watch() -> None:
        # an exception raised inside a finaliser or weakref callback is swallowed there:
        # keep raising every 0.1 s until the guarded block has ended
        delay = seconds
        while not done.wait(delay):
            with lock:
                if not state["running"]:
                    return
                state["fired"] = True
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, ctypes.py_object(ExtractTimeout))
            delay = 0.1

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        with lock:
            state["running"] = False
            if state["fired"]:  # fired but maybe not delivered yet: it must not surface later
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, None)


def _write_frame(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(data)))
    stream.write(data)
    stream.flush()


def _too_short(text: str, settings: ExtractSettings) -> bool:
    """Whether a main text (stripped) is below ``min_text_chars``: extract_document's test,
    which extract_page answers ahead for it (the page's visible text is known only there)."""
    return len(text) < max(settings.min_text_chars, 1)


def extract_page(page: bytes | str, charset: str | None, url: str, settings: ExtractSettings) -> dict[str, Any]:
    """A page as fetched -> ``extract_html``'s dict, in the process that extracts: the page
    is decoded there (``decode_html``), so a Beam worker hands the extraction child the bytes
    it read (pickled as a copy) instead of decoding them and pickling the text (0.18 -> 0.03 ms
    per page of the benchmark corpus in the worker; the child's share hardly changes). Adds
    ``empty`` (why there is nothing to extract) or, when the main text is shorter than
    ``min_text_chars``, ``visible_text`` (whether the page shows any text)."""
    html = page if isinstance(page, str) else decode_html(page, charset)
    if not html.strip():
        return {"empty": "no content after decoding"}
    found = extract_html(html, url, settings)
    if _too_short((found["text"] or "").strip(), settings):
        found["visible_text"] = bool(_visible_text_chars(html))
    return found


def _child_main() -> None:
    """Extraction child (``python -c``): length-prefixed pickles on stdin/stdout,
    (page, charset, url, settings) in, ('ok' | 'error', value) out (``extract_page``).
    Started by ProcessExtractor."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of libraries must not corrupt the frames
    inp = sys.stdin.buffer
    freeze_startup_heap()  # imports trafilatura before the memory limit is set

    try:
        import resource

        limit = int(sys.argv[1]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError, IndexError):  # pragma: no cover - non-POSIX
        pass
    try:
        _serve_pages(inp, out)
    except BrokenPipeError:  # the process that started this child has gone
        pass


def _serve_pages(inp: Any, out: Any) -> None:
    _write_frame(out, ("ready", None))
    while True:
        header = inp.read(8)
        if len(header) < 8:
            return
        page, charset, url, settings = pickle.loads(inp.read(struct.unpack(">Q", header)[0]))
        try:
            _write_frame(out, ("ok", extract_page(page, charset, url, settings)))
        except MemoryError:
            _write_frame(out, ("error", "memory limit exceeded"))
        except Exception as exc:  # noqa: BLE001 - any extractor bug becomes a Failure value
            _write_frame(out, ("error", f"{type(exc).__name__}: {exc}"[:500]))


def _spawn_child(max_memory_mb: int) -> subprocess.Popen:
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    code = "from transforms.extract import _child_main; _child_main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, str(max_memory_mb)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )


# ---------------------------------------------------------------------------------------------
# Extraction children started ahead, while the command line imports Beam and plans the run
# ---------------------------------------------------------------------------------------------


class PrestartedChild:
    """An extraction child started by the command line before the run, with the part of
    ``subprocess.Popen`` that ``ProcessExtractor`` uses. The processes forked from the
    command line (the worker pool, and the workers it forks) inherit it and one of them
    claims it (``claim_prestarted``); that process is not its parent, so it watches the
    child through a pidfd (poll, kill, wait: they work in any process, the parent too) and
    the command line reaps it (``release_prestarted``)."""

    def __init__(self, popen: subprocess.Popen, max_memory_mb: int) -> None:
        self.max_memory_mb = max_memory_mb
        self.pid, self.stdin, self.stdout = popen.pid, popen.stdin, popen.stdout
        self._pidfd: int | None = os.pidfd_open(popen.pid)

    def _ended(self, timeout: float | None) -> bool:
        return self._pidfd is None or bool(select.select([self._pidfd], [], [], timeout)[0])

    def poll(self) -> int | None:
        return -1 if self._ended(0) else None

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended(timeout):
            raise subprocess.TimeoutExpired(f"extraction child {self.pid}", timeout)
        return -1

    def kill(self) -> None:
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except ProcessLookupError:  # pragma: no cover - ended and reaped
                pass

    def release(self) -> None:
        """Close this process's ends of the child's pipes and its pidfd (the child ends at
        end of input once no process holds its standard input)."""
        for stream in (self.stdin, self.stdout):
            stream.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None


#: children started ahead and not claimed yet, in this process
_prestarted: list[PrestartedChild] = []
#: what this process started ahead, to reap at the end (``release_prestarted``)
_started_here: list[subprocess.Popen] = []
_prestart_lock = threading.Lock()


def prestart_children(count: int, max_memory_mb: int) -> int:
    """Start ``count`` extraction children now, each importing the extraction libraries
    (``freeze_startup_heap``: ~0.4 s of CPU with the jusText stoplists) while this process
    goes on; ``ProcessExtractor`` claims them before it starts one of its own. For the
    command line, before it imports Beam: a 2-worker run's children otherwise start once the
    workers have, with every core busy, while during the command line's own imports one core
    of two is idle. Returns how many were started (none where a process cannot watch another
    that it did not start: no ``os.pidfd_open``)."""
    if not hasattr(os, "pidfd_open"):
        return 0
    started = 0
    for _ in range(count):
        try:
            popen = _spawn_child(max_memory_mb)
        except OSError:
            break
        try:
            child = PrestartedChild(popen, max_memory_mb)
        except OSError:  # no pidfds (a kernel before 5.3): nobody else could watch it
            popen.kill()
            popen.wait()
            break
        with _prestart_lock:
            _prestarted.append(child)
            _started_here.append(popen)
        started += 1
    return started


def claim_prestarted(max_memory_mb: int) -> PrestartedChild | None:
    """A child started ahead with this memory limit, for the caller alone; None if none."""
    with _prestart_lock:
        for i, child in enumerate(_prestarted):
            if child.max_memory_mb == max_memory_mb:
                return _prestarted.pop(i)
    return None


def give_up_prestarted() -> None:
    """Close this process's ends of the unclaimed children started ahead: the command line
    once it has forked the worker pool (the workers claim them, not the runner)."""
    with _prestart_lock:
        dropped = _prestarted[:]
        _prestarted.clear()
    for child in dropped:
        child.release()


def pass_on_prestarted(to_worker: bool) -> None:
    """Around the worker pool's fork of a worker: the worker keeps the first unclaimed child
    (and closes its ends of the others), the pool gives that one up."""
    with _prestart_lock:
        dropped = _prestarted[1:] if to_worker else _prestarted[:1]
        _prestarted[:] = _prestarted[:1] if to_worker else _prestarted[1:]
    for child in dropped:
        child.release()


def release_prestarted() -> None:
    """In the process that started children ahead, at its end: stop those still running
    (unclaimed, or left by a worker that did not end them) and reap them all."""
    give_up_prestarted()
    with _prestart_lock:
        started = _started_here[:]
        _started_here.clear()
    for popen in started:
        if popen.poll() is None:
            popen.kill()
        popen.wait()


class ProcessExtractor:
    """A long-lived child Python process that runs :func:`extract_html`; killed and restarted
    when a page exceeds its time limit or the child dies (memory limit). One per DoFn
    instance. A plain subprocess (not multiprocessing) so that the caller's ``__main__`` is
    never re-imported and the child's memory limit cannot touch the Beam worker."""

    def __init__(self, max_memory_mb: int) -> None:
        self._max_memory_mb = max_memory_mb
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _start(self) -> None:
        self._proc = claim_prestarted(self._max_memory_mb) or _spawn_child(self._max_memory_mb)
        try:
            ready = self._read_frame(120)
        except (ExtractTimeout, EOFError):
            ready = None
        if ready != ("ready", None):
            self.close()
            raise _ExtractFailed("extract_error", "extraction worker did not start")

    def _read_exact(self, size: int, deadline: float) -> bytes:
        fd = self._proc.stdout.fileno()
        chunks, got = [], 0
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise ExtractTimeout("no answer")
            chunk = os.read(fd, min(size - got, 1 << 20))
            if not chunk:
                raise EOFError("extraction worker exited")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_frame(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        size = struct.unpack(">Q", self._read_exact(8, deadline))[0]
        return pickle.loads(self._read_exact(size, deadline))

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.kill()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):  # pragma: no cover - already gone
                pass
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            if isinstance(proc, PrestartedChild):
                proc.release()

    def run(self, page: bytes | str, charset: str | None, url: str, settings: ExtractSettings) -> dict[str, Any]:
        """``extract_page`` in the child."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            try:
                _write_frame(self._proc.stdin, (page, charset, url, settings))
                status, value = self._read_frame(settings.timeout_s)
            except ExtractTimeout:
                self.close()
                raise _timed_out(settings.timeout_s) from None
            except (EOFError, OSError):
                self.close()
                raise _ExtractFailed("extract_error", "extraction worker died (memory limit?)") from None
        if status != "ok":
            raise _ExtractFailed("extract_error", value)
        return value


_thread_state = threading.local()


def _default_process_extractor(settings: ExtractSettings) -> ProcessExtractor:
    extractor = getattr(_thread_state, "extractor", None)
    if extractor is None:
        extractor = _thread_state.extractor = ProcessExtractor(settings.max_memory_mb)
    return extractor


def _run_guarded(
    page: bytes | str, charset: str | None, url: str, settings: ExtractSettings, process: ProcessExtractor | None
) -> dict[str, Any]:
    """``extract_page`` under the time limit of ``settings.isolation``."""
    mode = settings.isolation
    on_main = threading.current_thread() is threading.main_thread()
    if mode == "auto":
        mode = "signal" if on_main and hasattr(signal, "setitimer") else "process"
    if mode == "signal" and not on_main:
        mode = "process"  # signals are only delivered to the main thread
    if mode != "process":
        # In this process: import (and freeze) the libraries before any time limit starts. A
        # Beam worker whose bundles go to the extraction child never imports them itself.
        freeze_startup_heap()
    if mode == "none":
        return extract_page(page, charset, url, settings)
    if mode == "signal":
        with _alarm(settings.timeout_s):
            return extract_page(page, charset, url, settings)
    if mode == "thread":
        try:
            with _thread_deadline(settings.timeout_s):
                return extract_page(page, charset, url, settings)
        except ExtractTimeout:
            raise _timed_out(settings.timeout_s) from None
    return (process or _default_process_extractor(settings)).run(page, charset, url, settings)


# ---------------------------------------------------------------------------------------------
# The stage function
# ---------------------------------------------------------------------------------------------


def _failure(doc: Document, reason: str, detail: str) -> Failure:
    return Failure(doc.url, STAGE, reason, detail[:500], doc.fetched_at)


def extract_document(
    doc: Document, settings: ExtractSettings, *, process: ProcessExtractor | None = None
) -> Article | Failure:
    """Document -> Article (main text + metadata) or Failure(stage 'extract').

    Plain-text documents (``doc.text``) pass through unchanged. ``process`` lets a DoFn share
    one extraction child across calls; by default one per thread is created when needed."""
    base = {
        "url": doc.url,
        "fetched_at": doc.fetched_at,
        "source": source_host(doc.url),
        "categories": tuple(doc.categories),
        "feed_url": doc.feed_url,
        "topic_hint": doc.topic_hint,
    }
    if doc.text is not None and doc.html is None:
        return _text_article(doc, settings, base)
    found = _extract_html_document(doc, settings, process, base)
    if isinstance(found, Failure) and doc.text is not None and found.reason in ("empty_page", "no_text"):
        return _text_article(doc, settings, base)  # a record with both: its text, not nothing
    return found


def _text_article(doc: Document, settings: ExtractSettings, base: dict) -> Article | Failure:
    text = doc.text.strip()
    if _too_short(text, settings):
        # nothing went wrong: the record is read, and too short to be an article (as the
        # cleaning stage's own test on what is left)
        reason = "too_short" if text else "empty_text"
        detail = f"{len(text)} characters of text < extract.min_text_chars {settings.min_text_chars}"
        return Failure(doc.url, FILTER_STAGE, reason, detail, doc.fetched_at)
    return Article(
        text=text,
        title=doc.title,
        published_at=_not_future(doc.published_at, doc.fetched_at, settings.max_future_s),
        language=language_code(doc.language),
        author=doc.author,
        extractor="text",
        **base,
    )


def _extract_html_document(
    doc: Document, settings: ExtractSettings, process: ProcessExtractor | None, base: dict
) -> Article | Failure:
    if doc.html is None:
        return _failure(doc, "not_html", "document has neither html nor text")
    reason = _not_html_reason(doc)
    if reason:
        return _failure(doc, "not_html", reason)
    if len(doc.html) > settings.max_html_bytes:
        return _failure(
            doc,
            "too_large",
            f"{len(doc.html)} bytes > max_html_bytes {settings.max_html_bytes}",
        )
    if not doc.html.strip():
        return _failure(doc, "empty_page", "no bytes")
    try:
        found = _run_guarded(doc.html, doc.charset, doc.url, settings, process)
    except ExtractTimeout as exc:
        return _failure(doc, "timeout", str(exc))
    except _ExtractFailed as exc:
        return _failure(doc, exc.reason, exc.detail)
    except Exception as exc:  # noqa: BLE001 - extractor bugs become Failure values
        return _failure(doc, "extract_error", f"{type(exc).__name__}: {exc}")
    if "empty" in found:
        return _failure(doc, "empty_page", found["empty"])
    text = (found["text"] or "").strip()
    if _too_short(text, settings):
        if not found["visible_text"]:
            return _failure(doc, "empty_page", "page has no visible text")
        return _failure(doc, "no_text", f"{len(text)} characters of main text")
    published = (
        _not_future(parse_datetime(found["published"]), doc.fetched_at, settings.max_future_s)
        or _not_future(doc.published_at, doc.fetched_at, settings.max_future_s)
        or _not_future(parse_datetime(found["date_heuristic"]), doc.fetched_at, settings.max_future_s)
    )
    categories = tuple(dict.fromkeys([*doc.categories, *found["categories"]]))
    removed = tuple(found["removed"])
    return Article(
        rules_fired=("link_density",) if removed else (),
        removed=removed,
        text=text,
        title=found["title"] or doc.title or found["title_fallback"],
        published_at=published,
        language=language_code(found["language"]) or language_code(doc.language),
        author=found["author"] or doc.author,
        extractor=found["extractor"],
        **{**base, "categories": categories},
    )


def __getattr__(name: str) -> Any:
    # The Beam transform lives in transforms/extract_transform.py: the extraction child
    # process imports this module, and without Beam it starts in ~0.3 s instead of ~1.8 s
    # and ~130 MB smaller. ``from transforms.extract import ExtractMainText`` still works.
    if name in ("ExtractMainText", "_ExtractDoFn"):
        from transforms import extract_transform

        return getattr(extract_transform, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
