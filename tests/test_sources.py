"""Sources: every record read becomes a Document or a Failure; nothing vanishes."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from transforms.records import Document, Failure
from transforms.sources import (
    InputError,
    SourceSettings,
    WarcCounts,
    expand_inputs,
    read_jsonl_file,
    read_text_file,
    read_warc_file,
    split_title,
    write_warc,
)

NOW = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
HTML = b"<html><body><article><p>" + b"Some words about the harbour. " * 20 + b"</p></article></body></html>"


def test_split_title_reads_a_short_first_line_as_title():
    assert split_title("\n\nBridge closed after cracks\n\nThe bridge was closed.") == (
        "Bridge closed after cracks",
        "The bridge was closed.",
    )


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
            ("https://a.example/doc.pdf", "200 OK", "application/pdf", b"%PDF-1.4", "response"),
        ],
    )
    counts = WarcCounts()
    out = list(read_warc_file(str(path), SourceSettings(), counts))
    assert isinstance(out[0], Document)
    assert out[0].url == "https://a.example/good" and out[0].html == HTML
    assert out[0].charset == "windows-1252"
    assert out[0].fetched_at == datetime(2026, 3, 10, 10, tzinfo=timezone.utc)
    assert [(f.stage, f.reason) for f in out[1:]] == [("read", "http_404"), ("filter", "not_html")]
    assert counts.skipped == 1  # the request record is not a document


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


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing-*.warc.gz")])


def test_expand_inputs_sorts_and_dedups(tmp_path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    got = expand_inputs([str(tmp_path / "*.txt"), str(tmp_path / "a.txt")])
    assert got == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


def test_settings_validate():
    with pytest.raises(ValueError, match="date_from"):
        SourceSettings(date_from="yesterday")
