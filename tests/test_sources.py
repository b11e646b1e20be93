"""Sources: every record read becomes a Document or a Failure; nothing vanishes."""

from __future__ import annotations

import gzip
import io
import json
import re
from datetime import datetime, timezone

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from transforms.records import Document, Failure
from transforms.sources import (
    InputError,
    SourceSettings,
    WarcCounts,
    document_from_json,
    expand_inputs,
    read_jsonl_file,
    read_text_file,
    read_warc_file,
    split_title,
    warc_ranges,
    write_warc,
)

NOW = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
HTML = b"<html><body><article><p>" + b"Some words about the harbour. " * 20 + b"</p></article></body></html>"


def test_split_title_reads_a_short_first_line_as_title():
    assert split_title("\n\nBridge closed after cracks\n\nThe bridge was closed.") == (
        "Bridge closed after cracks",
        "The bridge was closed.",
    )


@pytest.mark.parametrize("headline", ["Who will pay for the new bridge?", "Ferry back at last!", "„Nie wieder“?"])
def test_split_title_reads_a_question_or_exclamation_as_title(headline):
    """CONTRACT: a title has no closing *full stop*; headlines often end with ? or !."""
    assert split_title(f"{headline}\n\nThe council met on Tuesday.") == (headline, "The council met on Tuesday.")


def test_split_title_keeps_a_sentence_as_first_paragraph():
    text = "The bridge was closed on Tuesday.\nMore text."
    assert split_title(text) == (None, text)


