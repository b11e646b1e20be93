"""Feeds: parsing every format, feed lists, polling with seen state, and the ReadFeeds source."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.feeds import REAL_FEEDS
from tests.servers import ROUTES, HostileServer, gzip_bomb
from transforms.feeds import (
    FeedItem,
    FeedSettings,
    FeedSpec,
    FeedState,
    entry_keys,
    fetch_page,
    load_feed_list,
    load_state,
    merge_state,
    parse_date,
    parse_feed,
    poll_feeds,
    resolve_inputs,
    save_state,
)
from transforms.http import FetchSettings, Response
from transforms.records import UTC, Document, Failure

DATA = Path(__file__).parent / "data" / "feeds"
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def parse(name: str, url: str = "https://feeds.example/feed", headers=None):
    return parse_feed((DATA / name).read_bytes(), url, headers, now=NOW)


# --------------------------------------------------------------------------- parse_feed


def test_rss2_entries_carry_their_metadata():
    feed = parse("rss2.xml", "https://gazette.example/rss.xml")
    assert (feed.kind, feed.title, feed.bozo) == ("rss", "Harbour Gazette", False)
    first = feed.entries[0]
    assert first.link == "https://gazette.example/2025/01/ferry-timetable?utm_source=rss"
    assert first.id == "gazette-1001"  # a bare guid stays as written
    assert first.published == datetime(2025, 1, 6, 8, 30, tzinfo=UTC)
    assert first.categories == ("Transport", "Harbour")
    assert first.author == "Ada Quill"
    assert "less often" in first.summary
    # relative links are joined with the feed URL
    assert feed.entries[1].link == "https://gazette.example/2025/01/lighthouse"


def test_impossible_dates_are_dropped_and_counted():
    feed = parse("rss2.xml")
    by_title = {e.title: e for e in feed.entries}
    assert by_title["Date from the far future"].published is None
    assert by_title["Date from before the web"].published is None
    assert feed.bad_dates == 2


def test_rfc822_zone_names_are_their_offsets_and_unknown_names_leave_no_date():
    """feedparser takes CET, BST, JST... as UTC: those are read at their offsets, and a zone
    name nobody knows leaves the date empty (and counted as bad) instead of silently wrong."""
    zones = ["CET", "CEST", "BST", "EEST", "MSK", "IST", "JST", "AEDT", "NZST", "EDT", "GMT", "QQT"]
    items = "".join(
        f"<item><title>{zone}</title><link>https://z.example/{zone}</link>"
        f"<pubDate>Thu, 26 Nov 2026 09:15:00 {zone}</pubDate></item>"
        for zone in zones
    )
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{items}</channel></rss>'
    feed = parse_feed(body.encode(), "https://z.example/rss", now=datetime(2026, 11, 28, tzinfo=UTC))
    got = {e.title: e.published for e in feed.entries}
    at = datetime(2026, 11, 26, 9, 15, tzinfo=UTC)
    hours = {"CET": 1, "CEST": 2, "BST": 1, "EEST": 3, "MSK": 3, "IST": 5.5, "JST": 9, "AEDT": 11}
    hours |= {"NZST": 12, "EDT": -4, "GMT": 0}
    assert got == {zone: at - timedelta(hours=h) for zone, h in hours.items()} | {"QQT": None}
    assert feed.bad_dates == 1
    # the same rule for dates outside feedparser's entries (JSON Feed, sitemaps)
    assert parse_date("Thu, 26 Nov 2026 09:15:00 CEST") == at - timedelta(hours=2)
    assert parse_date("Thu, 26 Nov 2026 09:15:00 +0100 (CET)") == at - timedelta(hours=1)


def test_atom_rdf_jsonfeed_kinds():
    atom = parse("atom.xml")
    assert atom.kind == "atom"
    assert atom.entries[0].published == datetime(2025, 2, 1, 6, 15, tzinfo=UTC)
    assert atom.entries[0].author == "Bo Lindqvist"
    assert atom.entries[1].published == datetime(2025, 2, 2, 10, tzinfo=UTC)  # updated only
    rdf = parse("rdf.xml")
    assert rdf.kind == "rdf" and rdf.entries[0].categories == ("Weather",)


ATOM_LINKS = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en"><title>Links &amp;amp; more</title>
  <entry><title>Two languages</title><id>tag:x.example,2025:1</id>
    <link rel="related" href="https://elsewhere.example/story"/>
    <link rel="alternate" type="text/html" hreflang="de" href="https://x.example/de/eins"/>
    <link rel="alternate" type="text/html" hreflang="en" href="https://x.example/one"/>
    <link rel="alternate" type="text/html" href="https://x.example/one-again"/></entry>
  <entry><title>PDF first</title><id>tag:x.example,2025:2</id>
    <link rel="alternate" type="application/pdf" href="https://x.example/two.pdf"/>
    <link rel="alternate" type="text/html" href="https://x.example/two"/>
    <link rel="alternate" type="text/html" href="https://x.example/two-b"/></entry>
  <entry><title>Only related</title><id>tag:x.example,2025:3</id>
    <link rel="related" href="https://elsewhere.example/three"/></entry>
</feed>"""


