"""Fingerprint stage: canonical URL, stable article id, exact and near-duplicate fingerprints.

Duplicates are found in layers, cheapest first:

1. ``canonicalize_url`` folds URL variants of one page (scheme/host case, default ports,
   tracking parameters, fragments, trailing slashes, AMP and mobile variants) so that
   ``article_id_for(canonical_url)`` gives the same id in every run.
2. ``content_hash`` is a digest of the normalised text (casefolded, punctuation and
   whitespace folded): exact copies of one agency wire share it.
3. ``signature`` is a MinHash over word shingles; ``find_duplicates`` uses it for LSH
   candidates and verifies every candidate by the actual shingle similarity before it counts.
   Across windows and runs, where the texts are no longer at hand, ``signatures_match``
   verifies with the signatures themselves (``stories.link_clusters``).
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import apache_beam as beam
import numpy as np

from transforms.records import Article, replace

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
        # click ids of ad and social platforms, mail tools and AMP caches
        "srsltid",
        "gbraid",
        "wbraid",
        "twclid",
        "ttclid",
        "li_fat_id",
        "mibextid",
        "epik",
        "fb_action_ids",
        "fb_action_types",
        "fb_ref",
        "fb_source",
        "s_kwcid",
        "ef_id",
        "mbid",
        "rb_clickid",
        "wickedid",
        "vero_id",
        "oly_enc_id",
        "oly_anon_id",
        "_openstat",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "ncid",
        "taid",
        "emc",
        "usqp",
        "amp_js_v",
        "amp_gsa",
        "__amp_source_origin",
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
    if not host.isascii():  # an internationalised name: its ASCII (punycode) form, as DNS has it
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
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

    Lower-cases scheme and host (an internationalised host in its punycode form), drops default ports, user info, fragments, tracking
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
        (name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True) if _keep_param(name, value)
    )
    return urlunsplit((scheme, host, _canonical_path(parts.path), urlencode(query), ""))


def article_id_for(canonical_url: str) -> str:
    """Stable article id: the first 16 hex digits (64 bits) of SHA-256 of the canonical URL."""
    return hashlib.sha256(canonical_url.encode("utf-8")).hexdigest()[:16]


_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    """Normalised word tokens: NFKC, casefolded, punctuation and whitespace dropped."""
    return nfkc_words(unicodedata.normalize("NFKC", text))


def nfkc_words(normalised: str) -> list[str]:
    """``words`` of a text that is already NFKC-normalised (callers that need the normalised
    text for more than its words normalise it once)."""
    return _WORD.findall(normalised.casefold())


#: texts whose (NFKC form, words) ``recent_normalised`` keeps
RECENT_TEXTS = 16


class _Spaced(str):
    """A text's words joined by spaces (``remember_words``), before they are checked."""


#: text -> (NFKC form, words), or its words joined by spaces, least recently used first (a
#: dict keeps its insertion order)
_recent: dict[str, tuple[str, tuple[str, ...]] | _Spaced] = {}


def recent_normalised(text: str) -> tuple[str, tuple[str, ...]]:
    """(NFKC form, ``words``) of the text, remembered for the last few texts.

    CleanText, Fingerprint, AssignTopics and the text profile of GroupStories are fused by
    the runner: each article goes through all of them, one after the other, so the later ones
    read the words (and the normalised text) that the cleaner (``remember_words``) or the
    first of them has just made."""
    found = _recent.pop(text, None)
    if type(found) is _Spaced and unicodedata.is_normalized("NFKC", text):
        found = text, tuple(found.split())  # a word character is never white space
    elif type(found) is not tuple:
        normalised = unicodedata.normalize("NFKC", text)
        found = normalised, tuple(nfkc_words(normalised))
    _remember(text, found)
    return found


def remember_words(text: str, spaced: str) -> None:
    """Let ``recent_normalised`` read the words of ``text`` from ``spaced``, the words of its
    lines (each line's ``words`` once NFKC-normalised) joined by spaces, when the text is its
    own NFKC form (a word never spans a line break): a stage that has tokenised the lines
    already (``clean.clean_article``) saves the next ones the normalisation and the
    tokenising (about 0.1 ms per article of the 1k corpus, 845 of whose 1,000 texts
    qualify). Whether the text qualifies is asked when its words are first wanted: nothing
    more is done for a text that no stage reads next."""
    _remember(text, _Spaced(spaced))


def _remember(text: str, found: tuple[str, tuple[str, ...]] | _Spaced) -> None:
    _recent[text] = found
    while len(_recent) > RECENT_TEXTS:
        try:  # the least recently used; another thread may have taken it, or changed the dict
            del _recent[next(iter(_recent))]
        except (KeyError, RuntimeError, StopIteration):
            break