def test_text_file_is_one_document(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffHarbour news today\n\nFirst paragraph here.\n".encode())
    (doc,) = read_text_file(str(path), SourceSettings(), NOW)
    assert isinstance(doc, Document)
    assert doc.title == "Harbour news today" and doc.text.strip() == "First paragraph here."
    assert doc.fetched_at == NOW


#: Legacy single-byte text (written for these tests) and the code page it was saved in: Western
#: European text that a detector alone takes for cp1250/cp1257 (Ł for £, č for è), and texts in
#: those code pages that must stay theirs.
LEGACY_TEXTS = [
    ("cp1252", "The council’s new budget of £5m was approved on Tuesday – a “historic” day, said the mayor."),
    ("cp1252", "Le café où j'ai mangé était très animé à midi. Les élèves défilent à Noël près du théâtre."),
    (
        "latin-1",
        "Les élus de la ville ont débattu du budget de l'année prochaine avant un vote très serré à la mairie.",
    ),
    (
        "latin-1",
        "Le conseil municipal adopte le budget\n\n"
        + "\n\n".join(
            f"Les élus ont débattu du budget, séance {i}, avant un vote très serré à la mairie." for i in range(4)
        ),
    ),
    ("latin-1", "Det är många människor som väntar på tåget i Göteborg, och förseningarna fortsätter."),
    ("cp1252", "A população não está satisfeita com as decisões do governo, disse o presidente da associação."),
    ("latin-1", "De gemeenteraad keurde de begroting goed. Geïnteresseerden zijn welkom bij de opening."),
    ("cp1250", "Mieszkańcy miasta zażądali wyjaśnień w sprawie podwyżek cen biletów, a prezydent obiecał odpowiedź."),
    ("cp1250", "A városi tanács hétfőn elfogadta a jövő évi költségvetést, és az új híd építése ősszel kezdődik."),
    ("cp1250", "Primăria oraşului a anunţat că străzile vor fi închise pentru lucrări timp de trei săptămâni."),
    ("cp1251", "Городской совет утвердил бюджет на следующий год, а мэр заявил, что мост начнут строить осенью."),
    ("cp1257", "Miesto taryba patvirtino kitų metų biudžetą, o meras pareiškė, kad tilto statyba prasidės rudenį."),
]


@pytest.mark.parametrize(("encoding", "text"), LEGACY_TEXTS, ids=[f"{e}-{i}" for i, (e, _) in enumerate(LEGACY_TEXTS)])
def test_legacy_text_files_are_read_in_their_code_page(tmp_path, encoding, text):
    path = tmp_path / "legacy.txt"
    path.write_bytes(f"{text}\n".encode(encoding))
    (doc,) = read_text_file(str(path), SourceSettings(), NOW)
    assert "\n\n".join(filter(None, [doc.title, doc.text.strip()])) == text


def test_text_files_are_read_decompressed_and_binary_ones_are_not_articles(tmp_path):
    import gzip

    article = "Harbour news today\n\nFirst paragraph here.\n"
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress(article.encode()))
    (tmp_path / "wide.txt").write_bytes(article.encode("utf-16"))  # with its BOM
    (tmp_path / "packed.txt").write_bytes(gzip.compress(article.encode()))  # gzip under a text name
    (tmp_path / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    (tmp_path / "controls.txt").write_bytes(bytes(range(1, 32)) * 20)  # no NUL, still not text
    for name in ("a.txt.gz", "wide.txt"):
        (doc,) = read_text_file(str(tmp_path / name), SourceSettings(), NOW)
        assert isinstance(doc, Document) and doc.title == "Harbour news today", name
        assert doc.text.strip() == "First paragraph here."
    for name in ("packed.txt", "image.txt", "controls.txt"):
        (failure,) = read_text_file(str(tmp_path / name), SourceSettings(), NOW)
        assert isinstance(failure, Failure), name
        assert (failure.stage, failure.reason) == ("filter", "not_text")
    # a .gz that is not gzip: unreadable, not an article
    (tmp_path / "fake.txt.gz").write_bytes(article.encode())
    (failure,) = read_text_file(str(tmp_path / "fake.txt.gz"), SourceSettings(), NOW)
    assert (failure.stage, failure.reason) == ("read", "unreadable")


def test_jsonl_records_whose_url_names_no_host_are_read_and_the_file_warns_once(tmp_path, caplog):
    path = tmp_path / "ids.jsonl"
    records = [
        {"url": "example.com/news/1", "text": "Title one\nBody one."},
        {"url": "doc-0002", "text": "Title two\nBody two."},
        {"url": "https://a.example/3", "text": "Title three\nBody three."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with caplog.at_level("WARNING", logger="transforms.sources"):
        out = list(read_jsonl_file(str(path), SourceSettings(), NOW))
    assert [d.url for d in out] == ["example.com/news/1", "doc-0002", "https://a.example/3"]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "2 record(s) whose url names no host (e.g. 'example.com/news/1'" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="transforms.sources"):
        list(read_jsonl_file(str(path), SourceSettings(), NOW))  # read again: warned again, once
    assert len(caplog.records) == 1


def test_jsonl_bad_lines_become_failures(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = [
        json.dumps({"url": "https://a.example/1", "html": "<p>hi</p>", "published": "2026-03-10T10:00:00Z"}),
        "{not json",
        json.dumps({"url": "https://a.example/2"}),
        json.dumps({"url": "https://a.example/3", "text": "Short title\nBody text."}),
    ]
    path.write_text("\n".join(lines) + "\n")
    out = list(read_jsonl_file(str(path), SourceSettings(), NOW))
    assert [type(x).__name__ for x in out] == ["Document", "Failure", "Failure", "Document"]
    assert out[0].published_at == datetime(2026, 3, 10, 10, tzinfo=timezone.utc)
    assert out[0].html == b"<p>hi</p>"
    assert (out[1].reason, out[2].reason) == ("bad_json", "bad_record")
    assert out[3].title == "Short title" and out[3].text == "Body text."


def test_a_json_array_or_a_pretty_printed_record_is_read_as_records(tmp_path):
    """What ``json.dump(records, f, indent=2)`` writes is read as its records, not as one
    bad_json row per line of its layout; a record that is wrong is named by its position."""
    records = [
        {"url": "https://a.example/1", "text": "Ferry runs again\n\nThe ferry runs again."},
        {"url": "https://a.example/2"},
        {"url": "https://a.example/3", "html": "<p>hi</p>"},
    ]
    (tmp_path / "array.json").write_text(json.dumps(records, indent=2))
    out = list(read_jsonl_file(str(tmp_path / "array.json"), SourceSettings(), NOW))
    assert [type(x).__name__ for x in out] == ["Document", "Failure", "Document"]
    assert out[0].title == "Ferry runs again" and out[2].html == b"<p>hi</p>"
    assert (out[1].url, out[1].reason) == (f"{tmp_path / 'array.json'}#2", "bad_record")
    (tmp_path / "one.json").write_text("\n" + json.dumps(records[0], indent=2))
    (doc,) = read_jsonl_file(str(tmp_path / "one.json"), SourceSettings(), NOW)
    assert doc.url == "https://a.example/1"
    (tmp_path / "cut.json").write_text(json.dumps(records, indent=2)[:-20])
    (failure,) = read_jsonl_file(str(tmp_path / "cut.json"), SourceSettings(), NOW)
    assert (failure.url, failure.reason) == (str(tmp_path / "cut.json"), "bad_json")
    (failure,) = read_jsonl_file(str(tmp_path / "array.json"), SourceSettings(max_record_bytes=10), NOW)
    assert failure.reason == "too_large"
    (tmp_path / "blank.jsonl").write_text("\n\n")
    assert list(read_jsonl_file(str(tmp_path / "blank.jsonl"), SourceSettings(), NOW)) == []


@pytest.mark.parametrize(
    "value",
    [
        "2026-03-05T10:00:00+01:00",
        "2026-03-05 09:00:00Z",
        "Thu, 05 Mar 2026 09:00:00 GMT",
        1772701200,
        1772701200.0,
        "1772701200",
        1772701200000,  # JavaScript's Date.now(): milliseconds
        "1772701200000",
    ],
)
def test_jsonl_published_in_the_usual_forms(value):
    doc = document_from_json({"url": "https://a.example/1", "text": "Body.", "published": value}, NOW)
    assert doc.published_at == datetime(2026, 3, 5, 9, tzinfo=timezone.utc)


def test_jsonl_empty_fields_do_not_hide_the_text(tmp_path):
    """Dumps often write absent fields as "" (``"html": ""``, ``"title": ""``): the record's text
    is still its article, and a record with both html and text keeps both (extraction falls
    back to the text when the html has none)."""
    path = tmp_path / "a.jsonl"
    body = "Ferry runs again\n\nThe ferry to the island runs again from Monday."
    lines = [
        {"url": "https://a.example/1", "html": "", "text": body},
        {"url": "https://a.example/2", "html": " ", "text": body, "title": ""},
        {"url": "https://a.example/3", "html": "<p>hi</p>", "text": body},
        {"url": " https://a.example/4\n", "text": body},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = list(read_jsonl_file(str(path), SourceSettings(), NOW))
    assert all(isinstance(doc, Document) for doc in out)
    assert [doc.url for doc in out] == [f"https://a.example/{n}" for n in (1, 2, 3, 4)]
    assert [doc.html for doc in out] == [None, None, b"<p>hi</p>", None]
    for doc in out:
        assert (doc.title, doc.text) == ("Ferry runs again", "The ferry to the island runs again from Monday.")


def _warc(path, records):
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, status, ctype, body, rtype in records:
            http = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            if rtype == "request":
                rec = writer.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n"))
            else:
                rec = writer.create_warc_record(
                    url,
                    rtype,
                    payload=io.BytesIO(body),
                    http_headers=http,
                    warc_headers_dict={"WARC-Date": "2026-03-10T10:00:00Z"},
                )
            writer.write_record(rec)


def test_warc_records_land_in_documents_or_failures(tmp_path):
    path = tmp_path / "a.warc.gz"
    _warc(
        path,
        [
            ("https://a.example/good", "200 OK", "text/html; charset=windows-1252", HTML, "response"),
            ("https://a.example/req", "200 OK", "text/html", b"", "request"),
            ("https://a.example/missing", "404 Not Found", "text/html", b"<p>gone</p>", "response"),
            ("https://a.example/moved", "301 Moved Permanently", "text/html", b"<p>moved</p>", "response"),
            ("https://a.example/doc.pdf", "200 OK", "application/pdf", b"%PDF-1.4", "response"),
        ],
    )
    counts = WarcCounts()
    out = list(read_warc_file(str(path), SourceSettings(), counts))
    assert isinstance(out[0], Document)
    assert out[0].url == "https://a.example/good" and out[0].html == HTML
    assert out[0].charset == "windows-1252"
    assert out[0].fetched_at == datetime(2026, 3, 10, 10, tzinfo=timezone.utc)
    assert [(f.stage, f.reason) for f in out[1:]] == [
        ("read", "http_404"),
        ("filter", "http_301"),
        ("filter", "not_html"),
    ]
    assert counts.skipped == 1  # the request record is not a document


def _chunked(data: bytes, size: int = 50, eol: bytes = b"\r\n") -> bytes:
    parts = [
        b"%x;ext=1%s%s%s" % (len(data[i : i + size]), eol, data[i : i + size], eol) for i in range(0, len(data), size)
    ]
    return b"".join(parts) + b"0" + eol + b"Trailer: x" + eol + eol


def _raw_warc(path, records):
    """Response records whose HTTP headers and body are written as given (as a crawler keeps them)."""
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for url, headers, body in records:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html"), *headers], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=http))


def test_warc_payloads_are_decoded_as_the_server_sent_them(tmp_path):
    import gzip
    import zlib

    deflated = zlib.compress(HTML)
    records = [
        ("https://a.example/gzip", [("Content-Encoding", "gzip")], gzip.compress(HTML)),
        ("https://a.example/deflate", [("Content-Encoding", "deflate")], deflated),
        ("https://a.example/chunked", [("Transfer-Encoding", "chunked")], _chunked(HTML)),
        ("https://a.example/lf", [("Transfer-Encoding", "chunked")], _chunked(HTML, 7, b"\n")),
        (
            "https://a.example/both",
            [("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")],
            _chunked(gzip.compress(HTML)),
        ),
        ("https://a.example/stacked", [("Content-Encoding", "deflate, gzip")], gzip.compress(deflated)),
        ("https://a.example/cut", [("Transfer-Encoding", "chunked")], _chunked(HTML)[:-30]),
        # decoded by the archiver, header kept; Common Crawl's renamed header
        ("https://a.example/kept", [("Content-Encoding", "gzip"), ("Transfer-Encoding", "chunked")], HTML),
        ("https://a.example/cc", [("X-Crawler-Content-Encoding", "gzip")], HTML),
    ]
    _raw_warc(tmp_path / "e.warc.gz", records)
    out = list(read_warc_file(str(tmp_path / "e.warc.gz"), SourceSettings()))
    assert [d.url for d in out] == [r[0] for r in records]
    cut = out.pop(6)
    assert all(isinstance(d, Document) and d.html == HTML for d in out), [d.html[:20] for d in out]
    assert isinstance(cut, Document) and HTML.startswith(cut.html) and len(cut.html) > len(HTML) - 60


def _raw_record(uri: str, kind: str, content_type: str | None, block: bytes) -> bytes:
    """One uncompressed WARC record, written by hand."""
    head = f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {uri}\r\nWARC-Date: 2026-03-10T10:00:00Z\r\n"
    head += "WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000001>\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n%s\r\n\r\n" % (len(block), block)


def test_warc_target_uri_in_angle_brackets(tmp_path):
    path = tmp_path / "b.warc"
    payload = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + HTML
    path.write_bytes(_raw_record("<https://a.example/x>", "response", "application/http; msgtype=response", payload))
    (doc,) = read_warc_file(str(path), SourceSettings())
    assert doc.url == "https://a.example/x" and doc.html == HTML


def test_warc_http_headers_with_bare_line_feeds(tmp_path):
    """Some crawlers end HTTP header lines with LF alone; the page must not come out empty."""
    path = tmp_path / "lf.warc"
    payload = b"HTTP/1.1 200 OK\nContent-Type: text/html; charset=utf-8\n\n" + HTML
    path.write_bytes(_raw_record("https://a.example/lf", "response", "application/http; msgtype=response", payload))
    (doc,) = read_warc_file(str(path), SourceSettings())
    assert doc.html == HTML and doc.content_type == "text/html" and doc.charset == "utf-8"


def test_warc_records_without_http_are_read_by_their_own_type(tmp_path):
    path = tmp_path / "h.warc"
    path.write_bytes(
        _raw_record("dns:a.example", "response", "text/dns", b"20260310100000\na.example.\t300\tIN\tA\t192.0.2.1\n")
        + _raw_record("file:///site/page.html", "response", "text/html; charset=utf-8", HTML)
        + _raw_record("https://a.example/bare", "response", None, b"<p>no type</p>")
    )
    out = list(read_warc_file(str(path), SourceSettings()))
    assert [(x.url, type(x).__name__, getattr(x, "reason", None)) for x in out] == [
        ("dns:a.example", "Failure", "not_html"),
        ("file:///site/page.html", "Document", None),
        ("https://a.example/bare", "Failure", "not_html"),
    ]
    assert out[0].stage == "filter" and out[1].html == HTML


def test_warc_generic_content_type_defers_to_the_archives_identified_type(tmp_path):
    """A server that labels a page application/octet-stream: Common Crawl's own detection
    (WARC-Identified-Payload-Type) decides; without it, or when it says otherwise, not_html."""
    path = tmp_path / "id.warc"

    def record(uri: str, ctype: str, identified: str | None) -> bytes:
        payload = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n\r\n".encode() + HTML
        raw = _raw_record(uri, "response", "application/http; msgtype=response", payload)
        if identified:
            raw = raw.replace(
                b"Content-Length:", f"WARC-Identified-Payload-Type: {identified}\r\nContent-Length:".encode(), 1
            )
        return raw

    path.write_bytes(
        record("https://a.example/octet", "application/octet-stream", "text/html")
        + record("https://a.example/xhtml", "binary/octet-stream", "application/xhtml+xml")
        + record("https://a.example/bare-octet", "application/octet-stream", None)
        + record("https://a.example/zip", "application/octet-stream", "application/zip")
        + record("https://a.example/pdf", "application/pdf", "text/html")  # a stated type is kept
    )
    out = list(read_warc_file(str(path), SourceSettings()))
    assert [(x.url, getattr(x, "reason", None)) for x in out] == [
        ("https://a.example/octet", None),
        ("https://a.example/xhtml", None),
        ("https://a.example/bare-octet", "not_html"),
        ("https://a.example/zip", "not_html"),
        ("https://a.example/pdf", "not_html"),
    ]
    assert out[0].html == HTML and out[0].content_type == "text/html"


def test_warc_payloads_that_do_not_decode_are_failures(tmp_path):
    import gzip

    bomb = gzip.compress(b"<p>" + b" " * 3_000_000)
    packed = gzip.compress(HTML)
    corrupt = packed[:20] + bytes(b ^ 0x5A for b in packed[20:40]) + packed[40:]
    records = [
        ("https://a.example/corrupt", [("Content-Encoding", "gzip")], corrupt),
        ("https://a.example/empty", [("Content-Encoding", "gzip")], b"\x1f\x8b\x08\x00garbage"),
        ("https://a.example/unknown", [("Content-Encoding", "compress")], b"\x1f\x9d\x90<"),
        ("https://a.example/notchunked", [("Transfer-Encoding", "chunked")], b"zz\r\nnot chunked"),
        ("https://a.example/bomb", [("Content-Encoding", "gzip")], bomb),
    ]
    _raw_warc(tmp_path / "bad.warc.gz", records)
    out = list(read_warc_file(str(tmp_path / "bad.warc.gz"), SourceSettings(max_record_bytes=1_000_000)))
    assert [(f.url, f.stage, f.reason) for f in out] == [
        ("https://a.example/corrupt", "read", "bad_encoding"),
        ("https://a.example/empty", "read", "bad_encoding"),
        ("https://a.example/unknown", "read", "bad_encoding"),
        ("https://a.example/notchunked", "read", "bad_encoding"),
        ("https://a.example/bomb", "read", "too_large"),
    ]


def test_truncated_warc_is_a_failure_not_a_crash(tmp_path):
    path = tmp_path / "t.warc.gz"
    write_warc(str(path), [(f"https://a.example/{i}", HTML, NOW, "text/html") for i in range(3)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])
    out = list(read_warc_file(str(path), SourceSettings()))
    assert sum(isinstance(x, Document) for x in out) == 2
    failures = [x for x in out if isinstance(x, Failure)]
    assert failures and failures[-1].reason in ("truncated_record", "bad_warc")


def test_garbage_file_is_one_failure(tmp_path):
    path = tmp_path / "junk.warc.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    out = list(read_warc_file(str(path), SourceSettings()))
    assert all(isinstance(x, Failure) for x in out)


def test_warc_filters_skip_by_date_and_host(tmp_path):
    path = tmp_path / "f.warc.gz"
    write_warc(
        str(path),
        [
            ("https://www.keep.example/a", HTML, NOW, "text/html"),
            ("https://drop.example/b", HTML, NOW, "text/html"),
        ],
    )
    counts = WarcCounts()
    out = list(read_warc_file(str(path), SourceSettings(hosts_deny=("drop.example",)), counts))
    assert [d.url for d in out] == ["https://www.keep.example/a"] and counts.skipped == 1
    counts = WarcCounts()
    assert list(read_warc_file(str(path), SourceSettings(date_from="2026-04-01"), counts)) == []
    assert counts.skipped == 2


def test_record_dates_in_no_plausible_year_are_taken_as_absent(tmp_path):
    """A record dated year 1 or 9999 (a typo, a sentinel) would put its article in an
    event-time window the run cannot compute and stop the whole run: such a date counts as
    none (published: none; fetched / WARC-Date: the run's time), as for page dates."""
    lines = [
        {"url": "https://a.example/1", "text": "Words.", "published": "0001-01-01T00:00:00Z"},
        {"url": "https://a.example/2", "text": "Words.", "published": "9999-12-31T23:59:59Z", "fetched": "9999-12-31"},
        {"url": "https://a.example/3", "text": "Words.", "published": "2025-10-25T10:00:00Z"},
    ]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    docs = list(read_jsonl_file(str(path), SourceSettings(), NOW))
    assert [d.published_at for d in docs] == [None, None, datetime(2025, 10, 25, 10, tzinfo=timezone.utc)]
    assert [d.fetched_at for d in docs] == [NOW, NOW, NOW]

    warc = tmp_path / "far.warc.gz"
    write_warc(
        str(warc), [("https://far.example/a", HTML, datetime(9999, 12, 31, 12, tzinfo=timezone.utc), "text/html")]
    )
    (doc,) = read_warc_file(str(warc), SourceSettings(), WarcCounts())
    assert doc.fetched_at.year < 9999


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing-*.warc.gz")])
    with pytest.raises(InputError, match="no such file"):  # a plain path is checked too
        expand_inputs([str(tmp_path / "nothing.warc.gz")])
    with pytest.raises(InputError, match="no such file"):
        expand_inputs([str(tmp_path)])


def test_expand_inputs_reads_every_glob_character(tmp_path):
    for name in ("a1.txt", "a2.txt", "b1.txt"):
        (tmp_path / name).write_text("x")
    assert expand_inputs([str(tmp_path / "a?.txt")]) == [str(tmp_path / "a1.txt"), str(tmp_path / "a2.txt")]
    assert expand_inputs([str(tmp_path / "[ab]1.txt")]) == [str(tmp_path / "a1.txt"), str(tmp_path / "b1.txt")]


def test_expand_inputs_sorts_and_dedups(tmp_path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    got = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "a.txt")])
    assert got == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


def test_local_files_named_as_file_urls_are_the_same_inputs(tmp_path):
    # --resume matches the manifest's inputs by name: a file:// URL of a local file must not
    # make every input look new
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    plain = expand_inputs([str(tmp_path / "*.txt")])
    assert expand_inputs([f"file://{tmp_path}/*.txt"]) == plain
    assert expand_inputs([f"file://{tmp_path}/a.txt", str(tmp_path / "a.txt")]) == plain[:1]


def test_settings_validate():
    with pytest.raises(ValueError, match="date_from"):
        SourceSettings(date_from="yesterday")
    with pytest.raises(ValueError, match="warc_range_mb"):
        SourceSettings(warc_range_mb=-1)


def _ranged(path, range_bytes: int, settings: SourceSettings | None = None) -> list:
    settings = settings or SourceSettings()
    out = []
    for url, start, end in warc_ranges(str(path), path.stat().st_size, range_bytes):
        out.extend(read_warc_file(url, settings, None, start, end))
    return out


def _key(item) -> tuple:
    return (item.url, item.html) if isinstance(item, Document) else (item.url, item.reason)


def _pages(count: int, seed: int = 7) -> list:
    import random

    rng = random.Random(seed)
    pages = []
    for i in range(count):  # bodies from 200 bytes to 40 KB, some barely compressible
        body = b"<html><body><p>" + rng.randbytes(rng.randint(100, 20000)).hex().encode() + b"</p></body></html>"
        pages.append((f"https://r{i % 5}.example/{i}", body, NOW, "text/html" if i % 7 else "application/pdf"))
    return pages


def test_warc_ranges_cut_only_large_gzipped_files():
    assert warc_ranges("a.warc.gz", 10, 4) == [("a.warc.gz", 0, 3), ("a.warc.gz", 3, 6), ("a.warc.gz", 6, None)]
    assert warc_ranges("a.warc.gz", 8, 4) == [("a.warc.gz", 0, 4), ("a.warc.gz", 4, None)]
    assert warc_ranges("a.warc.gz", 9, 4) == [("a.warc.gz", 0, 3), ("a.warc.gz", 3, 6), ("a.warc.gz", 6, None)]
    assert warc_ranges("a.warc.gz", 4, 4) == [("a.warc.gz", 0, None)]
    assert warc_ranges("a.warc", 100, 4) == [("a.warc", 0, None)]  # no member boundaries to find
    assert warc_ranges("a.warc.gz", 100, 0) == [("a.warc.gz", 0, None)]


@pytest.mark.parametrize("range_bytes", [97, 4096, 15_000, 65_536])
def test_byte_ranges_read_every_record_once(tmp_path, range_bytes):
    path = tmp_path / "r.warc.gz"
    write_warc(str(path), _pages(40))
    whole = list(read_warc_file(str(path), SourceSettings()))
    assert len(whole) == 40 and sum(isinstance(x, Failure) for x in whole) == 6
    assert [_key(x) for x in _ranged(path, range_bytes)] == [_key(x) for x in whole]


def test_byte_ranges_of_a_file_compressed_as_one_stream(tmp_path):
    """No member boundary after the first: the first range reads the file, the others nothing.
    A file joining both layouts (members, then one stream, then members) is read once too."""
    import gzip

    members = tmp_path / "m.warc.gz"
    write_warc(str(members), _pages(30))
    single = tmp_path / "s.warc.gz"
    single.write_bytes(gzip.compress(gzip.decompress(members.read_bytes())))
    whole = [_key(x) for x in read_warc_file(str(members), SourceSettings())]
    assert [_key(x) for x in _ranged(single, 5000)] == whole
    mixed = tmp_path / "x.warc.gz"
    mixed.write_bytes(members.read_bytes() + single.read_bytes() + members.read_bytes())
    assert [_key(x) for x in _ranged(mixed, 3000)] == whole * 3


def test_byte_ranges_keep_filters_and_counts(tmp_path):
    path = tmp_path / "f.warc.gz"
    write_warc(str(path), _pages(30))
    settings = SourceSettings(hosts_deny=("r1.example",))
    whole = [_key(x) for x in read_warc_file(str(path), settings)]
    assert len(whole) == 24
    assert [_key(x) for x in _ranged(path, 2000, settings)] == whole


def test_split_file_reads_sizes_and_keeps_other_kinds_whole(tmp_path):
    from transforms.sources import _split_file

    path = tmp_path / "s.warc.gz"
    write_warc(str(path), _pages(10))
    size = path.stat().st_size
    assert _split_file(str(path), "warc", size // 3 + 1) == warc_ranges(str(path), size, size // 3 + 1)
    assert len(_split_file(str(path), "warc", size // 3 + 1)) == 3
    assert _split_file(str(path), "jsonl", 10) == [(str(path), 0, None)]
    assert _split_file(str(tmp_path / "gone.warc.gz"), "warc", 10) == [(str(tmp_path / "gone.warc.gz"), 0, None)]


def test_ranges_that_meet_at_a_record_start(tmp_path, monkeypatch):
    """A range ending where a record's member starts leaves it to the next range; a range with
    no member start inside reads nothing; a member header cut by the scan's block is found."""
    import transforms.sources as sources

    path = tmp_path / "e.warc.gz"
    write_warc(str(path), _pages(12))
    whole = [_key(x) for x in read_warc_file(str(path), SourceSettings())]
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    with open(path, "rb") as handle:
        starts = [r.stream_pos for r in ArchiveIterator(handle, record_types=WarcRecordType.any_type)]
    assert len(starts) == 12
    for k in (1, 5, 11):
        head = list(read_warc_file(str(path), SourceSettings(), None, 0, starts[k]))
        tail = list(read_warc_file(str(path), SourceSettings(), None, starts[k], None))
        assert [_key(x) for x in head] == whole[:k] and [_key(x) for x in tail] == whole[k:]
        assert list(read_warc_file(str(path), SourceSettings(), None, starts[k - 1] + 1, starts[k])) == []
    monkeypatch.setattr(sources, "_SCAN_BYTES", 4)
    for k in (3, 7):
        inside = list(read_warc_file(str(path), SourceSettings(), None, starts[k] - 2, starts[k] + 1))
        assert [_key(x) for x in inside] == whole[k : k + 1]


def _records(kinds: list[str]) -> list[bytes]:
    """Uncompressed WARC records, one per kind: ``page`` (an HTML response of a.example/<i>)
    or ``request``."""
    out = []
    for i, kind in enumerate(kinds):
        handle = io.BytesIO()
        writer = WARCWriter(handle, gzip=False)
        url = f"https://a.example/{i}"
        if kind == "request":
            record = writer.create_warc_record(url, "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n"))
        else:
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(HTML), http_headers=http)
        writer.write_record(record)
        out.append(handle.getvalue())
    return out


def _with_length(record: bytes, delta: int) -> bytes:
    """The record with its WARC Content-Length ``delta`` bytes off."""
    head, _, rest = record.partition(b"\r\n\r\n")
    declared = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % (declared + delta), head, count=1)
    return head + b"\r\n\r\n" + rest


def _layout(records: list[bytes], layout: str) -> bytes:
    """``plain``, ``members`` (one gzip member per record, as crawlers write) or ``stream``
    (the whole file one gzip stream)."""
    if layout == "plain":
        return b"".join(records)
    if layout == "members":
        return b"".join(gzip.compress(r) for r in records)
    return gzip.compress(b"".join(records))


def _outcome(out: list) -> list[tuple[str, str | None]]:
    return [(x.url, x.reason if isinstance(x, Failure) else None) for x in out]


@pytest.mark.parametrize("layout", ["plain", "members"])
@pytest.mark.parametrize("delta", [500, 9, -300])
def test_a_wrong_content_length_loses_no_other_record(tmp_path, layout, delta):
    """fastwarc reads a block by its declared length and then skips to the next WARC/ line:
    a length too long swallowed the next record's header, and that record, without a word."""
    records = _records(["page"] * 4)
    records[1] = _with_length(records[1], delta)
    path = tmp_path / ("bad.warc.gz" if layout == "members" else "bad.warc")
    path.write_bytes(_layout(records, layout))
    out = list(read_warc_file(str(path), SourceSettings()))
    assert _outcome(out) == [
        ("https://a.example/0", None),
        ("https://a.example/1", "bad_length"),
        ("https://a.example/2", None),
        ("https://a.example/3", None),
    ]
    assert all(doc.html == HTML for doc in out if isinstance(doc, Document))
    if layout == "members":  # byte ranges: each record once, whichever range it falls in
        for range_bytes in (300, 700, 1500):
            assert [_key(x) for x in _ranged(path, range_bytes)] == [_key(x) for x in out]


def test_bytes_that_are_not_warc_records_are_failures(tmp_path):
    page = tmp_path / "page.warc.gz"  # gzipped HTML under a WARC name
    page.write_bytes(gzip.compress(b"<html><p>not a warc</p></html>\n" * 100))
    text = tmp_path / "text.warc"
    text.write_bytes(b"hello, this is not a warc\n" * 100)
    for path in (page, text):
        assert [(f.url, f.stage, f.reason) for f in read_warc_file(str(path), SourceSettings())] == [
            (f"{path}#0", "read", "bad_warc")
        ]
    empty = tmp_path / "empty.warc"
    empty.write_bytes(b"")
    assert list(read_warc_file(str(empty), SourceSettings())) == []
    records = _records(["page", "page"])
    mixed = tmp_path / "mixed.warc"
    mixed.write_bytes(records[0] + b"some garbage line\r\n" * 5 + records[1])
    assert _outcome(read_warc_file(str(mixed), SourceSettings())) == [
        ("https://a.example/0", None),
        (f"{mixed}#{len(records[0])}", "bad_warc"),
        ("https://a.example/1", None),
    ]


@pytest.mark.parametrize("layout", ["plain", "members", "stream"])
def test_a_file_cut_inside_a_record_that_is_not_read_is_a_failure(tmp_path, layout):
    path = tmp_path / ("cut.warc" if layout == "plain" else "cut.warc.gz")
    data = _layout(_records(["page", "page", "request", "request"]), layout)
    path.write_bytes(data[:-10])
    counts = WarcCounts()
    out = list(read_warc_file(str(path), SourceSettings(), counts))
    assert _outcome(out[:2]) == [("https://a.example/0", None), ("https://a.example/1", None)]
    (cut,) = out[2:]
    assert (cut.stage, cut.reason) == ("read", "truncated_record") and cut.url.startswith(f"{path}#")
    assert counts.skipped >= 1
