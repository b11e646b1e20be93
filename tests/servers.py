"""A local test web server on 127.0.0.1 with hostile endpoints, for tests and benchmarks.

    with HostileServer() as server:
        server.url("/feed.xml")          # http://127.0.0.1:<port>/feed.xml
        server.allow                     # ("127.0.0.1:<port>",) for FetchSettings.allow_hosts
        server.requested("/private/")    # how often a path (prefix) was asked for
        server.max_in_flight             # most requests it ever served at once

Everything it serves is written here by the storybeam authors. Endpoints (``ROUTES`` below
lists them with what a safe fetcher must make of each):

    /robots.txt             Disallow: /private/
    /feed.xml               RSS 2.0 linking to every page endpoint below
    /growing.xml            RSS that gains three items on every request
    /etag.xml               RSS answering If-None-Match with 304
    /article/<n>            a plain article page (optionally slow: ?sleep=0.2)
    /gzip-article, /br-article, /gzip-gzip-article   compressed articles
    /cp1251                 Russian text in windows-1251, charset only in the HTTP header
    /private/secret         disallowed by robots.txt: must never be requested
    /redirect/metadata      302 -> http://169.254.169.254/latest/meta-data/
    /redirect/decimal|hex|octal|short|other-port   302 -> 127.0.0.1 spelt 2130706433,
                            0x7f000001, 0177.0.0.1, 127.1, or on a port not allowed
    /redirect/loop-a        302 -> /redirect/loop-b -> /redirect/loop-a
    /redirect/ok            302 -> /article/1 (allowed: same host and port)
    /trickle                Content-Length 64, then one byte every 2 s
    /bomb                   gzip of 2 GiB of zeros (2 MB on the wire)
    /bomb-stacked           the bomb gzipped again: "Content-Encoding: gzip, gzip"
    /huge-length            Content-Length: 10^12
    /doc.pdf                application/pdf
    /flaky                  503 + Retry-After: 1 on the first request, then the article
    /always-503             503 + Retry-After: 1 forever
    /reset                  TCP reset before any response
    /empty                  200 text/html with an empty body
    /missing                404
"""

from __future__ import annotations

import functools
import gzip
import http.server
import select
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n"

CYRILLIC_TEXT = "Новости дня: в городе открыли новый мост через реку."

