"""Behaviour of the extract stage on hand-written pages (tests/data/html)."""

from __future__ import annotations

import copy
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from transforms import extract as extract_mod
from transforms.extract import (
    ExtractSettings,
    extract_document,
    parse_datetime,
    source_host,
)
from transforms.records import Article, Document, Failure

HTML_DIR = Path(__file__).resolve().parent / "data" / "html"
T0 = datetime(2024, 3, 6, tzinfo=UTC)
SETTINGS = ExtractSettings()


def page(name: str, **fields) -> Document:
    html = (HTML_DIR / name).read_bytes()
    return Document(
        url=f"https://www.Example.org/news/{name}", source_kind="warc", fetched_at=T0, html=html,
        **fields,
    )  # fmt: skip


def test_news_page_main_text_and_structured_metadata():
    art = extract_document(page("news_article.html"), SETTINGS)
    assert isinstance(art, Article)
    assert "Lowmere switched on its long-awaited tide barrier" in art.text
    assert "survey the harbour floor every spring" in art.text
    # User comments, related links and footer notices are not main text.
    assert "my cellar has been wet" not in art.text
    assert "Pier repairs delayed" not in art.text
    assert "We use cookies" not in art.text
    assert art.title == "Harbour town opens its new tide barrier"
    assert art.published_at == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    assert art.author == "Mira Holloway"
    assert art.language == "en"
    assert art.source == "example.org"
    assert "Local" in art.categories


def test_jsonld_article_body_used_when_page_body_is_empty():
    art = extract_document(page("jsonld_only.html"), SETTINGS)
    assert isinstance(art, Article)
    assert art.extractor == "jsonld"
    assert art.text.count("\n") == 2, "paragraph breaks of articleBody kept"
    assert art.text.startswith("Sleeper services on the northern line")
    assert art.author == "Tomas Breck"
    assert art.published_at == datetime(2023, 11, 20, 22, 15, tzinfo=UTC)


_BODY = "<p>" + "The ferry timetable changes on Monday, the port authority said in a statement. " * 6 + "</p>"


@pytest.mark.parametrize(
    ("byline", "author"),
    [
        ('<span class="byline">Anna Lind</span>', "Anna Lind"),
        ('<div class="article-author">Piet Vos</div>', "Piet Vos"),
        ('<span class="meta">Anna Lind</span>', None),  # no byline markup: nothing to find
    ],
)
def test_page_without_structured_metadata_gets_heuristic_author_date_and_section(byline, author):
    html = (
        "<html><head><title>Ferry timetable changes</title>"
        '<meta property="article:section" content="Transport"></head><body><article>'
        f"<h1>Ferry timetable changes</h1>{byline}<p>Published 2024-02-29</p>{_BODY}"
        "</article></body></html>"
    )
    doc = Document(url="https://port.example/2024/02/29/ferry", source_kind="warc", fetched_at=T0, html=html.encode())
    art = extract_document(doc, SETTINGS)
    assert isinstance(art, Article)
    assert art.title == "Ferry timetable changes"
    assert art.author == author
    assert art.published_at == datetime(2024, 2, 29, tzinfo=UTC)
    assert "Transport" in art.categories


def test_legacy_charset_declared_in_meta():
    art = extract_document(page("latin1_de.html"), SETTINGS)
    assert isinstance(art, Article)
    assert "Fußgängerbrücke über die Wümme" in art.text
    assert art.title == "Brückenbau in Kleinstadt"


def test_feed_metadata_fills_gaps():
    feed_date = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    doc = page("latin1_de.html", published_at=feed_date, language="de-DE", author="Feed Author")
    art = extract_document(doc, SETTINGS)
    assert art.published_at == feed_date
    assert art.language == "de"
    assert art.author == "Feed Author"


@pytest.mark.parametrize(
    ("page_date", "feed_date", "want"),
    [
        ("2031-06-01T09:00:00Z", datetime(2024, 3, 5, 10, tzinfo=UTC), datetime(2024, 3, 5, 10, tzinfo=UTC)),
        ("2031-06-01T09:00:00Z", None, None),  # no feed date either: no date beats a wrong one
        ("2024-03-06T20:00:00+00:00", None, datetime(2024, 3, 6, 20, tzinfo=UTC)),  # within a day
        ("2024-03-04T09:00:00Z", datetime(2024, 3, 5, 10, tzinfo=UTC), datetime(2024, 3, 4, 9, tzinfo=UTC)),
    ],
)
def test_page_date_in_the_future_gives_way_to_the_feed_date(page_date, feed_date, want):
    """The feed's max-future rule holds for page dates too: a page claiming 2031 (fetched in
    2024) keeps the feed entry's date instead."""
    html = (
        "<html><head><title>Ferry timetable changes</title>"
        f'<meta property="article:published_time" content="{page_date}"></head><body><article>'
        f"<h1>Ferry timetable changes</h1>{_BODY}</article></body></html>"
    )
    doc = Document(
        url="https://port.example/ferry", source_kind="feeds", fetched_at=T0, html=html.encode(),
        published_at=feed_date,
    )  # fmt: skip
    art = extract_document(doc, ExtractSettings(metadata_heuristics=("title",)))
    assert isinstance(art, Article)
    assert art.published_at == want


@pytest.mark.parametrize("html", [None, True])
def test_a_record_date_in_the_future_is_ignored_as_a_page_date_is(html):
    """A JSON line or feed entry dated far after it was read (2099 read in 2024) has no date
    rather than a wrong one: one such article would otherwise push every story out of the
    story state (kept for state_retention_days before the newest event time)."""
    body = f"<html><head><title>Ferry timetable changes</title></head><body><article>{_BODY}</article></body></html>"
    doc = Document(
        url="https://port.example/ferry", source_kind="jsonl", fetched_at=T0,
        html=body.encode() if html else None, text=None if html else "Body line one.\nBody line two.",
        published_at=datetime(2099, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    art = extract_document(doc, ExtractSettings(metadata_heuristics=("title",)))
    assert isinstance(art, Article)
    assert art.published_at is None


def test_plain_text_passes_through():
    doc = Document(
        url="https://example.org/t", source_kind="text", fetched_at=T0,
        text="Body line one.\nBody line two.", title="A title",
    )  # fmt: skip
    art = extract_document(doc, SETTINGS)
    assert isinstance(art, Article)
    assert (art.text, art.title, art.extractor) == (
        "Body line one.\nBody line two.",
        "A title",
        "text",
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"html": b"%PDF-1.7 binary"}, "not_html"),
        ({"html": b"<html></html>", "content_type": "image/png"}, "not_html"),
        ({}, "not_html"),
        ({"html": b"   \n  "}, "empty_page"),
        (
            {"html": b"<html><body>" + b"<p>x</p>" * 2000 + b"</body></html>"},
            "too_large",
        ),
        (
            {"html": b"<html><body><div><a href='/'>Home</a></div></body></html>"},
            "no_text",
        ),
    ],
)
def test_bad_pages_become_failures(fields, reason):
    doc = Document(url="https://example.org/bad", source_kind="warc", fetched_at=T0, **fields)
    result = extract_document(doc, ExtractSettings(max_html_bytes=10_000))
    assert isinstance(result, Failure)
    assert (result.stage, result.reason) == ("extract", reason)


