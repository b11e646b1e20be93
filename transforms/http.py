"""The one HTTP client of the pipeline: feeds, robots.txt and article pages.

``SafeFetcher.fetch(url) -> Response | Failure`` never raises for anything the network or a
server can do, and never takes longer than a bounded time:

* **Address safety.** The host is resolved once with ``getaddrinfo`` (which also understands
  ``2130706433``, ``0x7f000001``, ``0177.0.0.1`` and ``127.1``); every address it returns must
  be globally routable (no loopback, private, link-local/metadata, multicast, reserved,
  shared or embedded-IPv4 forms of those), and the socket connects to the address that was
  checked, while the Host header and TLS SNI keep the name. Every redirect hop is checked
  again. ``FetchSettings.allow_hosts`` opens exact ``host[:port]`` pairs (test servers).
* **Bounded time.** A total deadline per request covers connect, headers and body: every
  ``recv`` gets only the time that is left, so a body trickling a byte a second still ends
  at the deadline. DNS runs in a helper thread with the connect timeout.
* **Bounded size.** ``max_bytes`` caps the body as sent and after each decoding step
  (gzip/deflate/br, stacked encodings), so a decompression bomb stops at the cap.
* **Politeness.** robots.txt per host (RFC 9309: 4xx allows all, 5xx disallows until the
  cached answer expires: ``robots_unavailable``; a host whose robots.txt cannot be reached at
  all fails its pages with that network reason, e.g. ``connection_error``), at most ``per_host_concurrency`` requests in flight per
  host and ``per_host_min_delay_s`` (or the robots Crawl-delay, capped) between request starts
  within a process; ``transforms.feeds`` keys page fetches by host so that one worker at a
  time serves a host.
* **Retries.** 429, 500, 502, 503, 504 and connection errors are retried ``retries`` times
  with exponential backoff, honouring ``Retry-After`` up to ``max_retry_after_s`` (longer
  asks give up at once: the server asked us to stay away).

Failures are values: ``Failure(url, 'fetch', reason, detail, at)`` with reason codes
``bad_url``, ``blocked_address``, ``dns_error``, ``robots_disallowed``, ``robots_unavailable``, ``timeout``,
``connection_error``, ``too_large``, ``too_many_redirects``, ``http_<code>``, ``not_html``
(a page request refused for its type; ``not_feed`` for a feed request), ``bad_encoding``,
``empty_body``.
"""

from __future__ import annotations

import codecs
import concurrent.futures
import dataclasses
import fnmatch
import hashlib
import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cached_property
from urllib.parse import urljoin, urlsplit

from transforms.records import Failure, utcnow

try:  # optional: br is only advertised and decoded when a decoder is installed
    import brotli as _brotli
except ImportError:  # pragma: no cover - depends on the environment
    _brotli = None
_CODEC_ERRORS: tuple[type[Exception], ...] = (zlib.error, EOFError) + ((_brotli.error,) if _brotli is not None else ())

FETCH_STAGE = "fetch"

#: Content types accepted for article pages (fnmatch patterns on the bare MIME type).
HTML_TYPES: tuple[str, ...] = ("text/html", "application/xhtml+xml")
#: Labels of a gzip *file* (``sitemap.xml.gz``), as opposed to a gzip Content-Encoding.
GZIP_TYPES: tuple[str, ...] = ("application/gzip", "application/x-gzip")
#: Content types accepted for feeds: publishers serve feeds under many labels, so anything
#: textual or XML/JSON-like goes to the parser, which decides. Feed requests (see
#: ``is_feed_request``) also unwrap a gzip file body (``.xml.gz`` sitemaps, served as
#: application/x-gzip or application/octet-stream), capped at ``max_bytes`` once unwrapped.
FEED_TYPES: tuple[str, ...] = (
    "application/rss+xml",
    "application/atom+xml",
    "application/rdf+xml",
    "application/feed+json",
    "application/json",
    "application/xml",
    "text/*",
    "application/*xml",
    "application/*json",
    "application/octet-stream",
    *GZIP_TYPES,
)
#: MIME types only a feed request accepts: a request listing one of them asks for a feed.
_FEED_MARKERS = frozenset({"application/rss+xml", "application/atom+xml", "application/feed+json"})
_GZIP_MAGIC = b"\x1f\x8b"
#: ``accept=ANY_TYPE`` disables the content-type check (robots.txt).
ANY_TYPE: tuple[str, ...] = ()

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: RFC 9309 2.5: crawlers must parse at least 500 KiB of robots.txt; we read no more.
_ROBOTS_MAX_BYTES = 500 * 1024
#: robots.txt unreachable or 5xx: disallow, but ask again after this long (or sooner).
_ROBOTS_ERROR_CACHE_S = 300.0
#: Detail of a fetch refused because robots.txt could not be fetched (retry later).
ROBOTS_UNREACHABLE = "robots.txt unreachable"
#: robots.txt answered 5xx/429 (or could not be read): RFC 9309 disallows all for now.
ROBOTS_UNAVAILABLE = "robots_unavailable"
#: Failures of a robots.txt fetch that say the host cannot be reached at all: a page of that
#: host is refused with the same reason (it would have failed the same way).
_UNREACHABLE_REASONS = frozenset({"connection_error", "dns_error", "timeout", "tls_error", "blocked_address"})
#: How long a request may wait for a free per-host slot before it gives up (``timeout``).
_SLOT_WAIT_FACTOR = 4.0


