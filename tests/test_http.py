"""The HTTP client against a hostile local server: where each endpoint lands, in bounded time."""

from __future__ import annotations

import threading
import time

import pytest

from tests.servers import CYRILLIC_TEXT, ROUTES, HostileServer, gzip_bomb
from transforms.http import (
    FEED_TYPES,
    FetchSettings,
    Response,
    SafeFetcher,
    address_problem,
    decode_text,
    decompress,
    parse_robots,
)
from transforms.records import Failure


def quick_settings(server: HostileServer, **changes) -> FetchSettings:
    """Small timeouts so every hostile endpoint resolves within about a second."""
    values = {
        "user_agent": "storybeam-test/1.0",
        "timeout_s": 1.0,
        "connect_timeout_s": 0.5,
        "max_bytes": 3_000_000,  # the 2 MB bomb passes the wire cap and must stop while inflating
        "retries": 1,
        "backoff_s": 0.05,
        "max_retry_after_s": 2.0,
        "per_host_concurrency": 4,
        "per_host_min_delay_s": 0.0,
        "allow_hosts": server.allow,
    }
    values.update(changes)
    return FetchSettings(**values)


@pytest.fixture(scope="module")
def server():
    gzip_bomb()  # build once, outside the timed requests
    with HostileServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def fetcher(server):
    return SafeFetcher(quick_settings(server))


@pytest.mark.parametrize("path", list(ROUTES))
def test_each_hostile_endpoint_lands_where_it_should(server, fetcher, path):
    want, reason = ROUTES[path]
    started = time.monotonic()
    result = fetcher.fetch(server.url(path))
    elapsed = time.monotonic() - started
    if want == "ok":
        assert isinstance(result, Response), result
        assert result.status == 200
        assert "<html" in result.text
    else:
        assert isinstance(result, Failure), result
        assert (result.stage, result.reason) == ("fetch", reason), result.detail
        assert result.url == server.url(path)  # failures name the URL asked for
    # retries, Retry-After (1 s) and the total deadline (1 s) bound every request
    assert elapsed < 3.5
    assert server.requested("/private/") == 0


SITEMAP = b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>/a</loc></url></urlset>'


@pytest.mark.parametrize(
    ("label", "body", "want"),
    [
        ("application/x-gzip", "gzip", "ok"),
        ("application/gzip", "gzip", "ok"),
        ("application/octet-stream", "gzip", "ok"),  # told by its gzip signature
        ("application/x-gzip", "bomb", "too_large"),  # 2 GiB once unwrapped: stops at max_bytes
        ("application/x-gzip", "corrupt", "bad_encoding"),
        ("image/jpeg", "jpeg", "not_feed"),
        ("application/octet-stream", "pdf", "not_feed"),
    ],
)
def test_feed_requests_unwrap_gzip_files_within_the_size_cap(server, fetcher, label, body, want):
    """sitemap.xml.gz is a gzip file, not a gzip Content-Encoding: a feed request unwraps it
    (bounded like any body) and names what it refuses as not_feed."""
    import gzip

    bodies = {
        "gzip": gzip.compress(SITEMAP),
        "bomb": gzip_bomb(),
        "corrupt": gzip.compress(SITEMAP)[:12] + b"\xff" * 40,
        "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(100),
        "pdf": b"%PDF-1.4\n",
    }
    path = f"/gz/{label.replace('/', '-')}-{body}.xml.gz"
    server.routes[path] = lambda h: h.send(200, bodies[body], {"Content-Type": label})
    result = fetcher.fetch(server.url(path), accept=FEED_TYPES)
    if want == "ok":
        assert isinstance(result, Response), result
        assert result.body == SITEMAP
    else:
        assert isinstance(result, Failure) and result.reason == want, result
    page = fetcher.fetch(server.url(path))  # an article page that is a gzip file stays refused
    assert isinstance(page, Failure) and page.reason == "not_html"


def test_trickling_body_stops_at_the_total_deadline(server):
    fetcher = SafeFetcher(quick_settings(server, timeout_s=0.8, connect_timeout_s=0.4))
    started = time.monotonic()
    result = fetcher.fetch(server.url("/trickle"))
    assert isinstance(result, Failure) and result.reason == "timeout"
    assert time.monotonic() - started < 1.5


def test_decompression_bomb_is_capped_after_inflating(server, fetcher):
    result = fetcher.fetch(server.url("/bomb"))
    assert result.reason == "too_large"
    assert "after decompression" in result.detail  # the wire size (2 MB) was under the cap


def test_header_charset_decodes_windows_1251(server, fetcher):
    result = fetcher.fetch(server.url("/cp1251"))
    assert result.charset == "cp1251"
    assert CYRILLIC_TEXT in result.text


def test_retry_after_is_honoured_then_success(server):
    fetcher = SafeFetcher(quick_settings(server))
    before = server.hits["/flaky"]
    started = time.monotonic()
    result = fetcher.fetch(server.url("/flaky"))
    if before == 0:  # first request of the module: 503, wait Retry-After (1 s), then 200
        assert time.monotonic() - started >= 0.9
    assert isinstance(result, Response)