def _in_worker_thread(fn):
    import threading

    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    return out[0]


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_runaway_extraction_is_stopped(monkeypatch, where):
    def runaway(html, url, settings):
        while True:
            pass

    monkeypatch.setattr(extract_mod, "extract_html", runaway)
    # on the main thread auto uses the signal; off it, the thread mode (a child process
    # would not see the patched function)
    settings = ExtractSettings(timeout_s=0.3, isolation="auto" if where == "main thread" else "thread")
    started = time.monotonic()
    if where == "main thread":
        result = extract_document(page("news_article.html"), settings)
    else:
        result = _in_worker_thread(lambda: extract_document(page("news_article.html"), settings))
    assert isinstance(result, Failure) and result.reason == "timeout" and "0.3 s" in result.detail
    assert time.monotonic() - started < 2


# The deadline can land inside a weakref callback, where Python swallows it (and reports it as
# unraisable); _thread_deadline raises again every 0.1 s for that reason.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_thread_deadline_stops_a_huge_page_and_never_fires_late():
    huge = b"<html><body>" + b"<p>Words of a paragraph that repeats many times.</p>" * 60000
    slow = Document(url="https://example.org/huge", source_kind="warc", fetched_at=T0, html=huge)
    started = time.monotonic()
    result = _in_worker_thread(lambda: extract_document(slow, ExtractSettings(isolation="thread", timeout_s=0.5)))
    assert isinstance(result, Failure) and result.reason == "timeout"
    assert time.monotonic() - started < 4

    def quick_pages_then_idle():
        # each page finishes well inside its limit; a deadline fired at the edge must not
        # surface afterwards, in the idle time past every limit
        settings = ExtractSettings(isolation="thread", timeout_s=0.05)
        results = [extract_document(page("news_article.html"), settings) for _ in range(5)]
        time.sleep(0.3)
        return results

    results = _in_worker_thread(quick_pages_then_idle)
    assert all(isinstance(r, (Article, Failure)) for r in results)


def test_process_isolation_kills_slow_extraction():
    process = extract_mod.ProcessExtractor(max_memory_mb=2048)
    try:
        settings = ExtractSettings(isolation="process")
        ok = extract_document(page("news_article.html"), settings, process=process)
        assert isinstance(ok, Article) and "tide barrier" in ok.text
        # A huge page takes seconds to extract; the child is killed at the limit.
        huge = b"<html><body>" + b"<p>Words of a paragraph that repeats many times.</p>" * 60000
        slow = Document(url="https://example.org/huge", source_kind="warc", fetched_at=T0, html=huge)
        tight = ExtractSettings(isolation="process", timeout_s=0.5)
        started = time.monotonic()
        result = extract_document(slow, tight, process=process)
        assert isinstance(result, Failure) and result.reason == "timeout"
        assert time.monotonic() - started < 4
        # The worker was replaced and keeps serving pages.
        again = extract_document(page("news_article.html"), settings, process=process)
        assert isinstance(again, Article)
    finally:
        process.close()


def test_the_child_decodes_the_page_and_says_what_the_worker_did():
    # The child gets the bytes and the declared charset and decodes them itself; empty and
    # invisible pages come back as the same failures as when extracted in this process.
    cyrillic = "<html><body><article><p>" + "Новости порта и погода на неделю. " * 12 + "</p></article></body></html>"
    docs = {
        "cp1251": Document(
            url="https://example.org/ru",
            source_kind="warc",
            fetched_at=T0,
            html=cyrillic.encode("cp1251"),
            charset="windows-1251",
        ),
        "bom only": Document(url="https://example.org/bom", source_kind="warc", fetched_at=T0, html=b"\xef\xbb\xbf \n"),
        "invisible": Document(
            url="https://example.org/script",
            source_kind="warc",
            fetched_at=T0,
            html=b"<html><head><script>var a = 1;</script></head><body><style>p {}</style></body></html>",
        ),
        "links only": Document(
            url="https://example.org/links",
            source_kind="warc",
            fetched_at=T0,
            html=b"<html><body><div><a href='/'>Home</a> <a href='/b'>Sport</a></div></body></html>",
        ),
    }
    process = extract_mod.ProcessExtractor(max_memory_mb=2048)
    try:
        child = {k: extract_document(d, ExtractSettings(isolation="process"), process=process) for k, d in docs.items()}
    finally:
        process.close()
    here = {k: extract_document(d, ExtractSettings(isolation="none")) for k, d in docs.items()}
    assert isinstance(child["cp1251"], Article) and "Новости порта" in child["cp1251"].text
    assert [(r.reason, r.detail) for r in (child["bom only"], child["invisible"], child["links only"])] == [
        ("empty_page", "no content after decoding"),
        ("empty_page", "page has no visible text"),
        ("no_text", "10 characters of main text"),
    ]
    assert {k: (r.text if isinstance(r, Article) else r.detail) for k, r in child.items()} == {
        k: (r.text if isinstance(r, Article) else r.detail) for k, r in here.items()
    }


def test_settings_validate():
    with pytest.raises(ValueError, match="timeout_s"):
        ExtractSettings(timeout_s=0)
    with pytest.raises(ValueError, match="isolation"):
        ExtractSettings(isolation="threads")


def test_link_lines_around_the_article_are_trimmed():
    anchors = ["Pier repairs delayed again after winter storms", "Fish market to reopen"]
    text = "\n".join(
        [
            "Fish market to reopen",
            "The barrier was switched on today after eight years of planning.",
            "Read the council report: Pier repairs delayed again after winter storms, it said.",
            "Pier repairs delayed again after winter storms",
        ]
    )
    kept, removed = extract_mod.trim_link_lines(text, anchors, 0.9)
    assert removed == ["Fish market to reopen", "Pier repairs delayed again after winter storms"]
    assert kept.splitlines()[0].startswith("The barrier")
    assert "Read the council report" in kept  # a linked phrase inside prose stays
    # A title that is itself a link (a common headline pattern) is not trimmed.
    assert extract_mod.trim_link_lines(text, anchors, 0.9, keep="Fish market to reopen")[1] == [
        "Pier repairs delayed again after winter storms"
    ]