def test_atom_entry_link_is_its_first_page_alternate_in_the_feed_language():
    feed = parse_feed(ATOM_LINKS, "https://x.example/atom", now=NOW)
    assert [e.link for e in feed.entries] == ["https://x.example/one", "https://x.example/two", None]
    # an entry with only a related link has no page: read/no_link, not a fetch of its tag: id
    result = poll_feeds([FeedSpec("https://x.example/atom")], FakeWeb({"https://x.example/atom": ATOM_LINKS}).fetch,
                        FeedState(), FeedSettings(), now=NOW)  # fmt: skip
    assert [(f.stage, f.reason) for f in result.failures] == [("read", "no_link")]
    assert len(result.items) == 2
    # an RSS guid that is a permalink is still the link, also when relative; a tag: one is not
    items = "<item><guid>/news/7</guid></item><item><guid>tag:x.example,2025:8</guid></item>"
    rss = f'<?xml version="1.0"?><rss version="2.0"><channel><title>g</title>{items}</channel></rss>'
    feed = parse_feed(rss.encode(), "https://x.example/rss", now=NOW)
    assert [e.link for e in feed.entries] == ["https://x.example/news/7", None]


def test_feed_titles_are_plain_text():
    titles = [
        "Fish &amp;amp; chips",  # HTML inside XML: the text is 'Fish &amp; chips'
        "<![CDATA[Mayor <b>says</b> no]]>",
        "&lt;em&gt;Escaped&lt;/em&gt; markup",
        "It&#8217;s   on\n  two lines",
        "Line<br/>break",
    ]
    items = "".join(f"<item><title>{t}</title><link>https://t.example/{n}</link></item>" for n, t in enumerate(titles))
    body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>A &amp;amp; B</title>{items}</channel></rss>'
    feed = parse_feed(body.encode(), "https://t.example/rss", now=NOW)
    assert feed.title == "A & B"
    assert [e.title for e in feed.entries] == [
        "Fish & chips",
        "Mayor says no",
        "Escaped markup",
        "It\u2019s on two lines",
        "Line break",
    ]


def test_json_feed_is_parsed_by_us():
    feed = parse("feed.json", "https://orchard.example/feed.json")
    assert feed.kind == "jsonfeed" and feed.title == "Orchard Times"
    links = [e.link for e in feed.entries]
    assert links == [
        "https://orchard.example/apples",
        "https://orchard.example/pears",
        "https://elsewhere.example/plums",
        None,
    ]
    first = feed.entries[0]
    assert first.categories == ("farming", "apples") and first.author == "Cid Ferrante"
    assert feed.entries[1].id == "2" and feed.entries[1].author == "Orchard desk"
    assert feed.entries[1].published == datetime(2025, 3, 2, 9, tzinfo=UTC)
    assert feed.bozo  # the item that is not an object is reported, not fatal


_FULL = "".join(f"<p>Paragraph {i} of the whole article, well past any teaser.</p>" for i in range(3))