def recent_words(text: str) -> tuple[str, ...]:
    """``words`` of the text, remembered for the last few texts (``recent_normalised``)."""
    return recent_normalised(text)[1]


def content_hash(text: str) -> str:
    """Digest of the normalised text (first 16 hex digits of SHA-256).

    Case, whitespace, punctuation and Unicode compatibility forms do not change it, so two
    copies of one wire story that differ only in typography or line breaks share it.
    """
    return _tokens_hash(words(text))


def _tokens_hash(tokens: Sequence[str]) -> str:
    return hashlib.sha256(" ".join(tokens).encode("utf-8")).hexdigest()[:16]


#: content_hash of a text without words (such texts are not exact duplicates of each other)
_NO_WORDS_HASH = _tokens_hash([])


# --- near-duplicate signature -------------------------------------------------------------


@dataclass(frozen=True)
class FingerprintSettings:
    """How near duplicates are found (section ``fingerprint`` of the config).

    MinHash-LSH: the ``num_perm`` signature values are cut into ``bands`` bands of ``rows``
    values; two texts become candidates when all rows of at least one band agree. For a
    Jaccard similarity ``s`` that happens with probability ``1 - (1 - s**rows)**bands``, an
    S-curve whose steepest point is near ``(1 / bands) ** (1 / rows)``. The default 32 x 4
    puts it at 0.42, well below ``near_dup_jaccard`` (0.6), so candidate recall is 0.99 at
    s = 0.6 and 0.87 at s = 0.5. Candidates are then verified by the actual shingle
    similarity; LSH only saves comparisons, it never decides.
    """

    #: signature length; must equal bands * rows
    num_perm: int = 128
    #: LSH bands; more bands lower the candidate threshold (more recall, more comparisons)
    bands: int = 32
    #: signature values per band; more rows sharpen the S-curve
    rows: int = 4
    #: words per shingle; 5 keeps shared stock phrases from looking alike
    shingle_size: int = 5
    #: verified Jaccard of shingle sets at or above which two texts are near duplicates;
    #: a wire copy with a new headline, byline and one extra paragraph stays above 0.6
    near_dup_jaccard: float = 0.6
    #: ... or the share of the shorter text's shingles found in the longer one (truncated
    #: copies, teasers of the full text)
    near_dup_containment: float = 0.85
    #: containment only counts for texts with at least this many shingles, so a short
    #: boilerplate paragraph is never "contained" in every article
    min_containment_shingles: int = 30
    #: seed of the MinHash hash family; changing it changes every signature
    seed: int = 1

    def __post_init__(self) -> None:
        for name in (
            "num_perm",
            "bands",
            "rows",
            "shingle_size",
            "min_containment_shingles",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be a positive integer")
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"num_perm: must equal bands * rows ({self.bands} * {self.rows}), got {self.num_perm}")
        for name in ("near_dup_jaccard", "near_dup_containment"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: must be in (0, 1]")

    @property
    def lsh_threshold(self) -> float:
        """Similarity at which the LSH S-curve is steepest: ``(1/bands) ** (1/rows)``."""
        return (1.0 / self.bands) ** (1.0 / self.rows)


def shingles(text: str, size: int) -> frozenset[str]:
    """Word ``size``-grams of the normalised text; a shorter text gives one shorter shingle."""
    tokens = words(text)
    if len(tokens) <= size:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1))