def test_retry_after_longer_than_the_cap_gives_up_at_once(server, fetcher):
    started = time.monotonic()
    result = fetcher.fetch(server.url("/slow-retry-after"))
    assert result.reason == "http_503"
    assert "Retry-After" in result.detail
    assert time.monotonic() - started < 0.5


def test_retries_are_bounded(server, fetcher):
    before = server.hits["/always-503"]
    result = fetcher.fetch(server.url("/always-503"))
    assert result.reason == "http_503"
    assert server.hits["/always-503"] - before == 2  # one try + retries=1


@pytest.mark.parametrize(
    "spelling",
    [
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1",
        "localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ],
)
def test_loopback_in_every_spelling_is_refused_unless_allowed(server, spelling):
    fetcher = SafeFetcher(quick_settings(server, allow_hosts=()))
    before = len(server.requests)
    result = fetcher.fetch(f"http://{spelling}:{server.port}/article/1")
    assert isinstance(result, Failure)
    assert result.reason in ("blocked_address", "dns_error"), result.detail
    assert len(server.requests) == before  # never connected


def test_allow_list_is_exact_host_and_port(server, fetcher):
    assert isinstance(fetcher.fetch(server.url("/article/1")), Response)
    # same address, other spelling: still refused
    other = fetcher.fetch(f"http://127.1:{server.port}/article/1")
    assert other.reason == "blocked_address"


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::1",
        "::127.0.0.1",
    ],
)
def test_internal_addresses_have_a_problem(address):
    assert address_problem(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_fine(address):
    assert address_problem(address) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "http://",
        "http://user:pw@example.com/",
        "http://[::1/",
    ],
)
def test_bad_urls(url):
    fetcher = SafeFetcher(FetchSettings())
    result = fetcher.fetch(url)
    assert result.reason == "bad_url"