@pytest.mark.parametrize(
    "body",
    [
        # RSS 2.0: <description> is the teaser, <content:encoded> the article
        b'<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/"><channel>'
        b"<title>T</title><item><title>Ferry back</title><link>https://t.example/ferry</link>"
        b"<description>Short teaser.</description><content:encoded><![CDATA[" + _FULL.encode() + b"]]>"
        b"</content:encoded></item></channel></rss>",
        # Atom: <summary> and <content type="html">
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:t</id>'
        b'<entry><title>Ferry back</title><id>urn:1</id><link href="https://t.example/ferry"/>'
        b'<summary>Short teaser.</summary><content type="html">'
        + _FULL.replace("<", "&lt;").encode()
        + b"</content></entry></feed>",
        # JSON Feed: summary and content_html
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "title": "T",
                "items": [
                    {"id": "1", "url": "https://t.example/ferry", "title": "Ferry back", "summary": "Short teaser."}
                    | {"content_html": _FULL}
                ],
            }
        ).encode(),
    ],
    ids=["rss-content-encoded", "atom-content", "jsonfeed-content-html"],
)
def test_feed_content_is_the_page_when_articles_are_not_fetched(body):
    """fetch_articles: false stands the entry in for its page: the full content the feed
    carries (content:encoded, Atom content, content_html), not the teaser beside it."""
    entry = parse_feed(body, "https://t.example/feed", now=NOW).entries[0]
    item = FeedItem("https://t.example/feed", entry, entry_keys(entry, "https://t.example/feed"))
    document = fetch_page(item, lambda url: pytest.fail(f"fetched {url}"), FeedSettings(fetch_articles=False))
    page = document.html.decode()
    assert "Paragraph 2 of the whole article" in page
    assert entry.summary == "Short teaser."  # the teaser is still the entry's summary


def test_json_feed_content_text_is_escaped_into_paragraphs():
    body = json.dumps(
        {
            "version": "https://jsonfeed.org/version/1.1",
            "items": [{"id": "1", "url": "https://t.example/a", "content_text": "Fish < chips & peas\n\nSecond part"}],
        }
    ).encode()
    entry = parse_feed(body, "https://t.example/feed", now=NOW).entries[0]
    item = FeedItem("https://t.example/feed", entry, ())
    page = fetch_page(item, lambda url: pytest.fail(url), FeedSettings(fetch_articles=False)).html.decode()
    assert "<p>Fish &lt; chips &amp; peas</p><p>Second part</p>" in page


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (
            b'<rss version="2.0"><channel><title>T</title><language>fr-FR</language><item><title>Gare</title>'
            b"<link>https://t.example/gare</link></item></channel></rss>",
            "fr-FR",
        ),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="de"><title>T</title><id>urn:t</id>'
            b'<entry xml:lang="nl"><title>Station</title><id>urn:1</id><link href="https://t.example/gare"/></entry>'
            b"</feed>",
            "nl",
        ),
        (
            json.dumps(
                {
                    "version": "https://jsonfeed.org/version/1.1",
                    "language": "es",
                    "items": [{"id": "1", "url": "https://t.example/gare", "title": "Estación"}],
                }
            ).encode(),
            "es",
        ),
        (
            b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            b'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url><loc>https://t.example/gare</loc>'
            b"<news:news><news:publication><news:name>T</news:name><news:language>pt</news:language>"
            b"</news:publication><news:title>Estacao</news:title></news:news></url></urlset>",
            "pt",
        ),
    ],
    ids=["rss", "atom", "jsonfeed", "news-sitemap"],
)
def test_the_language_a_feed_states_reaches_the_document(body, want):
    """README: ``language`` is what the page, feed or record states; a page that states none
    takes its feed's (RSS <language>, Atom xml:lang, JSON Feed language, news:language)."""
    entry = parse_feed(body, "https://t.example/feed", now=NOW).entries[0]
    assert entry.language == want
    item = FeedItem("https://t.example/feed", entry, ())
    page = Response(
        url="https://t.example/gare", status=200, headers={}, body=b"<html></html>", content_type="text/html"
    )
    fetched = fetch_page(item, lambda url: page, FeedSettings())
    summary = fetch_page(item, lambda url: pytest.fail(url), FeedSettings(fetch_articles=False))
    assert fetched.language == summary.language == want