@dataclass(frozen=True)
class FetchSettings:
    """How the fetcher talks to the web. Times in seconds, sizes in bytes."""

    # Sent on every request; names the crawler and where to read about it.
    user_agent: str = "storybeam/0.1 (+https://github.com/storybeam/storybeam)"
    # Total deadline for one request (connect + headers + whole body); a trickling body ends here.
    timeout_s: float = 30.0
    # Deadline for DNS resolution and the TCP/TLS connect, within timeout_s.
    connect_timeout_s: float = 10.0
    # Body cap, checked on the bytes sent and after each decompression step (bombs stop here).
    max_bytes: int = 10_000_000
    # Redirect hops followed per request; each hop is address- and robots-checked again.
    max_redirects: int = 5
    # Extra attempts after a 429/5xx/connection error (0 = try once).
    retries: int = 2
    # First backoff between attempts; doubles each attempt.
    backoff_s: float = 1.0
    # Longest Retry-After honoured; a server asking for more is given up on at once.
    max_retry_after_s: float = 30.0
    # Requests in flight at once per host (host:port) within one worker process.
    per_host_concurrency: int = 2
    # Minimum time between request starts to one host (robots Crawl-delay raises it).
    per_host_min_delay_s: float = 1.0
    # Largest Crawl-delay honoured; a larger one is capped to this.
    max_crawl_delay_s: float = 10.0
    # How long a fetched robots.txt is trusted (RFC 9309 asks for at most 24 hours).
    robots_cache_s: float = 3600.0
    # Content types accepted for article pages (fnmatch patterns on the MIME type).
    allowed_content_types: tuple[str, ...] = HTML_TYPES
    # Read and obey robots.txt before every page and feed request.
    obey_robots: bool = True
    # "host[:port]" pairs that may resolve to loopback/private addresses (test servers only).
    allow_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive = (
            "timeout_s",
            "connect_timeout_s",
            "max_bytes",
            "per_host_concurrency",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be > 0")
        non_negative = (
            "max_redirects",
            "retries",
            "backoff_s",
            "max_retry_after_s",
            "per_host_min_delay_s",
            "max_crawl_delay_s",
            "robots_cache_s",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0")
        if self.connect_timeout_s > self.timeout_s:
            raise ValueError("connect_timeout_s: must not exceed timeout_s")
        if not self.user_agent.strip() or "\n" in self.user_agent or "\r" in self.user_agent:
            raise ValueError("user_agent: must be one non-empty line")
        if not isinstance(self.allowed_content_types, tuple) or not self.allowed_content_types:
            raise ValueError("allowed_content_types: must be a non-empty list of MIME types")
        if not isinstance(self.allow_hosts, tuple):
            raise ValueError("allow_hosts: must be a list of host[:port]")  # noqa: TRY004
        for entry in self.allow_hosts:
            try:
                _parse_allow_entry(entry)
            except ValueError as err:
                raise ValueError(f"allow_hosts: {entry!r}: {err}") from None


def _parse_allow_entry(entry: str) -> tuple[str, int | None]:
    entry = entry.strip().lower()
    if not entry:
        raise ValueError("empty entry")
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    else:
        host, port = entry, ""
    if not host:
        raise ValueError("no host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("bad port")
    return host, int(port) if port else None


@dataclass(frozen=True)
class Response:
    """A successful (2xx or 304) response after redirects and decoding."""

    url: str  # final URL after redirects
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes  # decoded from Content-Encoding, at most max_bytes
    content_type: str  # bare MIME type, lower case ("" when the server sent none)
    header_charset: str | None = None  # charset parameter of Content-Type, if any
    redirects: tuple[str, ...] = ()  # URLs passed through before ``url``

    @cached_property
    def _decoded(self) -> tuple[str, str]:
        return decode_text(self.body, self.header_charset)

    @property
    def text(self) -> str:
        """Body as str: BOM, then header charset, then <meta>, then detection."""
        return self._decoded[0]

    @property
    def charset(self) -> str:
        """The charset ``text`` was decoded with."""
        return self._decoded[1]

    @property
    def body_hash(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


# --------------------------------------------------------------------------- addresses


def address_problem(ip_text: str) -> str | None:
    """Why an address must not be fetched, or None when it is globally routable."""
    try:
        ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    except ValueError:
        return "unparseable address"
    embedded: list[ipaddress.IPv4Address] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in ipaddress.IPv6Network("64:ff9b::/96") or ip in ipaddress.IPv6Network("::/96"):
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    for candidate in (ip, *embedded):
        if candidate.is_loopback:
            return f"{ip} is loopback"
        if candidate.is_link_local:
            return f"{ip} is link-local (cloud metadata lives here)"
        if candidate.is_multicast:
            return f"{ip} is multicast"
        if candidate.is_unspecified:
            return f"{ip} is unspecified"
        if candidate.is_private:
            return f"{ip} is private"
        if candidate.is_reserved:
            return f"{ip} is reserved"
        if not candidate.is_global:
            return f"{ip} is not globally routable"
    return None


def _is_allowed(host: str, port: int, allow: tuple[tuple[str, int | None], ...]) -> bool:
    host = host.lower().strip("[]")
    return any(h == host and (p is None or p == port) for h, p in allow)


# --------------------------------------------------------------------------- robots.txt


@dataclass(frozen=True)
class RobotsRules:
    """The robots.txt group that applies to us (RFC 9309)."""

    rules: tuple[tuple[bool, str], ...] = ()  # (allow?, path pattern)
    crawl_delay_s: float | None = None
    disallow_all: bool = False  # robots.txt unreachable / 5xx: stay away for now
    note: str = ""
    # reason code of a fetch these rules refuse: robots_disallowed; with disallow_all, the
    # network error that kept robots.txt from us (the host is down) or robots_unavailable
    reason: str = "robots_disallowed"

    def allows(self, path: str) -> bool:
        if self.disallow_all:
            return False
        if path == "/robots.txt":
            return True
        best_len, allowed = -1, True
        for allow, pattern in self.rules:
            if _robots_match(pattern, path):
                length = len(pattern)
                # longest match wins; on a tie the least restrictive (allow) wins
                if length > best_len or (length == best_len and allow):
                    best_len, allowed = length, allow
        return allowed


def _robots_match(pattern: str, path: str) -> bool:
    if not pattern:
        return False
    regex = re.escape(pattern).replace(r"\*", ".*")
    if regex.endswith(r"\$"):
        regex = regex[:-2] + "$"
    return re.match(regex, path) is not None


def _robots_path(pattern: str) -> str:
    """Percent-encoding in rules and paths is compared in one (upper-case) spelling."""
    return re.sub(r"%[0-9a-fA-F]{2}", lambda m: m.group(0).upper(), pattern)


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """Pick the group for our product token (else ``*``) and return its rules."""
    token = user_agent.split("/", 1)[0].split()[0].lower() if user_agent.strip() else "*"
    groups: list[tuple[list[str], list[tuple[bool, str]], list[float]]] = []
    current: tuple[list[str], list[tuple[bool, str]], list[float]] | None = None
    last_was_agent = False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if ":" not in line:
            continue
        key, value = (part.strip() for part in line.split(":", 1))
        key = key.lower()
        if key in ("user-agent", "useragent"):
            if current is None or not last_was_agent:
                current = ([], [], [])
                groups.append(current)
            current[0].append(value.lower())
            last_was_agent = True
            continue
        last_was_agent = False
        if current is None:
            continue
        if key in ("allow", "disallow"):
            if value:
                current[1].append((key == "allow", _robots_path(value)))
        elif key == "crawl-delay":
            try:
                current[2].append(float(value))
            except ValueError:
                pass
    matched = [g for g in groups if token in g[0]] or [g for g in groups if "*" in g[0]]
    rules = tuple(rule for g in matched for rule in g[1])
    delays = [d for g in matched for d in g[2] if d >= 0]
    return RobotsRules(rules=rules, crawl_delay_s=max(delays) if delays else None)


# --------------------------------------------------------------------------- decoding

_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]{1,40})""",
    re.IGNORECASE,
)
#: WHATWG: these labels mean windows-1252 in practice.
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "iso8859-1": "cp1252",
    "x-sjis": "shift_jis",
    "gb2312": "gb18030",
    "gbk": "gb18030",
}


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    # a <meta> or header claiming UTF-16 on bytes that reached us as ASCII-compatible is wrong
    return name


def decode_text(body: bytes, header_charset: str | None = None) -> tuple[str, str]:
    """Bytes -> (str, charset used): BOM, then the header charset, then ``<meta>``, then
    detection (charset-normalizer), then UTF-8 with replacement characters."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            return body[len(bom) :].decode(name, errors="replace"), name
    name = _codec(header_charset)
    if name is None:
        match = _META_CHARSET.search(body[:4096])
        if match:
            name = _codec(match.group(1).decode("ascii", "ignore"))
            if name and name.startswith("utf-16"):
                name = "utf-8"
    if name is None:
        name = _detect(body)
    try:
        return body.decode(name, errors="replace"), name
    except LookupError:  # pragma: no cover - codec names come from codecs.lookup
        return body.decode("utf-8", errors="replace"), "utf-8"


#: Languages that windows-1252 writes in full (charset-normalizer's names)
_CP1252_LANGUAGES = frozenset(
    {"English", "French", "German", "Spanish", "Portuguese", "Italian", "Dutch", "Swedish", "Danish", "Norwegian"}
    | {"Finnish", "Indonesian"}
)
#: How much worse (chaos up, coherence down; both 0-1) windows-1252 may fit and still be taken
_CP1252_SLACK = 0.05


def detect_charset(data: bytes) -> str | None:
    """Undeclared legacy bytes -> the most likely codec name, None when nothing fits.

    charset-normalizer alone often ties or mis-ranks the single-byte Latin code pages on
    Western European text (French or Swedish read as cp1250 or cp1257: "trčs" for "très",
    "Ł5m" for "£5m"): their letters differ in a few bytes, and its measures see the same words
    either way (it may even name the language of the wrong reading Hungarian). So when the
    text read as windows-1252 is in a language that windows-1252 writes and fits about as well
    as the winner, windows-1252 is taken: the legacy default of those languages (WHATWG's
    fallback for them). Text in Central European, Baltic or Turkish code pages reads as its
    own language there too (Romanian, Hungarian...) or fits clearly worse, and keeps its code
    page."""
    from charset_normalizer import from_bytes
    from charset_normalizer.utils import is_multi_byte_encoding

    sample = data[:200_000]
    best = from_bytes(sample).best()
    if best is None or not best.encoding:
        return None
    if best.encoding != "cp1252" and not is_multi_byte_encoding(best.encoding):
        western = from_bytes(sample, cp_isolation=["cp1252"]).best()
        if (
            western is not None
            and western.language in _CP1252_LANGUAGES
            and western.chaos <= best.chaos + _CP1252_SLACK
            and western.coherence >= best.coherence - _CP1252_SLACK
        ):
            return "cp1252"
    return best.encoding


def _detect(body: bytes) -> str:
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        found = detect_charset(body)
        if found:
            return _codec(found) or "utf-8"
    except Exception:  # noqa: BLE001, S110 - detection is best effort
        pass
    return "utf-8"


class TooLarge(Exception):
    """A body that grows past its cap when decoded."""


def _inflate(data: bytes, cap: int, wbits: int) -> bytes:
    out = bytearray()
    decomp = zlib.decompressobj(wbits)
    buf = data
    while True:
        chunk = decomp.decompress(buf, cap + 1 - len(out))
        out += chunk
        if len(out) > cap:
            raise TooLarge(f"more than {cap} bytes after decompression")
        buf = decomp.unconsumed_tail
        if decomp.eof:
            rest = decomp.unused_data
            if wbits & 16 and rest.strip(b"\0"):  # concatenated gzip members
                decomp, buf = zlib.decompressobj(wbits), rest
                continue
            break
        if not buf:
            tail = decomp.flush(cap + 1 - len(out)) if hasattr(decomp, "flush") else b""
            out += tail
            if len(out) > cap:
                raise TooLarge(f"more than {cap} bytes after decompression")
            break
    return bytes(out)


def _unbrotli(data: bytes, cap: int) -> bytes:
    decomp = _brotli.Decompressor()
    out = bytearray()
    step = 1 << 16
    pending = data
    while True:
        if pending and decomp.can_accept_more_data():
            chunk = decomp.process(pending[:step], output_buffer_limit=step)
            pending = pending[step:]
        else:
            chunk = decomp.process(b"", output_buffer_limit=step)
        out += chunk
        if len(out) > cap:
            raise TooLarge(f"more than {cap} bytes after decompression")
        if decomp.is_finished() or (not chunk and not pending and decomp.can_accept_more_data()):
            break
    return bytes(out)


def codings(header: str | None) -> list[str]:
    """The codings of a Content-Encoding / Transfer-Encoding header, in the order applied."""
    return [c.strip().lower() for c in (header or "").split(",") if c.strip()]


def dechunk(body: bytes) -> bytes:
    """Undo HTTP/1.1 chunked transfer coding, as crawl archives keep it: hex size line (with
    optional ``;extensions``), data, line end; a zero-size chunk ends the body (trailers are
    dropped). Bare LF line ends are accepted, and so is a body that ends without the zero-size
    chunk or inside the last chunk (a crawler that stopped reading keeps what it had).
    Raises ``ValueError`` when the body is not chunked framing."""
    out = bytearray()
    at = 0
    while at < len(body):
        eol = body.find(b"\n", at)
        if eol < 0:
            raise ValueError(f"chunk size line without end at byte {at}")
        line = body[at:eol].split(b";", 1)[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            raise ValueError(f"bad chunk size {line[:20]!r} at byte {at}") from None
        if size < 0:
            raise ValueError(f"bad chunk size {line[:20]!r} at byte {at}")
        if size == 0:
            return bytes(out)
        start = eol + 1
        out += body[start : start + size]
        at = start + size
        at += 2 if body[at : at + 2] == b"\r\n" else 1 if body[at : at + 1] == b"\n" else 0
    if not out:
        raise ValueError("no chunk in the body")
    return bytes(out)


def decompress(body: bytes, encodings: list[str], cap: int) -> bytes:
    """Undo Content-Encoding (listed in the order applied) with ``cap`` on every step.
    Raises ``TooLarge`` or ``ValueError`` (unknown or corrupt encoding)."""
    for coding in reversed(encodings):
        if coding in ("", "identity"):
            continue
        try:
            if coding in ("gzip", "x-gzip"):
                body = _inflate(body, cap, 16 + zlib.MAX_WBITS)
            elif coding == "deflate":
                try:
                    body = _inflate(body, cap, zlib.MAX_WBITS)
                except zlib.error:  # servers often send raw deflate without the zlib header
                    body = _inflate(body, cap, -zlib.MAX_WBITS)
            elif coding == "br" and _brotli is not None:
                body = _unbrotli(body, cap)
            else:
                raise ValueError(f"unsupported content-encoding {coding!r}")
        except TooLarge:
            raise
        except ValueError:
            raise
        except _CODEC_ERRORS as err:
            raise ValueError(f"corrupt {coding} body: {err}") from None
    return body


# --------------------------------------------------------------------------- connections


class _DeadlineSocket:
    """A socket whose every send/recv gets only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float]):
        self._sock, self._deadline, self._clock = sock, deadline, clock
        self._io_refs, self._closed = 0, False

    def _arm(self) -> None:
        left = self._deadline - self._clock()
        if left <= 0:
            raise TimeoutError("total deadline passed")
        self._sock.settimeout(left)

    def recv_into(self, buffer, nbytes: int = 0, flags: int = 0) -> int:
        self._arm()
        return self._sock.recv_into(buffer, nbytes, flags)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._arm()
        return self._sock.recv(bufsize, flags)

    def sendall(self, data, flags: int = 0) -> None:
        self._arm()
        self._sock.sendall(data, flags)

    def makefile(self, mode: str = "rb", buffering: int | None = None, **_: object):
        # http.client closes the connection's socket once the response owns it; like
        # socket.socket, keep the real socket open while a file made from it is open.
        self._io_refs += 1
        raw = socket.SocketIO(self, "rb")
        return io.BufferedReader(raw, buffering or io.DEFAULT_BUFFER_SIZE)

    def _decref_socketios(self) -> None:
        self._io_refs -= 1
        if self._closed and self._io_refs <= 0:
            self._sock.close()

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._sock.close()

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) connection to already-checked IPs (tried in order); the Host header and
    TLS SNI keep the name."""

    def __init__(self, scheme, host, port, ips, connect_timeout, deadline, clock, tls):
        super().__init__(host, port, timeout=connect_timeout)
        self.default_port = _DEFAULT_PORTS[scheme]  # Host header omits the default port
        self._scheme, self._ips, self._tls = scheme, tuple(ips), tls
        self._deadline, self._clock = deadline, clock

    def _left(self) -> float:
        left = self._deadline - self._clock()
        if left <= 0:
            raise TimeoutError("total deadline passed before connect")
        return min(self.timeout, left)

    def connect(self) -> None:
        error: OSError | None = None
        for ip in self._ips:
            try:
                sock = socket.create_connection((ip, self.port), self._left())
                break
            except TimeoutError:
                raise
            except OSError as err:  # refused on this address: try the next checked one
                error = err
        else:
            raise error or OSError("no address to connect to")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._scheme == "https":
            sock.settimeout(max(0.01, self._left()))
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = _DeadlineSocket(sock, self._deadline, self._clock)


# --------------------------------------------------------------------------- politeness


class HostGate:
    """At most ``concurrency`` requests in flight per host, and ``delay`` seconds between
    request starts to one host, within this process."""

    def __init__(
        self,
        concurrency: int,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
    ):
        self._concurrency, self._clock, self._sleep = concurrency, clock, sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._next_start: dict[str, float] = {}

    @contextmanager
    def slot(self, host: str, delay: float, wait_limit: float) -> Iterator[bool]:
        with self._lock:
            sem = self._slots.setdefault(host, threading.BoundedSemaphore(self._concurrency))
        if not sem.acquire(timeout=wait_limit):
            yield False
            return
        try:
            with self._lock:
                now = self._clock()
                start = max(now, self._next_start.get(host, now))
                self._next_start[host] = start + delay
            if start > now:
                self._sleep(start - now)
            yield True
        finally:
            sem.release()


# --------------------------------------------------------------------------- the fetcher


class _Attempt(Exception):
    """One attempt's outcome that is not a response: reason code, detail, retryable?"""

    def __init__(self, reason: str, detail: str, retry: bool = False, wait: float | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.retry, self.wait = reason, detail, retry, wait


def _fail(url: str, reason: str, detail: str) -> Failure:
    return Failure(url=url, stage=FETCH_STAGE, reason=reason, detail=detail[:500], at=utcnow())


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_content_type(content_type: str | None) -> tuple[str, str | None]:
    """A Content-Type value -> (media type, lower case, "" when none; charset or None)."""
    if not content_type:
        return "", None
    parts = content_type.split(";")
    mime = parts[0].strip().lower()
    charset = None
    for param in parts[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip("\"'") or None
    return mime, charset


#: Leading bytes of binary formats that are never a page (PDF, PNG, GIF, JPEG, ZIP, gzip).
BINARY_MAGIC = (
    b"%PDF",
    b"\x89PNG",
    b"GIF8",
    b"\xff\xd8\xff",
    b"PK\x03\x04",
    b"\x1f\x8b",
)


def is_feed_request(accept: tuple[str, ...]) -> bool:
    """Does a request with these accepted types ask for a feed (``FEED_TYPES``)? Its refusals
    are ``not_feed`` (``not_html`` for pages) and gzip file bodies are unwrapped."""
    return any(pattern in _FEED_MARKERS for pattern in accept)


def _type_ok(mime: str, body: bytes, accept: tuple[str, ...]) -> bool:
    if not accept:
        return True
    if body.startswith(BINARY_MAGIC) or body.lstrip().startswith(BINARY_MAGIC):
        return False
    if not mime:  # no Content-Type: sniff (binary magic already refused above)
        return True
    return any(fnmatch.fnmatchcase(mime, pattern) for pattern in accept)


class SafeFetcher:
    """Thread-safe fetcher; build one per worker process (``DoFn.setup`` via ``Shared``).

    ``clock``/``sleep``/``resolve``/``tls_context`` are injectable so tests control time,
    DNS and the trusted certificates.
    """

    def __init__(
        self,
        settings: FetchSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        resolve: Callable[..., list] = socket.getaddrinfo,
        tls_context: ssl.SSLContext | None = None,
    ):
        self.settings = settings
        self._clock, self._sleep, self._resolve = clock, sleep, resolve
        self._allow = tuple(_parse_allow_entry(e) for e in settings.allow_hosts)
        self._gate = HostGate(settings.per_host_concurrency, clock, sleep)
        self._tls = tls_context or ssl.create_default_context()
        self._dns = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="storybeam-dns")
        self._robots: dict[str, tuple[RobotsRules, float]] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._dns.shutdown(wait=False, cancel_futures=True)

    # -- public ---------------------------------------------------------------------------

    def fetch(
        self,
        url: str,
        *,
        accept: tuple[str, ...] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Response | Failure:
        """GET ``url`` following redirects. ``accept``: MIME patterns the final response may
        have (None = ``allowed_content_types``; ``ANY_TYPE`` = no check). With ``etag`` /
        ``last_modified`` a 304 comes back as a ``Response`` with status 304 and no body."""
        accept = self.settings.allowed_content_types if accept is None else accept
        try:
            request = _Request(accept, etag, last_modified)
            return self._fetch(url, request, robots=self.settings.obey_robots)
        except Exception as err:  # noqa: BLE001 - a fetch never stops the run
            return _fail(url, "connection_error", f"unexpected {type(err).__name__}: {err}")

    def robots_for(self, scheme: str, netloc: str) -> RobotsRules:
        """The cached robots rules of one origin, fetching robots.txt when stale."""
        key = f"{scheme}://{netloc}"
        with self._lock:
            lock = self._robots_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._robots.get(key)
            if cached and cached[1] > self._clock():
                return cached[0]
            rules, ttl = self._load_robots(key)
            self._robots[key] = (rules, self._clock() + ttl)
            return rules

    # -- internals ------------------------------------------------------------------------

    def _load_robots(self, origin: str) -> tuple[RobotsRules, float]:
        request = _Request(ANY_TYPE, truncate=_ROBOTS_MAX_BYTES)
        result = self._fetch(origin + "/robots.txt", request, robots=False)
        ttl = self.settings.robots_cache_s
        if isinstance(result, Response):
            if 200 <= result.status < 300:
                return parse_robots(result.text, self.settings.user_agent), ttl
            return RobotsRules(note=f"status {result.status}"), ttl
        code = result.reason
        if code.startswith("http_4") and code != "http_429":
            return RobotsRules(note=f"{code}: allow all"), ttl  # RFC 9309 2.3.1.3
        # 5xx, 429, unreachable: RFC 9309 2.3.1.4 - assume complete disallow, ask again soon
        ttl = min(ttl, _ROBOTS_ERROR_CACHE_S)
        if code in _UNREACHABLE_REASONS:
            return RobotsRules(disallow_all=True, note=f"{ROBOTS_UNREACHABLE} ({code})", reason=code), ttl
        note = f"robots.txt unavailable ({code}): everything disallowed for now (RFC 9309)"
        return RobotsRules(disallow_all=True, note=note, reason=ROBOTS_UNAVAILABLE), ttl

    def _check_target(self, url: str) -> _Target | Failure:
        """Parse, resolve once and check every address of ``url``'s host."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as err:
            return _fail(url, "bad_url", str(err))
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname:
            return _fail(url, "bad_url", "only absolute http(s) URLs are fetched")
        if parts.username or parts.password:
            return _fail(url, "bad_url", "credentials in URL")
        try:
            host = parts.hostname
            if not host.isascii():
                host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return _fail(url, "bad_url", "host is not a valid IDNA name")
        port = port or _DEFAULT_PORTS[scheme]
        resolved = self._getaddrinfo(url, host, port)
        if isinstance(resolved, Failure):
            return resolved
        if not _is_allowed(host, port, self._allow):
            for ip in resolved:
                problem = address_problem(ip)
                if problem:
                    return _fail(url, "blocked_address", f"{host}:{port} -> {problem}")
        name = f"[{host}]" if ":" in host else host
        netloc = name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return _Target(url, scheme, host, port, netloc, tuple(resolved), target)

    def _getaddrinfo(self, url: str, host: str, port: int) -> list[str] | Failure:
        future = self._dns.submit(self._resolve, host, port, 0, socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=self.settings.connect_timeout_s)
        except concurrent.futures.TimeoutError:
            return _fail(
                url,
                "timeout",
                f"DNS lookup of {host} took longer than the connect timeout",
            )
        except (OSError, UnicodeError) as err:
            return _fail(url, "dns_error", f"{host}: {err}")
        addresses = []
        for info in infos:
            ip = info[4][0]
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            return _fail(url, "dns_error", f"{host}: no addresses")
        return addresses

    def _fetch(self, url: str, request: _Request, *, robots: bool) -> Response | Failure:
        seen: list[str] = []
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            target = self._check_target(current)
            if isinstance(target, Failure):
                return _via(url, current, target)
            delay = self.settings.per_host_min_delay_s
            if robots:
                rules = self.robots_for(target.scheme, target.netloc)
                if not rules.allows(_robots_path(target.path)):
                    detail = rules.note or "disallowed by robots.txt"
                    return _fail(url, rules.reason, f"{current}: {detail}")
                if rules.crawl_delay_s is not None:
                    capped = min(rules.crawl_delay_s, self.settings.max_crawl_delay_s)
                    delay = max(delay, capped)
            outcome = self._with_retries(target, request, delay)
            if isinstance(outcome, Failure):
                return _via(url, current, outcome)
            if isinstance(outcome, str):  # a redirect target
                seen.append(current)
                current = urljoin(current, outcome)
                if current in seen:
                    return _fail(url, "too_many_redirects", f"redirect loop at {current}")
                # validators belong to the first URL only
                request = dataclasses.replace(request, etag=None, last_modified=None)
                continue
            return Response(
                url=current,
                status=outcome.status,
                headers=outcome.headers,
                body=outcome.body,
                content_type=outcome.content_type,
                header_charset=outcome.header_charset,
                redirects=tuple(seen),
            )
        detail = f"more than {self.settings.max_redirects} redirects"
        return _fail(url, "too_many_redirects", detail)

    def _with_retries(self, target: _Target, request: _Request, delay: float) -> _Outcome | str | Failure:
        settings = self.settings
        last: _Attempt | None = None
        for attempt in range(settings.retries + 1):
            if last is not None:
                wait = settings.backoff_s * (2 ** (attempt - 1))
                if last.wait is not None:  # Retry-After: the server said how long
                    if last.wait > settings.max_retry_after_s:
                        break
                    wait = max(wait, last.wait)
                self._sleep(min(wait, settings.max_retry_after_s))
            wait_limit = (settings.timeout_s + delay) * _SLOT_WAIT_FACTOR
            with self._gate.slot(target.netloc, delay, wait_limit) as got:
                if not got:
                    detail = f"no free slot for {target.netloc} in {wait_limit:.0f}s"
                    return _fail(target.url, "timeout", detail)
                try:
                    return self._once(target, request)
                except _Attempt as outcome:
                    last = outcome
            if not last.retry:
                break
        detail = last.detail if last else "no attempt"
        if last and last.wait is not None and last.wait > settings.max_retry_after_s:
            detail += f" (Retry-After {last.wait:.0f}s exceeds max_retry_after_s)"
        return _fail(target.url, last.reason if last else "connection_error", detail)

    def _once(self, target: _Target, request: _Request) -> _Outcome | str:
        settings = self.settings
        deadline = self._clock() + settings.timeout_s
        conn = _PinnedConnection(
            target.scheme,
            target.host,
            target.port,
            target.ips,
            settings.connect_timeout_s,
            deadline,
            self._clock,
            self._tls,
        )
        accept = request.accept
        encodings = "gzip, deflate" + (", br" if _brotli is not None else "")
        accept_header = ", ".join(a for a in accept if "*" not in a) + ", */*;q=0.1" if accept else "*/*"
        headers = {
            "User-Agent": settings.user_agent,
            "Accept": accept_header,
            "Accept-Encoding": encodings,
            "Connection": "close",
        }
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        try:
            try:
                conn.request("GET", target.path, headers=headers)
                resp = conn.getresponse()
                return self._read(resp, accept, request.truncate)
            finally:
                conn.close()
        except _Attempt:
            raise
        except TimeoutError as err:
            raise _Attempt("timeout", f"no complete response within {settings.timeout_s}s ({err})") from None
        except ssl.SSLError as err:
            raise _Attempt("tls_error", str(err)) from None
        except (ConnectionError, http.client.HTTPException, OSError) as err:
            raise _Attempt("connection_error", f"{type(err).__name__}: {err}", retry=True) from None

    def _read(self, resp: http.client.HTTPResponse, accept, truncate) -> _Outcome | str:
        settings = self.settings
        status = resp.status
        headers: dict[str, str] = {}
        for name, value in resp.getheaders():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if status in _REDIRECT_STATUSES:
            location = headers.get("location", "").strip()
            if not location:
                raise _Attempt(f"http_{status}", "redirect without Location")
            return location
        if status == 304:
            return _Outcome(304, headers, b"", "", None)
        if status in _RETRY_STATUSES:
            wait = _retry_after(headers.get("retry-after"))
            raise _Attempt(f"http_{status}", f"HTTP {status}", retry=True, wait=wait)
        if not 200 <= status < 300:
            raise _Attempt(f"http_{status}", f"HTTP {status} {resp.reason}"[:200])
        cap = truncate or settings.max_bytes
        length = headers.get("content-length", "").strip()
        if not truncate and length.isdigit() and int(length) > cap:
            raise _Attempt("too_large", f"Content-Length {length} > max_bytes {cap}")
        mime, charset = parse_content_type(headers.get("content-type"))
        feed = is_feed_request(accept)
        refused = "not_feed" if feed else "not_html"
        if accept and mime and not any(fnmatch.fnmatchcase(mime, p) for p in accept):
            raise _Attempt(refused, f"content type {mime!r} not accepted")
        chunks, size = [], 0
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:
                if truncate:
                    break
                raise _Attempt("too_large", f"body larger than max_bytes {cap}")
        body = b"".join(chunks)
        try:
            body = decompress(body, codings(headers.get("content-encoding")), cap)
        except TooLarge as err:
            if not truncate:
                raise _Attempt("too_large", str(err)) from None
            body = b""
        except ValueError as err:
            raise _Attempt("bad_encoding", str(err)) from None
        if feed and body.startswith(_GZIP_MAGIC):  # a gzip file: sitemap.xml.gz
            try:
                body = _inflate(body, cap, 16 + zlib.MAX_WBITS)
            except TooLarge as err:
                raise _Attempt("too_large", f"gzip file: {err}") from None
            except _CODEC_ERRORS as err:
                raise _Attempt("bad_encoding", f"corrupt gzip file: {err}") from None
        if accept and not _type_ok(mime, body, accept):
            raise _Attempt(
                refused,
                f"body of type {mime or 'unknown'!r} is not an accepted document",
            )
        if accept and not body.strip():
            raise _Attempt("empty_body", f"HTTP {status} with an empty body")
        return _Outcome(status, headers, body, mime, charset)


@dataclass(frozen=True)
class _Target:
    """A URL that passed the checks: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str  # IDNA name: Host header and SNI
    port: int
    netloc: str  # politeness and robots key
    ips: tuple[str, ...]  # the checked addresses; the socket connects to these only
    path: str  # request target: path and query


@dataclass(frozen=True)
class _Request:
    accept: tuple[str, ...]
    etag: str | None = None
    last_modified: str | None = None
    truncate: int | None = None  # read at most this much and stop quietly (robots.txt)


def _via(url: str, current: str, failure: Failure) -> Failure:
    """A failure on a redirect hop, reported for the URL that was asked for."""
    if current == url:
        return failure
    return _fail(url, failure.reason, f"via {current}: {failure.detail}")


@dataclass(frozen=True)
class _Outcome:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = ""
    header_charset: str | None = None


__all__ = [
    "ANY_TYPE",
    "ROBOTS_UNAVAILABLE",
    "ROBOTS_UNREACHABLE",
    "FEED_TYPES",
    "GZIP_TYPES",
    "HTML_TYPES",
    "FetchSettings",
    "HostGate",
    "Response",
    "RobotsRules",
    "SafeFetcher",
    "address_problem",
    "decode_text",
    "decompress",
    "is_feed_request",
    "parse_robots",
]