#: the anchor pattern as first written: the unrolled ``_ANCHOR`` must find exactly its matches
_LAZY_ANCHOR = re.compile(r"<a\b[^>]*>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)


def _anchor_soup(rng) -> str:
    pieces = [
        "<a href='/x'>", "<A HREF=/y>", "<a>", "<abbr>", "<area>", "</a>", "</A>", "</a >", "</a\n>",
        "</ab>", "</abbr>", "<", "</", "</a", "<b>", "</b>", "word", "Two words", "&amp;", "\n", " ", ">",
    ]  # fmt: skip
    return "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 40)))


def test_anchor_pattern_finds_what_the_lazy_pattern_finds():
    import random

    rng = random.Random(7)
    soups = [_anchor_soup(rng) for _ in range(5000)]
    matched = 0
    for soup in soups:
        expected = _LAZY_ANCHOR.findall(soup)
        assert extract_mod._ANCHOR.findall(soup) == expected, soup
        matched += bool(expected)
    assert matched > 1000  # the soups do exercise matches (and, with ``</a >``, the lookahead)
    page = (HTML_DIR / "news_article.html").read_text()
    assert extract_mod._ANCHOR.findall(page) == _LAZY_ANCHOR.findall(page) != []


def test_anchor_pattern_on_real_pages(shared_dir):
    from benchmarks.corpus import eval_pages

    pages = [extract_mod.decode_html(html) for _, html in eval_pages()[::10]]
    assert sum(len(extract_mod._ANCHOR.findall(page)) for page in pages) > 5000
    for page in pages:
        assert extract_mod._ANCHOR.findall(page) == _LAZY_ANCHOR.findall(page)


def test_startup_heap_is_frozen_once(monkeypatch):
    import gc

    monkeypatch.setattr(extract_mod, "_heap_frozen", False)
    monkeypatch.setattr(extract_mod, "_heap_frozen_bare", False)
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(gc.get_freeze_count()))
    extract_mod.freeze_startup_heap(libraries=False)  # a worker that hands pages to the child
    extract_mod.freeze_startup_heap(libraries=False)
    assert len(frozen) == 1
    extract_mod.freeze_startup_heap()  # its first page extracted in-process
    extract_mod.freeze_startup_heap()
    extract_mod.freeze_startup_heap(libraries=False)
    assert len(frozen) == 2 and extract_mod._speedups_installed


def _in_new_interpreter(code: str) -> tuple[list[str], str]:
    """``code`` run by a new interpreter in the repository: (words of its standard output,
    the end of its standard error)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=120)
    return result.stdout.split(), result.stderr[-2000:]


def test_the_extraction_child_leaves_out_pyarrow_and_numpy():
    # What the child runs (its imports, then a page), in a new interpreter: pyarrow (with numpy)
    # was a third of each child's start; the record types must not pull it in.
    code = """
import sys
from transforms.extract import ExtractSettings, extract_page, freeze_startup_heap
freeze_startup_heap()
page = b"<html><head><title>Dock</title></head><body><article><p>" + b"The dock reopened on Monday. " * 30 + b"</p></article></body></html>"
found = extract_page(page, "utf-8", "https://news.example/dock", ExtractSettings())
print(bool(found["text"]), sorted({"pyarrow", "numpy", "apache_beam"} & set(sys.modules)))
"""
    out, err = _in_new_interpreter(code)
    assert out == ["True", "[]"], err


def test_worker_with_extraction_child_does_not_import_trafilatura():
    # A Beam worker whose bundles run off the main thread hands pages to the extraction
    # child: setting up and running the DoFn there must not load trafilatura in the worker.
    code = """
import sys, threading
from datetime import datetime, UTC
from transforms.extract_transform import _ExtractDoFn
from transforms.extract import ExtractSettings
from transforms.records import Document
page = b"<html><head><title>Council</title></head><body><article><p>" + b"The council voted on the budget. " * 30 + b"</p></article></body></html>"
out = []
def run():
    fn = _ExtractDoFn(ExtractSettings())
    fn.setup()
    out.extend(fn.process(Document(url="https://news.example/a", source_kind="warc", fetched_at=datetime.now(UTC), html=page)))
    fn.teardown()