def test_news_sitemap_and_index():
    sitemap = parse("sitemap-news.xml")
    assert sitemap.kind == "sitemap"
    assert sitemap.entries[0].title == "Market day draws record crowds"
    assert sitemap.entries[0].categories == ("market", "town life")
    assert sitemap.entries[1].published == datetime(2025, 4, 6, tzinfo=UTC)
    index = parse("sitemap-index.xml")
    assert index.kind == "sitemap_index" and len(index.entries) == 2


def test_entities_are_never_expanded():
    feed = parse("entities-sitemap.xml")
    assert feed.kind == "sitemap"
    for entry in feed.entries:
        assert len(entry.link) < 200
        assert "root:" not in entry.link


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"/etc/passwd",
        b"http://127.0.0.1:9/feed",
        b"{",
        b"[1, 2]",
        b'{"items": 5}',
        b"\x00\xff\xfe",
        b"<rss",
    ],
)
def test_garbage_never_raises_and_is_not_usable(body):
    feed = parse_feed(body, "https://x.example/feed", now=NOW)
    assert not feed.usable
    assert feed.bozo


def test_html_page_is_not_a_feed():
    feed = parse("not-a-feed.html", headers={"content-type": "text/html"})
    assert not feed.usable


# --------------------------------------------------------------------------- feed lists


def test_yaml_opml_and_text_lists(tmp_path, repo_root):
    specs = load_feed_list(str(repo_root / "configs" / "feeds.yaml"))
    assert specs and all(s.url.startswith("https://") for s in specs)
    assert specs[0].topic == "technology" and specs[0].poll_interval_s == 900
    opml = load_feed_list(str(DATA / "feeds.opml"))
    assert [(s.name, s.topic) for s in opml] == [
        ("Harbour Gazette", "Local"),
        ("Valley Courier", "Local"),
        ("Orchard Times", "farming"),
    ]
    text = tmp_path / "feeds.txt"
    text.write_text("# comment\nhttps://a.example/rss\n\nhttps://a.example/rss\n")
    assert [s.url for s in load_feed_list(str(text))] == ["https://a.example/rss"]
    mixed = resolve_inputs(["https://b.example/feed", str(text)])
    assert [s.url for s in mixed] == ["https://b.example/feed", "https://a.example/rss"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("feeds:\n  - url: ftp://x\n", "not an http"),
        ("feeds:\n  - url: https://x.example/\n    colour: red\n", "unknown key"),
        (
            "feeds:\n  - url: https://x.example/\n    poll_interval_s: -1\n",
            "poll_interval_s",
        ),
        ("stuff: []\n", "unknown top-level"),
        ("feeds: [\n", "not valid YAML"),
    ],
)
def test_bad_feed_lists_name_file_and_problem(tmp_path, content, message):
    path = tmp_path / "feeds.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        load_feed_list(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("news.rss", '<rss version="2.0"><channel><title>Harbour news</title></channel></rss>'),
        ("news.xml", '<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>H</title></feed>'),
        ("rdf.xml", '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"></rdf:RDF>'),
        ("sitemap.xml", '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>'),
        ("feed.json", '{"version":"https:\\/\\/jsonfeed.org\\/version\\/1.1","title":"Harbour","items":[]}'),
    ],
)
def test_a_feed_given_as_a_feed_list_is_named_as_such(tmp_path, name, content):
    # a user passes a downloaded feed file where a feed list (or a URL) is expected
    path = tmp_path / name
    path.write_text("\ufeff" + content if name == "news.rss" else content, encoding="utf-8")
    with pytest.raises(ValueError, match="is a feed itself") as err:
        load_feed_list(str(path))
    assert str(path) in str(err.value)
    lists = tmp_path / "feeds.opml"  # an OPML list that names RSS feeds stays a list
    lists.write_text('<opml version="2.0"><body><outline text="rss" xmlUrl="https://a.example/rss"/></body></opml>')
    assert [s.url for s in load_feed_list(str(lists))] == ["https://a.example/rss"]


def test_missing_feed_list_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        load_feed_list(str(tmp_path / "nope.yaml"))


# --------------------------------------------------------------------------- polling