@lru_cache(maxsize=8)
def _hash_family(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Multiply-shift hashing: h_i(x) = (a_i * x + b_i) mod 2**64, top 32 bits; a_i odd.
    rng = np.random.Generator(np.random.PCG64(seed))
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


#: Multiplier of the polynomial that combines token hashes into a shingle hash (odd, so
#: that it is invertible mod 2**64; the 64-bit golden-ratio constant).
_SHINGLE_BASE = np.uint64(0x9E3779B97F4A7C15)


#: Distinct tokens whose digests a worker keeps (about 8 MB). Most words of an article were
#: in an earlier one, so after a few hundred articles most tokens are not hashed again.
DIGEST_CACHE_TOKENS = 1 << 16
_digests: dict[str, bytes] = {}


def _token_hashes(tokens: Sequence[str]) -> np.ndarray:
    """64-bit BLAKE2b hash of every token (each distinct token hashed once per worker while
    it stays in the digest cache)."""
    global _digests
    known = _digests
    new = set(tokens).difference(known)
    if len(known) + len(new) > DIGEST_CACHE_TOKENS:
        # A new table rather than clear(): a thread still reading the old one keeps it whole.
        known = _digests = {}
        new = set(tokens)
    for token in new:
        known[token] = hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest()
    return np.frombuffer(b"".join(map(known.__getitem__, tokens)), dtype="<u8")


def _shingle_hashes(tokens: Sequence[str], size: int) -> np.ndarray:
    """64-bit hashes of the word ``size``-grams of ``tokens`` in text order, repeats kept (a
    shorter text is one shorter shingle): token hashes combined as a polynomial mod 2**64,
    all windows at once."""
    if not tokens:
        return np.zeros(0, dtype=np.uint64)
    hashes = _token_hashes(tokens)
    width = min(size, len(hashes))
    count = len(hashes) - width + 1
    combined = hashes[:count].copy()
    for offset in range(1, width):
        combined = combined * _SHINGLE_BASE + hashes[offset : offset + count]  # wraps mod 2**64
    return combined


def signature(text: str, settings: FingerprintSettings) -> tuple[int, ...]:
    """MinHash signature (``num_perm`` 32-bit values) of the text's word shingles.

    Vectorised with numpy: tokens are hashed once each, shingle hashes are combined from them
    for all windows at once, then one matrix of shingles x hash functions gives the minima.
    An empty text gives an empty signature."""
    return _signature(words(text), settings)


def _signature(tokens: Sequence[str], settings: FingerprintSettings) -> tuple[int, ...]:
    return _minhash(_shingle_hashes(tokens, settings.shingle_size), settings)


def _minhash(items: np.ndarray, settings: FingerprintSettings) -> tuple[int, ...]:
    # Repeated shingles are not removed: they cannot change a minimum, and sorting them out
    # costs more than hashing them twice.
    if not len(items):
        return ()
    a, b = _hash_family(settings.num_perm, settings.seed)
    # hash functions x shingles, so that each minimum runs over one contiguous row
    hashed = a[:, None] * items
    hashed += b[:, None]  # wraps mod 2**64
    # the top 32 bits of the smallest value are the smallest top 32 bits: shift only the minima
    return tuple((hashed.min(axis=1) >> np.uint64(32)).tolist())


def fingerprint_article(article: Article, settings: FingerprintSettings) -> Article:
    """Fill canonical_url, article_id, content_hash and signature of one article (the text
    is tokenised once for both fingerprints, and for ``assign_topic`` right after)."""
    canonical = canonicalize_url(article.url)
    tokens = recent_words(article.text)
    items = _shingle_hashes(tokens, settings.shingle_size)
    return replace(
        article,
        canonical_url=canonical,
        article_id=article_id_for(canonical),
        content_hash=_tokens_hash(tokens),
        signature=_minhash(items, settings),
        shingle_count=_distinct_count(items),
    )


def _distinct_count(items: np.ndarray) -> int:
    """How many distinct values ``items`` holds: sorted, one more than the places where the
    value changes (np.unique counted them by hashing: 0.063 -> 0.007 ms per article)."""
    if not len(items):
        return 0
    ordered = np.sort(items)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def pack_signature(signature: Sequence[int]) -> str:
    """A signature as text (base64 of little-endian 32-bit values): what the story state and
    the cluster summaries keep of an article for near-duplicate checks across windows."""
    return base64.b64encode(np.asarray(signature, dtype="<u4").tobytes()).decode("ascii")


def unpack_signature(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype="<u4")


def signatures_match(a: np.ndarray, count_a: int, b: np.ndarray, count_b: int, settings: FingerprintSettings) -> bool:
    """Near duplicates judged from their signatures alone (texts in other windows or runs):
    the share of equal MinHash values estimates the Jaccard similarity of the shingle sets
    (standard error ~0.04 at 0.6 with 128 values), and with the distinct shingle counts it
    gives the containment, ``J / (1 + J) * (|A| + |B|) / min(|A|, |B|)``. The thresholds are
    those of the exact check inside a window (``_similar``)."""
    return bool(signature_matches(a, count_a, b[None, :], np.array([count_b]), settings)[0])


def signature_matches(
    signature: np.ndarray, count: int, others: np.ndarray, counts: np.ndarray, settings: FingerprintSettings
) -> np.ndarray:
    """``signatures_match`` of one signature against each row of ``others`` (rows of
    ``num_perm`` values, ``counts`` their distinct shingles) at once."""
    if len(signature) != settings.num_perm or others.ndim != 2 or others.shape[1] != settings.num_perm:
        return np.zeros(len(others), dtype=bool)
    jaccard = np.count_nonzero(others == signature, axis=1) / settings.num_perm
    smaller = np.minimum(counts, count)
    with np.errstate(divide="ignore", invalid="ignore"):
        containment = jaccard / (1 + jaccard) * (counts + count) / smaller
    return (jaccard >= settings.near_dup_jaccard) | (
        (jaccard > 0) & (smaller >= settings.min_containment_shingles) & (containment >= settings.near_dup_containment)
    )


# --- duplicate groups ---------------------------------------------------------------------


def representative_key(article: Article) -> tuple:
    """Order in which articles become representatives: earliest published, then first fetched
    (so that a run over the whole archive and one in batches, which keeps what an earlier
    batch wrote, agree on copies published at the same time), then smallest id."""
    return (article.event_time, article.fetched_at, article.article_id)


def _similar(a: frozenset[str], b: frozenset[str], settings: FingerprintSettings) -> bool:
    if not a or not b:
        return False
    common = len(a & b)
    if common / (len(a) + len(b) - common) >= settings.near_dup_jaccard:
        return True
    smaller = min(len(a), len(b))
    return smaller >= settings.min_containment_shingles and common / smaller >= settings.near_dup_containment


class UnionFind:
    """Groups of items joined pair by pair (connected components). The root of a group, its
    representative, is its first item in the order of ``key`` (the items themselves when no
    key is given), whatever order the pairs come in. Items never joined are their own root."""

    def __init__(self, key: Callable[[Any], Any] | None = None) -> None:
        self._parent: dict[Any, Any] = {}
        self._key = key

    def find(self, item: Any) -> Any:
        parent = self._parent
        root = item
        while (up := parent.get(root, root)) != root:
            root = up
        while item != root:  # path compression: every item on the way points at the root
            parent[item], item = root, parent[item]
        return root

    def union(self, a: Any, b: Any) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            key = self._key
            if (key(rb) < key(ra)) if key else (rb < ra):
                ra, rb = rb, ra
            self._parent[rb] = ra


def find_duplicates(articles: list[Article], settings: FingerprintSettings) -> dict[str, str]:
    """Map the article_id of every exact or near duplicate to its group's representative.

    Exact duplicates share ``content_hash``; near duplicates are LSH candidates (any band of
    ``signature`` equal) whose actual shingle similarity passes ``near_dup_jaccard`` or
    ``near_dup_containment``. Groups are the connected components of these links; the
    representative is the first member by ``representative_key`` (earliest published, first
    fetched, smallest article_id), so the result does not depend on input order.
    Representatives are not keys of the result. Articles repeating an article_id are counted
    once.
    """
    unique: dict[str, Article] = {}
    for article in sorted(articles, key=representative_key):
        unique.setdefault(article.article_id, article)
    items = list(unique.values())  # in representative order
    groups = UnionFind()  # on indices: the earlier article (smaller index) stays the root
    find, union = groups.find, groups.union

    buckets: dict[tuple, list[int]] = defaultdict(list)
    for i, article in enumerate(items):
        if article.content_hash and article.content_hash != _NO_WORDS_HASH:
            buckets[("hash", article.content_hash)].append(i)
        sig = article.signature or signature(article.text, settings)
        if len(sig) == settings.num_perm:
            for band in range(settings.bands):
                rows = sig[band * settings.rows : (band + 1) * settings.rows]
                buckets[(band, *rows)].append(i)

    shingle_sets: dict[int, frozenset[str]] = {}

    def shingled(i: int) -> frozenset[str]:
        if i not in shingle_sets:
            shingle_sets[i] = shingles(items[i].text, settings.shingle_size)
        return shingle_sets[i]

    checked: set[tuple[int, int]] = set()
    visited: set[tuple[int, ...]] = set()
    for key, members in buckets.items():
        if len(members) < 2:
            continue
        if key[0] == "hash":
            for j in members[1:]:
                union(members[0], j)
            continue
        # Copies share every band: a bucket holding the same articles as one already visited
        # has each pair checked or joined (groups only grow), so it is skipped whole.
        if (same := tuple(members)) in visited:
            continue
        visited.add(same)
        for x, i in enumerate(members):
            for j in members[x + 1 :]:
                if (i, j) in checked or find(i) == find(j):
                    continue
                checked.add((i, j))
                if _similar(shingled(i), shingled(j), settings):
                    union(i, j)

    return {items[i].article_id: items[find(i)].article_id for i in range(len(items)) if find(i) != i}


# --- Beam ---------------------------------------------------------------------------------


class Fingerprint(beam.PTransform):
    """PCollection[Article] -> PCollection[Article] with canonical_url, article_id,
    content_hash and signature filled. Duplicates are marked later, per window, by
    ``GroupStories`` (which calls ``find_duplicates``)."""

    def __init__(self, settings: FingerprintSettings | None = None) -> None:
        super().__init__()
        self.settings = settings or FingerprintSettings()

    def expand(self, articles):
        return articles | "FingerprintArticles" >> beam.Map(fingerprint_article, settings=self.settings)