t = threading.Thread(target=run); t.start(); t.join()
print(len(out), type(out[0]).__name__, "trafilatura" in sys.modules)
"""
    out, err = _in_new_interpreter(code)
    assert out == ["1", "Article", "False"], err


def test_metadata_heuristics_run_only_where_kept():
    body = " ".join(["The harbour wall was finished on time and under budget, the council said."] * 6)
    page = (
        "<html><head><title>Harbour wall finished</title></head><body><article>"
        "<h1>Harbour wall finished</h1><p class='date'>Published 12 March 2024</p>"
        f"<p class='author'>By Ana Lima</p><p>{body}</p></article></body></html>"
    )
    full = extract_mod.extract_html(page, "https://news.example/harbour", ExtractSettings())
    assert full["date_heuristic"] == "2024-03-12" and full["title"] == "Harbour wall finished"
    assert full["author"] == "Ana Lima"
    light = extract_mod.extract_html(
        page, "https://news.example/harbour", ExtractSettings(metadata_heuristics=("title",))
    )
    assert light["date_heuristic"] is None and light["author"] is None
    assert light["title"] == "Harbour wall finished" and light["text"] == full["text"]
    none = extract_mod.extract_html(page, "https://news.example/harbour", ExtractSettings(metadata_heuristics=()))
    assert none["title"] is None and none["date_heuristic"] is None
    with pytest.raises(ValueError, match="metadata_heuristics"):
        ExtractSettings(metadata_heuristics=("date", "byline"))


def test_decoding_prefers_what_the_bytes_are():
    decode = extract_mod.decode_html
    # Declared latin-1 but served as UTF-8: no mojibake.
    mislabelled = '<meta charset="iso-8859-1"><p>Brücke über die Wümme</p>'.encode()
    assert "Brücke über die Wümme" in decode(mislabelled)
    # Declared UTF-8 with one stray byte: UTF-8 with a replacement, not a guessed charset.
    stray = '<meta charset="utf-8"><p>Fundację ataków</p>'.encode() + b"\xff"
    assert "Fundację ataków" in decode(stray)
    # Real legacy bytes follow the declaration.
    legacy = '<meta charset="windows-1250"><p>Fundację</p>'.encode("cp1250")
    assert "Fundację" in decode(legacy)
    # Undeclared Western European bytes are windows-1252, not a Central European code page
    # that a detector ranks level with it ("vńntar" for "väntar", "Ł5m" for "£5m").
    for text in (
        "Det är många människor som väntar på tåget i Göteborg, och förseningarna fortsätter.",
        "The council’s new budget of £5m was approved on Tuesday – a “historic” day, said the mayor.",
    ):
        assert f"<p>{text}</p>" in decode(f"<html><body><p>{text}</p></body></html>".encode("cp1252"))


def test_helpers():
    assert source_host("https://WWW.Dawn.com:443/news/1") == "dawn.com"
    assert parse_datetime("2024-03-05T09:30:00+0100") == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    assert parse_datetime("not a date") is None


def test_pipeline_extract_then_clean():
    """One small offline pipeline: pages -> ExtractMainText -> CleanText, ok and failed."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.clean import CleanRules, CleanText
    from transforms.extract import ExtractMainText

    docs = [
        page("news_article.html"),
        page("latin1_de.html"),
        Document(
            url="https://example.org/pdf",
            source_kind="warc",
            fetched_at=T0,
            html=b"%PDF-",
        ),
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        extracted = p | beam.Create(docs) | ExtractMainText(ExtractSettings(isolation="process"))
        cleaned = extracted.ok | CleanText(CleanRules())
        assert_that(
            cleaned.ok | "Titles" >> beam.Map(lambda a: (a.title, "share" in a.rules_fired)),
            equal_to(
                [
                    ("Harbour town opens its new tide barrier", True),
                    ("Brückenbau in Kleinstadt", False),
                ]
            ),
            label="CleanedArticles",
        )
        assert_that(
            extracted.failed | beam.Map(lambda f: (f.stage, f.reason)),
            equal_to([("extract", "not_html")]),
            label="ExtractFailures",
        )


# The byline pre-check reads the attribute before a word backwards; this regex search from the
# tag start is the definition it must agree with.
_ATTRIBUTE_BEFORE = re.compile(r"([^\s\"'<>/=]+)\s*=\s*[\"']?[^\"'<>=]*$")


@pytest.mark.parametrize(
    "html",
    [
        '<div class="post-author">',
        "<div class = 'x author'>",
        "<span CLASS=byline>",
        '<div data-class="author">',  # another attribute that merely ends in "class"
        '<div title="by the author">',
        '<a rel="author" href="/x">',
        '<div class="a" title="b=author">',  # "=" inside a value ends it
        '<div data-testid =  "story-byline">',
        "<div itemprop\n=\n'author'>",
        '<script>if (a<b) {var x = {"author": "Jo"}}',  # a "tag" that is a whole script
        '<div class="x" "author">',
        "<div author>",
        '<p>class="author" written in text</p>',
    ],
)
def test_byline_attribute_check_agrees_with_the_regex(html):
    at = html.find("author") if "author" in html else html.find("byline")
    tag_start = html.rfind("<", 0, at)
    match = _ATTRIBUTE_BEFORE.search(html, tag_start, at)
    expected = bool(match) and match.group(1).lower() in extract_mod._BYLINE_ATTRIBUTES
    assert extract_mod._ends_byline_attribute(html, tag_start, at) == expected


def _may_have_byline_word_by_word(html):
    """The byline pre-check as first written: every word of _BYLINE_WORDS searched on its own."""
    if extract_mod._BYLINE_ELEMENT.search(html):
        return True
    for word in extract_mod._BYLINE_WORDS:
        at = html.find(word)
        while at != -1:
            tag_start = html.rfind("<", 0, at)
            if tag_start > html.rfind(">", 0, at) and extract_mod._ends_byline_attribute(html, tag_start, at):
                return True
            at = html.find(word, at + 1)
    return False


@pytest.mark.parametrize("word", extract_mod._BYLINE_WORDS)
def test_byline_scans_find_every_word(word):
    assert extract_mod._may_have_byline(f'<div class="story-{word}">')
    assert extract_mod._may_have_byline(f"<span data-testid = '{word}'>")
    assert not extract_mod._may_have_byline(f'<p>{word}</p><div title="{word}">')


def test_byline_scans_agree_with_the_word_by_word_search():
    import random

    rng = random.Random(11)
    pieces = [
        *extract_mod._BYLINE_WORDS, "name", "-name", "ed-by", "bian", "user", "screen", "posted", "xiao",
        "<div ", "<p>", "</p>", ">", " class=", " id = ", " title=", ' data-name="', "'", '"', "=", " ", "<",
        "<author>", "<rel ", "x",
    ]  # fmt: skip
    soups = ["".join(rng.choice(pieces) for _ in range(rng.randrange(1, 30))) for _ in range(20000)]
    found = 0
    for soup in soups:
        expected = _may_have_byline_word_by_word(soup)
        assert extract_mod._may_have_byline(soup) == expected, soup
        found += expected
    assert 2000 < found < 18000  # both answers are exercised


_META_HEAD = """<html lang="en-GB"><head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="description" content="A title, an author and a section, described">
<META NAME="Author" CONTENT="Jo &amp; Ann Smith">
<meta name="author" content="Second Author">
<meta property='OG:Title' content='Harbour &quot;barrier&quot; opens'>
<meta name=twitter:title content=Ignored>
<meta data-title="x" content="no key here">
<meta itemprop="datePublished" content=" 2024-03-05T08:00:00Z ">
<meta name="pubdate" content="2024-03-01">
<meta property="og:locale" content="fr_FR"><meta name="language" content="de">
<meta property="article:section" content="Local">
<meta property="article:author" content="">
</head><body><p>Text</p></body></html>"""


@pytest.mark.parametrize(
    "html",
    [
        _META_HEAD,
        _META_HEAD.replace('<html lang="en-GB">', "<html>"),
        _META_HEAD.replace("OG:Title", "og:site_name").replace("datePublished", "dateModified"),
        _META_HEAD.replace("Author", "keywords").replace('name="author"', 'name="AUTHOR-x"'),
        '<meta property="article:published_time" content="2024-03-06"><meta name="title" content="T">',
        "<meta name=\"\u0130author\" content=\"odd case\"><meta name='language' content='nl'>",
    ],
)
def test_meta_tags_without_a_read_key_are_skipped_unchanged(monkeypatch, html):
    found = extract_mod.page_metadata(html)
    monkeypatch.setattr(extract_mod, "_META_KEY_PARTS", ("",))  # every <meta> parsed
    assert found == extract_mod.page_metadata(html)


def test_fast_element_lookup_keeps_lxml_classes_and_texts(monkeypatch):
    from lxml import html as lxml_html
    from trafilatura import utils

    markup = "<html><body><form><input name=q><select><option>a</select><textarea>t</textarea>"
    markup += "<label>l</label></form>" + _BODY + "</body></html>"
    expected = [type(e).__name__ for e in lxml_html.document_fromstring(markup).iter()]
    # lxml.html's own (Python) lookup first, as trafilatura has it
    utils.HTML_PARSER.set_element_class_lookup(lxml_html.HtmlElementClassLookup())
    monkeypatch.setattr(extract_mod, "_lookup_installed", False)
    monkeypatch.setattr(extract_mod, "_fast_element_lookup", lambda: None)
    before = extract_html_text(markup)
    monkeypatch.undo()
    extract_mod._lookup_installed = False
    extract_mod._fast_element_lookup()
    tree = utils.load_html(markup)
    assert [type(e).__name__ for e in tree.iter()] == expected
    assert "InputElement" in expected and "FormElement" in expected
    assert extract_html_text(markup) == before


def extract_html_text(markup: str) -> str:
    return extract_mod.extract_html(markup, "https://port.example/a", SETTINGS)["text"]


def test_guarded_regex_xpath_guards_only_tests_that_need_a_character():
    guard = extract_mod.guarded_regex_xpath
    assert guard("//div[re:test(@class, 'comm')]") == "//div[((@class) and re:test(@class, 'comm'))]"
    assert guard(".//*[re:test(@id|@class, '^share')]") == ".//*[((@id|@class) and re:test(@id|@class, '^share'))]"
    assert guard("//p[re:test(@class, 'full', 'i')]") == "//p[((@class) and re:test(@class, 'full', 'i'))]"
    # a pattern that matches "" is true for an element without the attribute: left alone
    assert guard("//p[re:test(@class, 'x?')]") == "//p[re:test(@class, 'x?')]"
    assert guard("//p[re:test(@class, '^')]") == "//p[re:test(@class, '^')]"
    assert guard("//p[contains(@class, 'x')]") == "//p[contains(@class, 'x')]"


def test_tag_union_xpath_rewrites_only_steps_without_positions():
    union = extract_mod.tag_union_xpath
    assert union(".//*[self::div or self::p][contains(@class, 'x')]") == "(.//div|.//p)[contains(@class, 'x')]"
    assert union("//*[self::h1 or self::h2][@id]") == "(//h1|//h2)[@id]"
    assert union("(.//*[self::a or self::b][@id='q'])[1]") == "((.//a|.//b)[@id='q'])[1]"
    assert union(".//x|.//*[self::a][not(.//h1)]") == ".//x|(.//a)[not(.//h1)]"
    guarded = "((@id) and re:test(@id, '^a[0-9]|b'))"  # brackets and digits inside quotes
    assert union(f".//*[self::a][{guarded}]") == f"(.//a)[{guarded}]"
    # positions count per parent in the step, over the whole set in a union: left alone
    for path in (
        ".//*[self::a or self::b][@id][1]",
        ".//*[self::a][position() < 3]",
        ".//*[self::a][last()]",
        ".//*[self::a][count(.//p)]",
        ".//*[self::a][@n + @m]",
        ".//*[self::a][.//p[2]]",
        ".//*[self::a][@id]/b",  # a further step
        "x/.//*[self::a][@id]",  # not the first step
    ):
        assert union(path) == path, path


def _shipped_trafilatura(module_name: str):
    """A second copy of a trafilatura module as shipped, untouched by _guard_trafilatura_xpaths."""
    import importlib.util

    import trafilatura

    path = Path(trafilatura.__file__).parent / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"trafilatura._shipped_{module_name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Elements with and without id/class, empty attributes, id before class and after, and tokens
# that trafilatura's content, comment, discard, author and title XPaths look for.
_GUARD_CLASSES = (
    "comments", "comment-list", "Comments", "author-name", "byline", "post-content", "article-body",
    "sidebar", "share-buttons", "newsletter-signup", "cookie-consent", "hidden", "tags", "related-posts",
    "entry-title", "post-meta", "entry-meta", "story-body", "main-column", "nav", "footer", "",
)  # fmt: skip


def _guard_page() -> str:
    parts = ["<html><head><title>T</title></head><body>"]
    for i, name in enumerate(_GUARD_CLASSES):
        for tag in ("div", "section", "p", "span", "a", "ul", "article", "h2"):
            text = f"{tag} {i} words of text for the page"
            parts.append(f'<{tag} class="{name}">{text}</{tag}>')
            parts.append(f'<{tag} id="{name or "x"}" class="plain">{text}</{tag}>')
            parts.append(f'<{tag} class="plain" id="{name}">{text}</{tag}>')
            parts.append(f'<{tag} id="{name or "y"}">{text}</{tag}>')
            parts.append(f"<{tag}>{text}</{tag}>")
    parts.append('<div><p class="fulltext">Inside a <author>Ann Lee</author></p></div>')
    parts.append('<figure><span class="author">Photo: Bo Kim</span></figure><time>May 2</time>')
    parts.append('<div data-component="FigureCaption"><a class="author-name">Cy Lu</a></div></body></html>')
    return "".join(parts)


def _assert_guarded_same_as_shipped(trees: list) -> int:
    """Every re:test XPath of trafilatura (installed) is the guarded form of the shipped one
    at the same place and selects the same elements. Returns how many elements were selected."""
    import sys

    from lxml import etree

    extract_mod._guard_trafilatura_xpaths()
    shipped = {"xpaths": _shipped_trafilatura("xpaths"), "settings": _shipped_trafilatura("settings")}
    pairs = []
    for name, value in vars(shipped["xpaths"]).items():
        if isinstance(value, list) and any(isinstance(x, etree.XPath) for x in value):
            installed = getattr(sys.modules["trafilatura.xpaths"], name)
            pairs += zip(value, installed, strict=True)
            for module in ("main_extractor", "metadata", "core", "external"):  # hold the same list
                assert getattr(sys.modules[f"trafilatura.{module}"], name, installed) is installed
    basic = shipped["settings"].BASIC_CLEAN_XPATH
    pairs += [(basic, sys.modules["trafilatura.settings"].BASIC_CLEAN_XPATH)]
    pairs += [(basic, sys.modules["trafilatura.baseline"].BASIC_CLEAN_XPATH)]
    selected = guarded = 0
    for original, installed in pairs:
        assert installed.path == extract_mod.rewritten_xpath(original.path)
        guarded += installed.path != original.path
        for tree in trees:
            found = installed(tree)
            assert found == original(tree), original.path
            selected += len(found)
    assert guarded >= 15  # the content, comment, discard, author, title and cleaning XPaths
    return selected


def test_trafilatura_xpaths_guarded_in_place_select_the_same_elements():
    from trafilatura.utils import load_html

    trees = [load_html(_guard_page()), load_html((HTML_DIR / "news_article.html").read_text())]
    assert _assert_guarded_same_as_shipped(trees) > 100


def test_guarded_xpaths_same_elements_on_real_pages(shared_dir):
    from trafilatura.htmlprocessing import convert_tags, tree_cleaning
    from trafilatura.settings import Extractor
    from trafilatura.utils import load_html

    from benchmarks.corpus import eval_pages

    pages = eval_pages()[::25]  # 40 pages spread over the set
    trees = [tree for _, html in pages if (tree := load_html(html)) is not None]
    assert len(trees) >= 30
    # and as the extractor sees them: cleaned, with trafilatura's own names (list, item, ...)
    options = Extractor()
    converted = [convert_tags(tree_cleaning(copy.deepcopy(tree), options), options) for tree in trees]
    assert sum(1 for tree in converted for _ in tree.iter("list", "item")) > 100
    assert _assert_guarded_same_as_shipped(trees + converted) > 1000


def _assert_discard_test_matches_the_sets(trees: list) -> int:
    from trafilatura.xpaths import AUTHOR_DISCARD_XPATHS

    extract_mod._guard_trafilatura_xpaths()
    key = tuple(x.path for x in AUTHOR_DISCARD_XPATHS)
    found = 0
    for tree in trees:
        expected = {elem for expression in AUTHOR_DISCARD_XPATHS for elem in expression(tree)}
        discarded = extract_mod._author_discard_test(tree)
        assert extract_mod._discard_tests[key] is not None  # the per-element tests, not the sets
        for elem in tree.iter():
            assert discarded(elem) == (elem in expected), (elem.tag, elem.attrib)
        found += len(expected)
    return found


def test_author_discard_test_matches_the_whole_page_sets():
    from trafilatura.utils import load_html

    trees = [load_html(_guard_page()), load_html((HTML_DIR / "news_article.html").read_text())]
    assert _assert_discard_test_matches_the_sets(trees) > 20
    assert extract_mod._as_self_tests("//a/b") is None
    assert extract_mod._as_self_tests("//time|.//*[@x='a|b']") == [("self::time", False), ("self::*[@x='a|b']", True)]


def test_author_discard_test_on_real_pages(shared_dir):
    from trafilatura.utils import load_html

    from benchmarks.corpus import eval_pages

    trees = [tree for _, html in eval_pages()[::25] if (tree := load_html(html)) is not None]
    assert _assert_discard_test_matches_the_sets(trees) > 200


def test_invalid_xml_char_scan_finds_what_the_regex_finds():
    from trafilatura import utils

    pattern = re.compile(utils.INVALID_XML_CHARS.pattern)
    samples = ["plain ascii", "tab\tline\ncr\r", "café Ωmega 漢字 🙂", "lone \udc80 surrogate"]
    samples += [f"a{chr(c)}b" for c in range(0x20)] + ["x\ufffe", "x\uffff", "x\ufffd", "x\u2028"]
    for text in samples:
        if pattern.search(text):
            assert extract_mod.may_hold_invalid_xml_chars(text), repr(text)
        else:
            assert not extract_mod.may_hold_invalid_xml_chars(text), repr(text)
    extract_mod.speed_up_trafilatura()
    for text in samples:  # the stand-in substitutes exactly as the pattern does
        assert utils.INVALID_XML_CHARS.sub("", text) == pattern.sub("", text)


def _loading_pages() -> list[str]:
    body = "<body><h1>Título</h1><p>Un párrafo — with “quotes”, 漢字 and 🙂.</p>" + _BODY + "</body>"
    return [
        "<!DOCTYPE html><html><head><meta charset='iso-8859-1'></head>" + body + "</html>",
        '<?xml version="1.0" encoding="windows-1252"?><html>' + body + "</html>",
        "<!DOCTYPE html PUBLIC '-//W3C//DTD XHTML 1.0//EN' 'x/y.dtd'>\n<html>" + body + "</html>",
        "<html/>\n<head></head>" + body,
        "<html>" + body.replace("párrafo", "pár\x0brafo\x00") + "</html>",
        "<html>" + body.replace("quotes", "quo\ufffetes") + "</html>",
        "<html>" + body.replace("quotes", "quo\udc80tes") + "</html>",
        "<p>just a fragment</p>",
        "",
    ]


def test_fast_html_loading_builds_the_same_trees(monkeypatch):
    """load_html with the speed-ups against lxml's str path and the regex, page by page."""
    import lxml.html
    from lxml import etree
    from trafilatura import utils

    extract_mod.speed_up_trafilatura()
    pages = _loading_pages()
    fast = [utils.load_html(page) for page in pages]
    monkeypatch.setattr(utils, "fromstring", lxml.html.fromstring)
    monkeypatch.setattr(utils, "INVALID_XML_CHARS", re.compile(utils.INVALID_XML_CHARS.pattern))
    stock = [utils.load_html(page) for page in pages]
    monkeypatch.undo()
    assert sum(tree is not None for tree in stock) >= 6
    for page, a, b in zip(pages, stock, fast, strict=True):
        assert (a is None) == (b is None), page[:60]
        if a is not None:
            assert etree.tostring(a, encoding="unicode") == etree.tostring(b, encoding="unicode"), page[:60]


def test_fast_html_loading_on_real_pages(shared_dir, monkeypatch):
    import lxml.html
    from lxml import etree
    from trafilatura import utils

    from benchmarks.corpus import eval_pages

    extract_mod.speed_up_trafilatura()
    pages = [extract_mod.decode_html(html) for _, html in eval_pages()[::5]]
    fast = [etree.tostring(utils.load_html(page)) for page in pages]
    monkeypatch.setattr(utils, "fromstring", lxml.html.fromstring)
    monkeypatch.setattr(utils, "INVALID_XML_CHARS", re.compile(utils.INVALID_XML_CHARS.pattern))
    assert fast == [etree.tostring(utils.load_html(page)) for page in pages]


def _council_page(extra: str) -> str:
    other = " ".join(f"Item {i} of the long list of other stories about budgets, schools and roads." for i in range(6))
    return f"""<html><head><title>Council vote</title></head><body>
<article><h1>Council vote</h1><p>The council voted on Monday to approve the new budget for the
coming year after a long debate.</p></article>
{"".join(f"<{extra}><p>{other}</p></{extra}>" for _ in range(4))}
</body></html>"""


def test_tree_given_to_trafilatura_changes_no_result(monkeypatch):
    """extract_html hands its parsed tree to trafilatura, which prunes it in place; the
    results must equal those of trafilatura working on a copy (the tree passed as is), also
    when the short main text sends the page through the second, recall-oriented pass (it must
    see the whole page, not the pruned tree)."""
    passes: list[bool] = []
    recall_inputs: list = []
    real = extract_mod._trafilatura

    def counting(*args, **kwargs):
        passes.append(bool(kwargs.get("favor_recall")))
        if kwargs.get("favor_recall"):
            recall_inputs.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(extract_mod, "_trafilatura", counting)
    settings = ExtractSettings()
    pages = {"recall": _council_page("aside"), "plain": _council_page("section")}
    given = {name: extract_mod.extract_html(html, "https://example.org/vote", settings) for name, html in pages.items()}
    assert passes.count(True) >= 1  # the recall pass ran on the first page
    # ... on the page itself (parsed again), not on the tree the first pass pruned
    assert recall_inputs and all(page == pages["recall"] for page in recall_inputs)
    monkeypatch.setattr(extract_mod, "_GivenTree", lambda tree, html: tree)  # trafilatura copies it
    copied = {
        name: extract_mod.extract_html(html, "https://example.org/vote", settings) for name, html in pages.items()
    }
    assert given == copied
    assert "council voted on Monday" in given["recall"]["text"]


@pytest.mark.parametrize(
    "head",
    [
        "<title>No section tags</title>",
        '<meta property="article:section" content="Harbour news">',
        '<meta name="dc.subject" content="Tides"><meta property="article:section" content="Coast">',
        '<meta property="article:section">',  # no content: not a category
    ],
)
@pytest.mark.parametrize("link", ["", '<a href="/category/harbour/">Harbour</a>'])
def test_category_heuristic_matches_trafilatura(head, link):
    """_categories shortcuts trafilatura's category search (no "/categor" link: only <head>
    can answer; no section or subject tag there: nothing); it must answer as trafilatura's own
    extract_catstags on the whole page does."""
    from trafilatura.metadata import extract_catstags
    from trafilatura.utils import load_html

    html = f"<html><head>{head}</head><body><article><p>Tide tables.</p>{link}</article></body></html>"
    ours = extract_mod._categories(load_html(html), html)
    assert ours == extract_catstags("category", load_html(html))
    if "article:section" in head and "content=" in head and not link:
        assert ours  # the <head> branch is exercised, not only the empty answer


def _forum_page() -> str:
    posts = "".join(
        f'<div class="comment"><p>Reply {i}: the new timetable moves the last ferry to half past ten, '
        f"which suits the night shift at the harbour far better than before.</p></div>"
        for i in range(5)
    )
    return f"""<html><head><script type="application/ld+json">
{{"@context": "https://schema.org", "@type": "DiscussionForumPosting", "headline": "Ferry times"}}
</script></head><body><h1>Ferry times</h1><div id="comments">{posts}</div></body></html>"""


def _bare(page: str, **mode: bool) -> tuple:
    import trafilatura
    from lxml import etree

    found = trafilatura.bare_extraction(page, url="https://example.org/p", deduplicate=False, **mode)
    if found is None:
        return None
    return found.text, found.comments, etree.tostring(found.body)


@pytest.mark.parametrize(
    "page",
    [_council_page("aside"), _council_page("section"), _council_page("form"), _forum_page()],
)
def test_cleaned_backup_made_when_read_changes_no_result(monkeypatch, page):
    """trafilatura's backup of the cleaned tree is built from the raw tree when its reader (the
    jusText check, the forum path with comments on) asks for it: the same results as the
    shipped copy, in every mode."""
    import trafilatura.core as core
    import trafilatura.external as external

    extract_mod.speed_up_trafilatura()
    built = []
    build = extract_mod._CleanedLater.build
    monkeypatch.setattr(extract_mod._CleanedLater, "build", lambda self: built.append(1) or build(self))
    modes = [{}, {"include_comments": True}, {"favor_recall": True}, {"favor_precision": True}, {"fast": True}]
    lazy = [_bare(page, **mode) for mode in modes]
    assert any(lazy)
    shipped = extract_mod.SHIPPED_BACKUP_FUNCTIONS
    monkeypatch.setattr(core, "_prepare_tree", shipped["_prepare_tree"])
    monkeypatch.setattr(external, "justext_rescue", shipped["justext_rescue"])
    assert lazy == [_bare(page, **mode) for mode in modes]
    if "<form>" in page or "DiscussionForumPosting" in page:
        assert built  # the backup was read (short text: the jusText check; the forum path)


def _long_article_page() -> str:
    paragraphs = "".join(
        f"<p>Paragraph {i}: the harbour board met again on Tuesday to settle the ferry timetable, "
        f"and the night shift asked for a later crossing so that workers can reach the island.</p>"
        for i in range(30)
    )
    related = "".join(f"<li><a href='/s/{i}'>Other story number {i} about the harbour</a></li>" for i in range(8))
    return f"""<html><head><title>Ferry timetable</title></head><body><nav><a href="/">Home</a></nav>
<article><h1>Ferry timetable settled</h1>{paragraphs}</article><aside><ul>{related}</ul></aside>
<footer>Copyright Harbour News</footer></body></html>"""


def _with_shipped_extract_and_compare(monkeypatch, run):
    import trafilatura.core as core

    monkeypatch.setattr(core, "_extract_and_compare", extract_mod.SHIPPED_BACKUP_FUNCTIONS["_extract_and_compare"])
    try:
        return run()
    finally:
        monkeypatch.undo()


def _spent_count(monkeypatch) -> list[int]:
    spent = []
    init = extract_mod._RawTreeSpent.__init__
    monkeypatch.setattr(extract_mod._RawTreeSpent, "__init__", lambda self, *a: spent.append(1) or init(self, *a))
    return spent


def test_raw_tree_given_to_readability_changes_no_result(monkeypatch):
    """readability gets the raw tree itself, not a copy, when the page's own text is long
    (nothing reads the tree after it) or, measured first, not a small share of the page (the
    recall escalation's measure is answered from that); a text too short for either keeps the
    copy. All give what trafilatura's own ``_extract_and_compare`` gives, in every mode."""
    import trafilatura.core as core

    extract_mod.speed_up_trafilatura()
    compare = core.compare_extraction
    handed: list[tuple[str, bool]] = []  # per readability input: focus, the raw tree itself?

    def recording(cleaned, raw, body, text, options):
        handed.append((options.focus, getattr(extract_mod._raw_tree_state, "spent", None) is raw))
        return compare(cleaned, raw, body, text, options)

    monkeypatch.setattr(core, "compare_extraction", recording)
    pages = {
        "long": _long_article_page(),  # own text >= ESCALATION_MAX_LENGTH
        "measured": _council_page("section"),  # shorter, but most of the page
        "short": _council_page("aside"),  # under min_extracted_size
        "escalated": _council_page("form"),  # the recall escalation retries on the raw tree
    }
    import importlib

    baseline = importlib.import_module("trafilatura.baseline")
    page_measure = baseline.html2txt
    measures: list[int] = []
    monkeypatch.setattr(baseline, "html2txt", lambda *a: measures.append(1) or page_measure(*a))
    first_input, measured = {}, {}
    for name, page in pages.items():
        handed.clear()
        measures.clear()
        _bare(page)
        first_input[name], measured[name] = handed[0], len(measures)
    assert first_input == {
        "long": ("balanced", True),
        "measured": ("balanced", True),
        "short": ("balanced", False),
        "escalated": ("balanced", False),
    }
    assert measured["measured"] == 1  # measured before readability; the escalation's check read that
    modes = [{}, {"include_comments": True}, {"favor_recall": True}, {"favor_precision": True}, {"fast": True}]
    handed.clear()
    ours = [_bare(page, **mode) for page in pages.values() for mode in modes]
    assert not any(given for focus, given in handed if focus != "balanced")
    monkeypatch.undo()
    shipped = _with_shipped_extract_and_compare(
        monkeypatch, lambda: [_bare(p, **m) for p in pages.values() for m in modes]
    )
    assert ours == shipped
    assert len(ours[0][0]) >= 3000


def test_a_page_whose_text_comes_out_short_after_all_is_extracted_again(monkeypatch):
    """When readability's (or jusText's) shorter text is chosen for a page whose own text was
    long, the later steps would read the raw tree readability changed: the page is extracted
    again with trafilatura's copies, and the result is the shipped one."""
    import trafilatura
    import trafilatura.core as core

    extract_mod.speed_up_trafilatura()
    compare = core.compare_extraction

    def short_when_spent(cleaned, raw, body, text, options):
        body, text = compare(cleaned, raw, body, text, options)
        if getattr(extract_mod._raw_tree_state, "spent", None) is raw:
            return body, text[:200]  # as if a short alternative had won
        return body, text

    monkeypatch.setattr(core, "compare_extraction", short_when_spent)
    spent = _spent_count(monkeypatch)
    page = _long_article_page()
    ours = extract_mod.extract_html(page, "https://example.org/ferry", ExtractSettings())
    assert spent == [1]
    assert not getattr(extract_mod._raw_tree_state, "stock", False)
    # any caller of trafilatura, not only storybeam's: its public API goes the same way
    api = trafilatura.extract(page, deduplicate=False)
    assert spent == [1, 1] and api

    def shipped_results():
        return (
            extract_mod.extract_html(page, "https://example.org/ferry", ExtractSettings()),
            trafilatura.extract(page, deduplicate=False),
        )

    monkeypatch.undo()
    assert (ours, api) == _with_shipped_extract_and_compare(monkeypatch, shipped_results)


def test_raw_tree_given_to_readability_on_real_pages(shared_dir, monkeypatch):
    """Real pages, among them one whose text comes out short after readability and is
    extracted again: the same results as trafilatura's own copies."""
    from benchmarks.corpus import eval_pages

    pages = eval_pages()
    chosen = pages[::40] + [p for p in pages if "coronavirus-false-reporting-contact-fine" in p[0]]
    settings = ExtractSettings()
    spent = _spent_count(monkeypatch)
    ours = [extract_mod.extract_html(extract_mod.decode_html(raw), url, settings) for url, raw in chosen]
    assert spent  # the last page was extracted twice
    monkeypatch.undo()
    shipped = _with_shipped_extract_and_compare(
        monkeypatch,
        lambda: [extract_mod.extract_html(extract_mod.decode_html(raw), url, settings) for url, raw in chosen],
    )
    assert ours == shipped


def test_a_text_record_too_short_for_an_article_is_filtered_not_failed():
    """A text record is read as it is: when it is empty or shorter than min_text_chars nothing
    went wrong, and it must not count towards max_failure_ratio (like the cleaning stage's
    empty_text / too_short rows)."""
    settings = ExtractSettings(min_text_chars=20)
    rows = []
    for text in ("", "Just a headline"):
        doc = Document(url="https://example.org/t", source_kind="text", fetched_at=T0, text=text, title="Title")
        rows.append(extract_document(doc, settings))
    assert [(r.stage, r.reason) for r in rows] == [("filter", "empty_text"), ("filter", "too_short")]
    assert "15 characters" in rows[1].detail


def test_record_with_html_and_text_falls_back_to_its_text_when_the_html_has_none():
    from transforms.extract import ExtractSettings, extract_document
    from transforms.records import Article, Document

    text = "The ferry to the island runs again from Monday after three weeks of repairs. " * 3
    doc = Document(
        url="https://port.example/ferry",
        source_kind="jsonl",
        fetched_at=datetime(2026, 3, 1, tzinfo=UTC),
        html=b"<html><body><script>app()</script></body></html>",
        text=text,
        title="Ferry runs again",
    )
    article = extract_document(doc, ExtractSettings(isolation="none"))
    assert isinstance(article, Article) and article.extractor == "text" and article.text == text.strip()


def test_record_date_in_the_future_is_not_the_published_date():
    """A record's own date (a JSON line's ``published``) obeys the same max-future rule as a
    page's: an article dated 2099 would otherwise open a window, a partition and a story there."""
    from transforms.extract import ExtractSettings, extract_document
    from transforms.records import Article, Document

    text = "The ferry to the island runs again from Monday after three weeks of repairs. " * 3
    fetched = datetime(2026, 3, 1, tzinfo=UTC)
    for published, want in ((datetime(2099, 1, 1, tzinfo=UTC), None), (fetched, fetched)):
        for html in (None, f"<html><body><article><p>{text}</p></article></body></html>".encode()):
            doc = Document(
                url="https://port.example/ferry",
                source_kind="jsonl",
                fetched_at=fetched,
                html=html,
                text=None if html else text,
                published_at=published,
            )
            article = extract_document(doc, ExtractSettings(isolation="none", metadata_heuristics=("title",)))
            assert isinstance(article, Article) and article.published_at == want