class FakeWeb:
    """url -> bytes (or a callable returning bytes); counts requests; honours ETags."""

    def __init__(self, pages):
        self.pages, self.calls = dict(pages), []

    def fetch(self, url, *, accept=None, etag=None, last_modified=None):
        self.calls.append(url)
        page = self.pages.get(url)
        if page is None:
            return Failure(url, "fetch", "http_404", "HTTP 404", NOW)
        body = page() if callable(page) else page
        tag = f'"{hash(body)}"'
        if etag == tag:
            return Response(url, 304, {"etag": tag}, b"", "")
        return Response(
            url,
            200,
            {"etag": tag, "content-type": "application/xml"},
            body,
            "application/xml",
        )


def rss_items(links):
    from tests.servers import rss

    return rss([(link, f"title {link}") for link in links])


def test_poll_returns_only_new_entries_and_skips_unchanged_feeds():
    links = ["https://n.example/a", "https://n.example/b"]
    web = FakeWeb({"https://n.example/rss": lambda: rss_items(links)})
    state, settings = FeedState(), FeedSettings()
    spec = FeedSpec("https://n.example/rss", topic="local")
    first = poll_feeds([spec], web.fetch, state, settings, now=NOW)
    assert [i.entry.link for i in first.items] == links
    assert first.items[0].topic == "local"
    again = poll_feeds([spec], web.fetch, state, settings, now=NOW)
    assert again.items == [] and again.stats["feeds_not_modified"] == 1
    links.append("https://n.example/c?utm_source=x")
    links.append("https://N.example/a#comments")  # the same article as /a, canonically
    third = poll_feeds([spec], web.fetch, state, settings, now=NOW)
    assert [i.entry.link for i in third.items] == ["https://n.example/c?utm_source=x"]
    assert third.stats["feeds_entries_seen"] == 3


def test_bad_feed_is_one_failure_per_run():
    web = FakeWeb({"https://n.example/page": b"<html><body>no feed</body></html>"})
    state, reported = FeedState(), set()
    spec = FeedSpec("https://n.example/page")
    first = poll_feeds([spec], web.fetch, state, FeedSettings(), now=NOW, reported=reported)
    second = poll_feeds([spec], web.fetch, state, FeedSettings(), now=NOW, reported=reported)
    assert [(f.stage, f.reason) for f in first.failures] == [("parse", "bad_feed")]
    assert second.failures == []
    gone = poll_feeds([FeedSpec("https://n.example/gone")], web.fetch, state, FeedSettings(), now=NOW)
    assert [f.reason for f in gone.failures] == ["http_404"]


def test_failing_feed_counts_once_per_streak_and_is_reported_every_run(tmp_path):
    """A feed that stays broken is a row in every run, but a failure only in the run where it
    started failing (or fails in a new way): a quiet later run has nothing new that failed."""
    web = FakeWeb({})
    spec = FeedSpec("https://n.example/gone")
    path = str(tmp_path / "feeds.json")
    outcomes = []
    for body in (None, None, rss_items(["https://n.example/a"]), None):
        if body is not None:
            web.pages[spec.url] = body
        else:
            web.pages.pop(spec.url, None)
        state = load_state(path)  # every poll is a new run with the saved state
        result = poll_feeds([spec], web.fetch, state, FeedSettings(), now=NOW, reported=set())
        outcomes.append([(f.stage, f.reason) for f in result.failures])
        save_state(path, state)
        if outcomes[-1] == [("filter", "feed_still_failing")]:
            assert result.failures[0].detail.startswith("fetch/http_404 since ")
            assert result.failures[0].url == spec.url
    assert outcomes == [
        [("fetch", "http_404")],
        [("filter", "feed_still_failing")],  # reported, not counted again
        [],  # back: the streak ends
        [("fetch", "http_404")],  # a new streak counts again
    ]


def test_entries_without_link_become_failures_and_cap_keeps_newest():
    web = FakeWeb({"https://g.example/rss": (DATA / "rss2.xml").read_bytes()})
    result = poll_feeds(
        [FeedSpec("https://g.example/rss")],
        web.fetch,
        FeedState(),
        FeedSettings(),
        now=NOW,
    )
    assert [(f.stage, f.reason) for f in result.failures] == [("read", "no_link")]
    assert len(result.items) == 4
    capped = poll_feeds(
        [FeedSpec("https://g.example/rss")],
        web.fetch,
        FeedState(),
        FeedSettings(max_entries_per_feed=1),
        now=NOW,
    )
    assert [i.entry.title for i in capped.items] == ["Lighthouse reopens to visitors"]
    assert capped.stats["feeds_entries_capped"] == 4


