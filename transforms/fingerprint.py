"""Fingerprint stage: canonical URL, stable article id, exact and near-duplicate fingerprints.

Duplicates are found in layers, cheapest first:

1. ``canonicalize_url`` folds URL variants of one page (scheme/host case, default ports,
   tracking parameters, fragments, trailing slashes, AMP and mobile variants) so that
   ``article_id_for(canonical_url)`` gives the same id in every run.
2. ``content_hash`` is a digest of the normalised text (casefolded, punctuation and
   whitespace folded): exact copies of one agency wire share it.
3. ``signature`` is a MinHash over word shingles; ``find_duplicates`` uses it for LSH
   candidates and verifies every candidate by the actual shingle similarity before it counts.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import unicodedata
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

#: Query parameters that only track the click, never select the content.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "mc_cid",
        "mc_eid",
        "mkt_tok",
        "_ga",
        "_gl",
        "_hsenc",
        "_hsmi",
        "ocid",
        "icid",
        "cmpid",
        "cmp",
        "ito",
        "ref_src",
        "ref_url",
        "rss",
        "smid",
        "sr_share",
        "share",
        "via",
        "xtor",
        "ns_mchannel",
        "ns_source",
        "ns_campaign",
        "ns_linkname",
        "ns_fee",
        "s_cid",
        "soc_src",
        "soc_trk",
        "wt_mc",
        "__twitter_impression",
        "spm",
        "at_medium",
        "at_campaign",
    }
)
#: Parameter prefixes that are tracking (utm_source, utm_medium, ...).
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "hsa_")
#: Parameters (name, value) that ask for the AMP rendering of the same article.
AMP_PARAMS = frozenset(
    {
        ("amp", "1"),
        ("amp", "true"),
        ("amp", ""),
        ("outputtype", "amp"),
        ("output", "amp"),
    }
)
#: Host labels that serve a mobile/AMP/www variant of the same site.
VARIANT_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_AMP_SUFFIX = re.compile(r"(?:/amp|\.amp)$", re.IGNORECASE)
_AMP_HTML = re.compile(r"\.amp(\.html?)$", re.IGNORECASE)
_UNRESERVED = "-._~!$&'()*+,;=:@/"


def _canonical_host(host: str) -> str:
    host = host.lower().rstrip(".")
    changed = True
    while changed:
        changed = False
        for prefix in VARIANT_HOST_PREFIXES:
            # keep at least "name.tld" after stripping
            if host.startswith(prefix) and host.count(".") >= 2:
                host = host[len(prefix) :]
                changed = True
    return host


def _canonical_path(path: str) -> str:
    # Decode then re-encode so %7E and ~, %2f and %2F read the same; keep reserved characters.
    path = quote(unquote(path), safe=_UNRESERVED)
    if path:
        trailing = path.endswith("/")
        path = posixpath.normpath(path)
        if path.startswith("//"):  # normpath keeps a leading double slash
            path = "/" + path.lstrip("/")
        if trailing and path != "/":
            path += "/"
    path = _AMP_HTML.sub(r"\1", path.rstrip("/"))
    path = _AMP_SUFFIX.sub("", path).rstrip("/")
    return path or "/"


def _keep_param(name: str, value: str) -> bool:
    low = name.lower()
    if low in TRACKING_PARAMS or low.startswith(TRACKING_PREFIXES):
        return False
    return (low, value.lower()) not in AMP_PARAMS


def canonicalize_url(url: str) -> str:
    """Fold the URL variants of one page into one string.

    Lower-cases scheme and host, drops default ports, user info, fragments, tracking
    parameters (``utm_*``, ``fbclid``, ``gclid``, ...) and AMP switches (``?amp=1``), strips
    ``www.``/``m.``/``mobile.``/``amp.`` host prefixes, ``/amp`` and ``.amp`` path variants and
    trailing slashes, resolves dot segments and sorts the remaining query parameters.
    Strings that are not absolute http(s) URLs are returned stripped, otherwise unchanged.
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return url
    host = _canonical_host(parts.hostname)
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    query = sorted(
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if _keep_param(name, value)
    )
    return urlunsplit((scheme, host, _canonical_path(parts.path), urlencode(query), ""))


def article_id_for(canonical_url: str) -> str:
    """Stable article id: the first 16 hex digits (64 bits) of SHA-256 of the canonical URL."""
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()[:16]


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Normalised word tokens: NFKC, casefolded, punctuation and whitespace dropped."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_hash(text: str) -> str:
    """Digest of the normalised text (first 16 hex digits of SHA-256).

    Case, whitespace, punctuation and Unicode compatibility forms do not change it, so two
    copies of one wire story that differ only in typography or line breaks share it.
    """
    return hashlib.sha256(" ".join(words(text)).encode("utf-8")).hexdigest()[:16]