def test_per_host_concurrency_holds_under_load():
    with HostileServer() as server:
        fetcher = SafeFetcher(quick_settings(server, per_host_concurrency=2, timeout_s=3.0, connect_timeout_s=1.0))
        results = []
        threads = [
            threading.Thread(target=lambda n=n: results.append(fetcher.fetch(server.url(f"/article/{n}?sleep=0.15"))))
            for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(isinstance(r, Response) for r in results)
        assert server.max_in_flight <= 2
        assert server.requested("/article/") == 8


def test_min_delay_between_requests_to_one_host():
    with HostileServer() as server:
        fetcher = SafeFetcher(quick_settings(server, per_host_min_delay_s=0.15))
        started = time.monotonic()
        for n in range(4):
            fetcher.fetch(server.url(f"/article/{n}"))
        # robots.txt + 4 pages = 5 request starts, at least 4 gaps of 0.15 s
        assert time.monotonic() - started >= 0.55


def test_robots_4xx_allows_all_and_5xx_disallows():
    with HostileServer() as server:
        server.routes["/robots.txt"] = lambda h: h.send(404, b"none")
        fetcher = SafeFetcher(quick_settings(server))
        assert isinstance(fetcher.fetch(server.url("/private/open-now")), Response)
    with HostileServer() as server:
        server.routes["/robots.txt"] = lambda h: h.send(503, b"down", {"Retry-After": "0"})
        fetcher = SafeFetcher(quick_settings(server, retries=0))
        result = fetcher.fetch(server.url("/article/1"))
        assert result.reason == "robots_unavailable"  # RFC 9309: all disallowed for now
        assert server.requested("/article/") == 0


def test_host_that_is_down_fails_with_the_connection_error_not_robots():
    """robots.txt of a host that is down cannot be read either: the page is refused with the
    network's own reason (a transient failure to retry), not as robots_disallowed."""
    import socket

    from transforms.feeds import is_transient

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = FetchSettings(
        user_agent="storybeam-test/1.0",
        timeout_s=1.0,
        connect_timeout_s=0.5,
        retries=0,
        per_host_min_delay_s=0.0,
        allow_hosts=(f"127.0.0.1:{port}",),
    )
    result = SafeFetcher(settings).fetch(f"http://127.0.0.1:{port}/article/1")
    assert isinstance(result, Failure) and result.reason == "connection_error", result
    assert "robots.txt unreachable" in result.detail
    assert is_transient(result)


def test_robots_is_cached():
    with HostileServer() as server:
        fetcher = SafeFetcher(quick_settings(server))
        for n in range(3):
            fetcher.fetch(server.url(f"/article/{n}"))
        assert server.hits["/robots.txt"] == 1


def test_conditional_get_returns_304(server, fetcher):
    first = fetcher.fetch(server.url("/etag.xml"), accept=FEED_TYPES)
    assert first.status == 200 and first.headers["etag"] == '"v1"'
    again = fetcher.fetch(server.url("/etag.xml"), accept=FEED_TYPES, etag='"v1"')
    assert again.status == 304 and again.body == b""


def test_parse_robots_longest_match_and_wildcards():
    rules = parse_robots(
        "User-agent: other\nDisallow: /\n\n"
        "User-agent: StoryBeam\nUser-agent: x\nDisallow: /news/\nAllow: /news/public\n"
        "Disallow: /*.pdf$\nCrawl-delay: 5\n",
        "storybeam/0.1 (+https://example.invalid)",
    )
    assert rules.allows("/")
    assert not rules.allows("/news/secret")
    assert rules.allows("/news/public/1")
    assert not rules.allows("/files/report.pdf")
    assert rules.allows("/files/report.pdf?x=1")
    assert rules.crawl_delay_s == 5
    star = parse_robots("User-agent: *\nDisallow: /a\nAllow: /a\n", "bot/1")
    assert star.allows("/a")  # a tie goes to allow


def test_crawl_delay_is_capped(server):
    server.routes["/robots.txt"] = lambda h: h.send(
        200, b"User-agent: *\nCrawl-delay: 100\n", {"Content-Type": "text/plain"}
    )
    try:
        fetcher = SafeFetcher(quick_settings(server, max_crawl_delay_s=0.2))
        started = time.monotonic()
        fetcher.fetch(server.url("/article/cd1"))
        fetcher.fetch(server.url("/article/cd2"))
        elapsed = time.monotonic() - started
        assert 0.2 <= elapsed < 1.5
    finally:
        from tests.servers import ROBOTS_TXT

        server.routes["/robots.txt"] = lambda h: h.send(200, ROBOTS_TXT, {"Content-Type": "text/plain"})


def test_decode_text_order_bom_header_meta_detection():
    assert decode_text(b"\xef\xbb\xbfhi", "latin-1") == ("hi", "utf-8")
    assert decode_text("é".encode("cp1252"), "iso-8859-1")[0] == "é"
    meta = b'<html><head><meta charset="windows-1251"></head><body>' + CYRILLIC_TEXT.encode("cp1251")
    text, charset = decode_text(meta, None)
    assert charset == "cp1251" and CYRILLIC_TEXT in text
    detected = ("<p>" + CYRILLIC_TEXT * 20 + "</p>").encode("cp1251")
    assert CYRILLIC_TEXT in decode_text(detected, None)[0]
    assert decode_text(b"plain", "no-such-charset") == ("plain", "utf-8")
    swedish = "<p>Det är många människor som väntar på tåget i Göteborg, och förseningarna fortsätter.</p>"
    assert decode_text(swedish.encode("latin-1"), None) == (swedish, "cp1252")


def test_decompress_stacked_and_corrupt():
    import gzip
    import zlib

    body = gzip.compress(zlib.compress(b"hello"))
    assert decompress(body, ["deflate", "gzip"], 100) == b"hello"
    with pytest.raises(ValueError):
        decompress(b"not gzip", ["gzip"], 100)
    with pytest.raises(ValueError):
        decompress(b"x", ["compress"], 100)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_s", 0),
        ("max_bytes", -1),
        ("retries", -1),
        ("per_host_concurrency", 0),
        ("user_agent", ""),
        ("connect_timeout_s", 99),
        ("allow_hosts", ("host:notaport",)),
        ("allowed_content_types", ()),
    ],
)
def test_settings_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        FetchSettings(**{field: value})


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    """A CA-less self-signed certificate for the name 'localhost' only (no IP address)."""
    pytest.importorskip("cryptography")
    import datetime as dt
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(cert_file))
    return server_ctx, client_ctx


def test_https_connects_to_the_checked_address_with_the_name_for_sni(tls_pair):
    server_ctx, client_ctx = tls_pair
    with HostileServer(tls=server_ctx) as server:
        allow = (f"localhost:{server.port}", f"127.0.0.1:{server.port}")
        fetcher = SafeFetcher(quick_settings(server, allow_hosts=allow), tls_context=client_ctx)
        # 'localhost' may resolve to ::1 first (nothing listens there): the next checked
        # address is tried; the certificate is verified against the name, not the address
        result = fetcher.fetch(f"https://localhost:{server.port}/article/1")
        assert isinstance(result, Response), result
        assert f"localhost:{server.port}" in server.host_headers
        # the same server by address: the certificate does not name 127.0.0.1
        by_ip = fetcher.fetch(f"https://127.0.0.1:{server.port}/article/2")
        # robots.txt is unreachable there too: the page fails as its robots.txt did
        assert by_ip.reason == "tls_error"
        assert "robots.txt unreachable (tls_error)" in by_ip.detail
        settings = quick_settings(server, allow_hosts=allow, obey_robots=False)
        direct = SafeFetcher(settings, tls_context=client_ctx)
        by_ip = direct.fetch(f"https://127.0.0.1:{server.port}/article/2")
        assert by_ip.reason == "tls_error"