def test_entry_without_link_is_reported_once_across_runs(tmp_path):
    """An entry without a link is a read/no_link row once; it is remembered as seen like a
    fetched entry, so a later run that reads the changed feed does not report it again."""
    link_less = "<item><title>No link here</title><guid isPermaLink='false'>n-1</guid></item>"
    feed = rss_items(["https://n.example/a"]).replace(b"</channel>", link_less.encode() + b"</channel>")
    web = FakeWeb({"https://n.example/rss": feed})
    path = str(tmp_path / "feeds.json")
    reported = []
    for _run in range(2):
        state = load_state(path)
        result = poll_feeds([FeedSpec("https://n.example/rss")], web.fetch, state, FeedSettings(), now=NOW)
        reported.append([f.reason for f in result.failures])
        # what the run saves: its settled and fetched keys, as ReadFeeds' SaveFeedState does
        keys = [k for item in result.items for k in item.keys] + [k for ks in result.settled for k in ks]
        save_state(path, merge_state(load_state(path), keys, {}, [], now=time.time(), max_age_s=1e9))
        web.pages["https://n.example/rss"] = feed.replace(
            b"</channel>", b"<item><link>https://n.example/b</link></item></channel>"
        )
    assert reported == [["no_link"], []]


def test_entries_over_the_cap_are_taken_by_later_polls(tmp_path):
    """max_entries_per_feed bounds a poll, it does not lose entries: an unchanged feed with
    entries left over is read again (newest first) until every entry was taken."""
    links = [f"https://n.example/{n}" for n in range(5)]
    web = FakeWeb({"https://n.example/rss": rss_items(links)})
    spec, settings = FeedSpec("https://n.example/rss"), FeedSettings(max_entries_per_feed=2)
    path = str(tmp_path / "feeds.json")
    taken = []
    for _run in range(4):
        state = load_state(path)
        result = poll_feeds([spec], web.fetch, state, settings, now=NOW)
        save_state(path, state)
        taken.append(([i.entry.link.rsplit("/", 1)[1] for i in result.items], result.stats["feeds_entries_capped"]))
    # rss() dates the items a minute apart, so the newest are the last ones
    assert taken == [(["4", "3"], 3), (["2", "1"], 1), (["0"], 0), ([], 0)]
    assert result.stats["feeds_not_modified"] == 1  # nothing left: conditional GET again


def test_sitemap_index_reads_child_sitemaps():
    web = FakeWeb(
        {
            "https://tidings.example/index.xml": (DATA / "sitemap-index.xml").read_bytes(),
            "https://tidings.example/sitemap-news.xml": (DATA / "sitemap-news.xml").read_bytes(),
        }
    )
    result = poll_feeds(
        [FeedSpec("https://tidings.example/index.xml")],
        web.fetch,
        FeedState(),
        FeedSettings(),
        now=NOW,
    )
    assert [i.entry.link for i in result.items] == [
        "https://tidings.example/2025/04/market-day",
        "https://tidings.example/2025/04/rain",
    ]
    assert [f.reason for f in result.failures] == ["http_404"]  # the archive child is missing


def test_unchanged_sitemap_index_still_polls_its_children(tmp_path):
    """Child sitemaps keep their URLs while their contents change: an index that answers 304
    (or with the same bytes) still has its children polled, each with its own validators."""
    index, child = "https://tidings.example/index.xml", "https://tidings.example/sitemap-news.xml"
    news = (DATA / "sitemap-news.xml").read_bytes()
    web = FakeWeb({index: (DATA / "sitemap-index.xml").read_bytes(), child: news})
    path = str(tmp_path / "feeds.json")
    polls = []
    for body in (news, news, news.replace(b"</urlset>", b"<url><loc>/2025/04/fair</loc></url></urlset>")):
        web.pages[child], web.calls = body, []
        state = load_state(path)  # a new run with the saved state
        result = poll_feeds([FeedSpec(index)], web.fetch, state, FeedSettings(), now=NOW)
        save_state(path, state)
        polls.append((result.stats["feeds_not_modified"], [i.entry.link for i in result.items]))
        assert child in web.calls
    assert polls == [
        (0, ["https://tidings.example/2025/04/market-day", "https://tidings.example/2025/04/rain"]),
        (2, []),  # index and child both 304
        (1, ["https://tidings.example/2025/04/fair"]),  # index 304, the child changed
    ]