ARTICLE_TEMPLATE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Local article {n}</title></head>
<body><article><h1>Local article {n}</h1>
<p>This is test article number {n}, written for the storybeam test server. It has a few
sentences of plain text so that extraction has something to find.</p>
<p>The second paragraph repeats that this page is served from 127.0.0.1 during the tests.</p>
</article></body></html>
"""

#: Endpoint -> (where it must land, reason when it fails). Used by tests and the benchmark.
ROUTES: dict[str, tuple[str, str | None]] = {
    "/article/1": ("ok", None),
    "/gzip-article": ("ok", None),
    "/gzip-gzip-article": ("ok", None),
    "/br-article": ("ok", None),
    "/cp1251": ("ok", None),
    "/redirect/ok": ("ok", None),
    "/flaky": ("ok", None),
    "/private/secret": ("failed", "robots_disallowed"),
    "/redirect/metadata": ("failed", "blocked_address"),
    "/redirect/decimal": ("failed", "blocked_address"),
    "/redirect/hex": ("failed", "blocked_address"),
    "/redirect/octal": ("failed", "blocked_address"),
    "/redirect/short": ("failed", "blocked_address"),
    "/redirect/other-port": ("failed", "blocked_address"),
    "/redirect/loop-a": ("failed", "too_many_redirects"),
    "/trickle": ("failed", "timeout"),
    "/bomb": ("failed", "too_large"),
    "/bomb-stacked": ("failed", "too_large"),
    "/huge-length": ("failed", "too_large"),
    "/doc.pdf": ("failed", "not_html"),
    "/reset": ("failed", "connection_error"),
    "/empty": ("failed", "empty_body"),
    "/missing": ("failed", "http_404"),
}


def article_html(n: int | str) -> bytes:
    return ARTICLE_TEMPLATE.format(n=n).encode("utf-8")


@functools.lru_cache(maxsize=1)
def gzip_bomb(size_mib: int = 2048) -> bytes:
    """A valid gzip member of ``size_mib`` MiB of zeros, built without compressing them all:
    after a full flush, deflate encodes every further MiB of zeros as the same bytes."""
    mib = bytes(1 << 20)
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = comp.compress(mib) + comp.flush(zlib.Z_FULL_FLUSH)
    steady = comp.compress(mib) + comp.flush(zlib.Z_FULL_FLUSH)
    final = comp.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(size_mib):
        crc = zlib.crc32(mib, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (size_mib << 20) & 0xFFFFFFFF)
    return header + first + steady * (size_mib - 1) + final + trailer


def rss(items: list[tuple[str, str]], title: str = "Local test feed") -> bytes:
    """(link, title) pairs -> an RSS 2.0 document."""
    body = "".join(
        f"<item><title>{t}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>Mon, 06 Jan 2025 10:{i % 60:02d}:00 GMT</pubDate>"
        f"<category>local</category></item>"
        for i, (link, t) in enumerate(items)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>http://example.invalid/</link>"
        f"<description>test</description>{body}</channel></rss>"
    ).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        self.record = owner._enter(path)
        owner.host_headers.append(self.headers.get("Host", ""))
        try:
            owner._dispatch(self, path)
        except OSError:  # the client went away (or the route reset the connection)
            self.close_connection = True
        finally:
            owner._leave(self.record)

    def peer_gone(self) -> bool:
        """Has the client closed its end? (A readable socket with nothing to read.)"""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # helpers for route functions
    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        # the request stops counting as in flight before its answer goes out: once the client
        # has the answer it may start the next request, possibly before this thread runs on
        self.server.owner._leave(self.record)
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "text/html; charset=utf-8")
        headers.setdefault("Content-Length", str(len(body)))
        headers.setdefault("Connection", "close")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.close_connection = True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HostileServer

    def handle_error(self, request, client_address) -> None:  # resets are on purpose
        pass


class HostileServer:
    """Start on 127.0.0.1 with a free port; stop on exit. Thread-safe request records."""

    def __init__(self, *, other_port: int = 9, tls: ssl.SSLContext | None = None) -> None:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self.scheme = "https" if tls else "http"
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self.other_port = other_port if other_port != self.port else other_port + 1
        self._lock = threading.Lock()
        self.requests: list[str] = []
        self.hits: Counter = Counter()
        self._spans: list[list[float]] = []  # [start, end] of every request
        self.host_headers: list[str] = []
        self.routes: dict[str, Callable[[_Handler], None]] = {}
        self._thread: threading.Thread | None = None
        self._install()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> HostileServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def allow(self) -> tuple[str, ...]:
        return (f"127.0.0.1:{self.port}",)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def requested(self, prefix: str) -> int:
        with self._lock:
            return sum(1 for p in self.requests if p.startswith(prefix))

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.hits.clear()
            self._spans.clear()

    # -- bookkeeping -----------------------------------------------------------------------
    def _enter(self, path: str) -> list[float]:
        record = [time.monotonic(), float("inf")]
        with self._lock:
            self.requests.append(path)
            self.hits[path] += 1
            self._spans.append(record)
        return record

    def _leave(self, record: list[float]) -> None:
        with self._lock:
            record[1] = min(record[1], time.monotonic())

    @property
    def max_in_flight(self) -> int:
        """Most requests served at once. A handler that outlives its client (the trickle)
        counts until the client was last seen connected, not until the handler returns."""
        with self._lock:
            now = time.monotonic()
            events = sorted(
                [(start, 1) for start, _ in self._spans] + [(min(end, now), -1) for _, end in self._spans],
                key=lambda e: (e[0], e[1]),
            )
        best = current = 0
        for _, step in events:
            current += step
            best = max(best, current)
        return best

    def _dispatch(self, handler: _Handler, path: str) -> None:
        route = self.routes.get(path)
        if route is None:
            for prefix, candidate in self.routes.items():
                if prefix.endswith("*") and path.startswith(prefix[:-1]):
                    route = candidate
                    break
        if route is None:
            handler.send(404, b"<html><body>not here</body></html>")
            return
        route(handler)

    # -- endpoints -------------------------------------------------------------------------
    def _install(self) -> None:
        r = self.routes
        r["/robots.txt"] = lambda h: h.send(200, ROBOTS_TXT, {"Content-Type": "text/plain"})
        r["/feed.xml"] = lambda h: h.send(200, self.feed_body(), {"Content-Type": "application/rss+xml"})
        r["/growing.xml"] = lambda h: h.send(200, self.growing_body(), {"Content-Type": "application/rss+xml"})
        r["/etag.xml"] = self._etag_feed
        r["/not-a-feed.xml"] = lambda h: h.send(200, b"<html><body><p>just a page</p></body></html>")
        r["/article/*"] = self._article
        r["/gzip-article"] = lambda h: h.send(200, gzip.compress(article_html("gz")), {"Content-Encoding": "gzip"})
        r["/gzip-gzip-article"] = lambda h: h.send(
            200,
            gzip.compress(gzip.compress(article_html("gz2"))),
            {"Content-Encoding": "gzip, gzip"},
        )
        r["/br-article"] = self._brotli
        r["/cp1251"] = lambda h: h.send(
            200,
            f"<html><body><p>{CYRILLIC_TEXT}</p></body></html>".encode("cp1251"),
            {"Content-Type": "text/html; charset=windows-1251"},
        )
        r["/private/*"] = lambda h: h.send(200, article_html("secret"))
        targets = {
            "metadata": "http://169.254.169.254/latest/meta-data/",
            "decimal": f"http://2130706433:{self.other_port}/",
            "hex": f"http://0x7f000001:{self.other_port}/",
            "octal": f"http://0177.0.0.1:{self.other_port}/",
            "short": f"http://127.1:{self.other_port}/",
            "other-port": f"http://127.0.0.1:{self.other_port}/",
            "loop-a": "/redirect/loop-b",
            "loop-b": "/redirect/loop-a",
            "ok": "/article/1",
        }
        for name, target in targets.items():
            r[f"/redirect/{name}"] = functools.partial(self._redirect, target=target)
        r["/trickle"] = self._trickle
        r["/bomb"] = lambda h: h.send(200, gzip_bomb(), {"Content-Encoding": "gzip"})
        r["/bomb-stacked"] = lambda h: h.send(200, gzip.compress(gzip_bomb()), {"Content-Encoding": "gzip, gzip"})
        r["/huge-length"] = self._huge_length
        r["/doc.pdf"] = lambda h: h.send(200, b"%PDF-1.4\n% not really a pdf\n", {"Content-Type": "application/pdf"})
        r["/flaky"] = self._flaky
        r["/always-503"] = lambda h: h.send(503, b"busy", {"Retry-After": "1"})
        r["/slow-retry-after"] = lambda h: h.send(503, b"busy", {"Retry-After": "3600"})
        r["/reset"] = self._reset
        r["/empty"] = lambda h: h.send(200, b"")
        r["/missing"] = lambda h: h.send(404, b"<html><body>gone</body></html>")

    def feed_body(self) -> bytes:
        items = [(self.url(path), f"Endpoint {path}") for path in ROUTES]
        return rss(items)

    def growing_body(self) -> bytes:
        with self._lock:
            count = 3 * self.hits["/growing.xml"]  # three more items on every request
        return rss(
            [(self.url(f"/article/g{i}"), f"Growing item {i}") for i in range(count)],
            "Growing",
        )

    def _etag_feed(self, h: _Handler) -> None:
        if h.headers.get("If-None-Match") == '"v1"':
            h.send(304, b"", {"ETag": '"v1"'})
        else:
            h.send(
                200,
                rss([(self.url("/article/e1"), "E1")]),
                {"ETag": '"v1"', "Content-Type": "application/rss+xml"},
            )

    def _article(self, h: _Handler) -> None:
        query = urlsplit(h.path).query
        if query.startswith("sleep="):
            time.sleep(float(query[6:]))
        h.send(200, article_html(urlsplit(h.path).path.rsplit("/", 1)[-1]))

    def _brotli(self, h: _Handler) -> None:
        try:
            import brotli
        except ImportError:
            h.send(200, article_html("br"))
            return
        h.send(200, brotli.compress(article_html("br")), {"Content-Encoding": "br"})

    def _redirect(self, h: _Handler, target: str) -> None:
        h.send(302, b"", {"Location": target})

    def _trickle(self, h: _Handler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", "64")
        h.end_headers()
        h.wfile.flush()
        for _ in range(64):
            h.wfile.write(b"x")
            h.wfile.flush()
            byte_sent = alive = time.monotonic()
            while alive - byte_sent < 2:
                time.sleep(0.005)
                checked = time.monotonic()
                if h.peer_gone():
                    h.record[1] = alive  # the client was last seen connected then
                    h.close_connection = True
                    return
                alive = checked
        h.close_connection = True

    def _huge_length(self, h: _Handler) -> None:
        # as in send(): the client gives up on the header alone and may start its next
        # request before this thread has written the rest and returned
        self._leave(h.record)
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(10**12))
        h.end_headers()
        h.wfile.write(b"<html>" + b" " * 1024)
        h.close_connection = True

    def _flaky(self, h: _Handler) -> None:
        with self._lock:
            first = self.hits["/flaky"] == 1
        if first:
            h.send(503, b"busy", {"Retry-After": "1"})
        else:
            h.send(200, article_html("flaky"))

    def _reset(self, h: _Handler) -> None:
        # SO_LINGER with a zero timeout turns close() into a TCP RST.
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        h.close_connection = True


def feed_run_args(config: object, feed_url: str, out: object, server: HostileServer) -> list[str]:
    """Command-line arguments of a feeds run against a test server."""
    return [
        "--config",
        str(config),
        "--source",
        "feeds",
        "--input",
        feed_url,
        "--output",
        str(out),
        "--allow-hosts",
        ",".join(server.allow),
    ]