def test_state_round_trip_and_merge(tmp_path):
    path = str(tmp_path / "out" / "_state" / "feeds.json")
    assert load_state(path).seen == {}
    state = FeedState(seen={"u:old": 0.0, "u:recent": 1000.0})
    merged = merge_state(state, ["u:new"], {}, [], now=2000.0, max_age_s=1500.0)
    assert set(merged.seen) == {"u:recent", "u:new"}
    save_state(path, merged)
    assert load_state(path).seen == merged.seen
    (tmp_path / "bad.json").write_text("{not json")
    assert load_state(str(tmp_path / "bad.json")).seen == {}


def test_entry_keys_use_canonical_url_and_scoped_id():
    from transforms.feeds import FeedEntry

    a = entry_keys(
        FeedEntry(link="https://www.n.example/a?utm_source=rss", id="1"),
        "https://n.example/rss",
    )
    b = entry_keys(FeedEntry(link="https://n.example/a", id="1"), "https://other.example/rss")
    assert a[0] == b[0] and a[1] != b[1]


# --------------------------------------------------------------------------- real feeds


REAL = REAL_FEEDS  # the known item counts, shared with benchmarks/feeds.py


@pytest.mark.parametrize("name", list(REAL))
def test_real_feeds_known_counts(shared_dir, name):
    kind, count = REAL[name]
    feed = parse_feed(
        (shared_dir / "data" / "real_feeds" / name).read_bytes(),
        "https://feeds.example/x",
    )
    assert feed.kind == kind
    assert len(feed.entries) == count
    assert len({e.link for e in feed.entries}) == count


def test_reingesting_cnn_adds_no_new_articles(shared_dir, tmp_path):
    body = (shared_dir / "data" / "real_feeds" / "mediacloud_rss_fetcher" / "real-cnn.rss").read_bytes()
    url = "https://rss.cnn.example/cnn_topstories.rss"
    path = str(tmp_path / "_state" / "feeds.json")
    counts = []
    for _run in range(2):
        # a server that ignores validators: only the seen state can tell
        web = FakeWeb({url: body})
        fetch = web.fetch

        def ignore_validators(u, fetch=fetch, **_):
            return fetch(u)

        state = load_state(path)
        state.feeds.clear()
        result = poll_feeds([FeedSpec(url)], ignore_validators, state, FeedSettings(), now=NOW)
        counts.append(len(result.items))
        save_state(
            path,
            merge_state(
                load_state(path),
                [k for i in result.items for k in i.keys],
                {},
                [],
                now=time.time(),
                max_age_s=1e9,
            ),
        )
    assert counts == [69, 0]


# --------------------------------------------------------------------------- pipeline


def _dump(records, path):
    import pickle

    with open(path, "wb") as handle:
        pickle.dump(list(records), handle)


def run_read_feeds(tmp_path, inputs, fetch, feeds, **kwargs):
    """Run ReadFeeds on the offline runner; -> (documents, failures, metric counters)."""
    import pickle

    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.feeds import ReadFeeds

    p = beam.Pipeline(runner=FnApiRunner())
    result = p | "ReadFeeds" >> ReadFeeds(inputs, fetch, feeds, **kwargs)
    for tag, pcoll in (("ok", result.ok), ("failed", result.failed)):
        path = str(tmp_path / f"{tag}.pickle")
        _ = pcoll | f"List{tag}" >> beam.combiners.ToList() | f"Dump{tag}" >> beam.Map(_dump, path)
    run = p.run()
    run.wait_until_finish()
    counters = Counter()
    for counter in run.metrics().query()["counters"]:
        counters[counter.key.metric.name] += counter.committed
    docs, failures = (pickle.loads((tmp_path / f"{tag}.pickle").read_bytes()) for tag in ("ok", "failed"))
    return docs, failures, counters


def fast_fetch(server: HostileServer, **changes) -> FetchSettings:
    values = {
        "user_agent": "storybeam-test/1.0",
        "timeout_s": 1.0,
        "connect_timeout_s": 0.5,
        "max_bytes": 3_000_000,
        "retries": 1,
        "backoff_s": 0.05,
        "max_retry_after_s": 2.0,
        "per_host_concurrency": 2,
        "per_host_min_delay_s": 0.0,
        "allow_hosts": server.allow,
    }
    values.update(changes)
    return FetchSettings(**values)


@pytest.mark.slow
def test_read_feeds_routes_every_hostile_entry(tmp_path):
    gzip_bomb()
    with HostileServer() as server:
        started = time.monotonic()
        docs, failures, counters = run_read_feeds(
            tmp_path,
            [server.url("/feed.xml"), server.url("/not-a-feed.xml")],
            fast_fetch(server),
            FeedSettings(),
            output_root=str(tmp_path / "out"),
        )
        elapsed = time.monotonic() - started
        assert server.requested("/private/") == 0
        assert server.max_in_flight <= 2
    got = {d.url: d for d in docs}
    want_ok = {server.url(p) for p, (where, _) in ROUTES.items() if where == "ok"}
    assert set(got) == want_ok
    reasons = {f.url: (f.stage, f.reason) for f in failures}
    for path, (where, reason) in ROUTES.items():
        if where == "failed":
            assert reasons[server.url(path)] == ("fetch", reason), path
    assert reasons[server.url("/not-a-feed.xml")] == ("parse", "bad_feed")
    # conservation: every entry is one Document or one Failure, the bad feed one more
    assert len(docs) + len(failures) == len(ROUTES) + 1
    doc = got[server.url("/cp1251")]
    assert isinstance(doc, Document) and doc.charset == "cp1251"
    assert doc.source_kind == "feeds" and doc.feed_url == server.url("/feed.xml")
    assert doc.categories == ("local",) and doc.published_at is not None and doc.entry_id
    assert elapsed < 60
    # every failure is counted in a metric named after its stage and reason
    assert counters["fetch_blocked_address"] == 6
    assert counters["fetch_timeout"] == 1 and counters["parse_bad_feed"] == 1
    assert counters["feeds_pages_fetched"] == len(docs)
    state = json.loads((tmp_path / "out" / "_state" / "feeds.json").read_text())
    # final outcomes are remembered; transient ones (timeout, connection errors) are not
    assert len(state["seen"]) > 0
    assert server.url("/feed.xml") not in state["feeds"]


@pytest.mark.slow
def test_polling_fetches_only_new_items(tmp_path):
    from transforms.http import SafeFetcher

    with HostileServer() as server:
        started = time.monotonic()
        docs, failures, counters = run_read_feeds(
            tmp_path,
            [server.url("/growing.xml")],
            fast_fetch(server),
            FeedSettings(),
            poll_interval_s=0.2,
            stop_after=3,
            output_root=str(tmp_path / "out"),
        )
        assert time.monotonic() - started < 30
        assert server.hits["/growing.xml"] == 3  # 3, 6, then 9 items
        pages = {p: n for p, n in server.hits.items() if p.startswith("/article/g")}
        assert failures == []
        assert len(docs) == 9 and len(pages) == 9
        assert set(pages.values()) == {1}  # every item fetched exactly once
        assert counters["feeds_entries_new"] == 9
        assert counters["feeds_entries_seen"] == 3 + 6  # poll 2 saw 3 old items, poll 3 saw 6
        saved = load_state(str(tmp_path / "out" / "_state" / "feeds.json"))
        assert len(saved.seen) == 18  # canonical URL + entry id of 9 entries
        # a later run with the saved state: the feed has gained three more items by now
        fetch = SafeFetcher(fast_fetch(server)).fetch
        next_run = poll_feeds([FeedSpec(server.url("/growing.xml"))], fetch, saved, FeedSettings())
        assert len(next_run.items) == 3
        assert next_run.stats["feeds_entries_seen"] == 9
