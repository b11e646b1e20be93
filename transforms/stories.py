"""Topic and story stages: assign a coarse topic, then cluster articles about the same event.

``AssignTopics`` puts every article in one coarse bucket from ``configs/topics.yaml``
(keywords, entity names, feed categories; fallback ``general``) and records which terms
matched. ``GroupStories`` groups articles by topic and event-time window, marks
duplicates (``fingerprint.find_duplicates``) and clusters the rest into stories
(``cluster_stories``); clusters are then linked to stories of earlier windows and earlier
runs (``link_clusters``) so that a story keeps its id while coverage grows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import logging
import math
import operator
import os
import re
import threading
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import chain, compress, repeat
from operator import is_, itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import apache_beam as beam
import numpy as np
import yaml

if TYPE_CHECKING:
    from scipy import sparse

from transforms import records
from transforms.fingerprint import (
    FingerprintSettings,
    UnionFind,
    find_duplicates,
    nfkc_words,
    pack_signature,
    recent_normalised,
    recent_words,
    representative_key,
    signature_matches,
    unpack_signature,
    words,
)
from transforms.fsutil import stage_file, write_atomic
from transforms.records import Article, Story

LOG = logging.getLogger(__name__)

#: languages of the world's larger news markets that have a Snowball stemmer or, for
#: Chinese, word frequencies; see ``StorySettings.languages``
DEFAULT_LANGUAGES = (
    "en", "de", "fr", "es", "it", "pt", "nl", "pl", "ru", "tr", "ar", "zh", "sv",
)  # fmt: skip

# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StorySettings:
    """Topics, windows and story clustering (section ``stories`` of the config).

    The similarity of two articles is a weighted mean of four cosines (stems of title +
    text, capitalised names, headline stems, figures quoted), each word weighted by an
    inverse document frequency that blends the batch with background word frequencies of
    the article's language (``wordfreq``), times a time factor. Stories are the clusters of an
    average-linkage agglomeration cut at ``cluster_threshold``. The background makes
    similarities comparable between a pair of articles and a window of thousands, so one
    threshold serves both. ``benchmarks/stories.py`` prints the scores and a sweep.
    """

    #: YAML file with the topic buckets; relative paths are resolved by the config loader
    topics_file: str = "configs/topics.yaml"
    #: event-time window length in hours; stories crossing a boundary are linked afterwards
    window_hours: int = 24
    #: average-linkage cut: an article joins a story when its mean similarity to the story's
    #: articles is at least this. Chosen on full texts, what the pipeline clusters: on 93
    #: same-story pairs of l3s_gn1 (labelled by us, benchmarks/data) against 66 same-topic
    #: other-event pairs and 1,000 random pairs, each pair compared alone, F1 (mean of 1,000
    #: bootstrap resamples) is 0.831 at 0.18, 0.820 at 0.20, 0.841 at 0.22, 0.811 at 0.24;
    #: with the 17 unsure pairs 0.841 / 0.822 / 0.822 / 0.782 (a plain TF-IDF cosine at its
    #: best threshold: 0.804 / 0.810). news_search_clustering (headline + snippet) as the
    #: pipeline, B3-F1 against gold1 / gold2: 0.762 / 0.675, 0.768 / 0.681, 0.769 / 0.688,
    #: 0.767 / 0.688. Since stop 31 names and figures are weighed by how often the text
    #: repeats them, and the lead counts twice (``LEAD_WORDS``), which lifts scores (cut 0.18
    #: before, F1 0.823 / 0.796 there). The seed story's pairs score 0.27-0.68 in a window
    #: with two other articles (one of them politics, the seeds' topic), which score at most
    #: 0.12 against a seed; the five stay one story up to a cut of 0.37
    cluster_threshold: float = 0.22
    #: how many background articles (word frequencies of the language) the batch's document
    #: frequencies are blended with: a pair is weighed by the background, a window of a
    #: few hundred by itself (see ``_idf``); 0 uses the batch alone
    background_docs: float = 20.0
    #: languages an article without ``language`` is detected among (their most frequent
    #: words); each brings a Snowball stemmer and background word frequencies when
    #: PyStemmer / wordfreq are installed. The first is the default.
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    #: weight of the TF-IDF cosine of title + text (topical vocabulary)
    term_weight: float = 1.0
    #: weight of the cosine of capitalised names (who/where: the strongest event signal),
    #: each weighed log tf x idf like the terms: the names a text keeps repeating are whom it
    #: is about. Against idf alone, l3s_gn1 same-story vs same-topic ROC AUC 0.845 -> 0.856
    #: (bootstrap 95 % interval of the gain -0.005..0.026; with the unsure pairs 0.816 ->
    #: 0.829, -0.002..0.030)
    entity_weight: float = 1.0
    #: weight of the cosine of the figures the articles quote (``_NUMBER``: tolls, scores,
    #: amounts, ages; not years or single digits): reports of one event repeat its figures.
    #: l3s_gn1 full-text pairs (our labels) share them far more when they are one story
    #: (mean cosine 0.43) than when they are one topic (0.16) or unrelated (0.06). Weight
    #: 0 / 0.25 / 0.5 / 1.0: ROC AUC of same-story against same-topic pairs 0.827 / 0.841 /
    #: 0.845 / 0.847 (0 -> 0.5: +0.018, bootstrap 95 % interval -0.002..0.041); F1 at the
    #: 0.18 cut 0.810 / 0.825 / 0.823 / 0.823 (1-2 pairs: noise at that size). Topic-level
    #: wikiref220 groups lose (B3-F1 0.385 -> 0.354: figures tell events of one topic
    #: apart); news_search (headline + snippet, few figures) stays. Counted, like every
    #: channel, only when both articles quote figures. Since stop 31 a figure weighs log tf x
    #: idf (it was idf alone): AUC 0.856 -> 0.858, with the unsure pairs 0.829 -> 0.835
    number_weight: float = 0.5
    #: weight of the headline cosine (headlines of one event reuse the same key words)
    title_weight: float = 1.0
    #: articles further apart than this (hours) get a similarity penalty, halved per step;
    #: a week, because coverage of one event (a storm, a launch, a trial) runs for days.
    #: Inside a window it hardly acts; it matters for pairs compared on their own
    time_scale_hours: float = 168.0
    #: a new cluster continues an earlier story (earlier window, other topic, earlier run)
    #: when ``link_score`` of the two reaches this: the mean pairwise similarity of their
    #: articles, with the words that many clusters of the run share faded (``link_weights``)
    #: as a window's own document frequencies fade them inside the window. It is the scale
    #: of ``cluster_threshold``, and the same value makes a pair's decision the same whether
    #: its articles meet in one window or in two: of 1,500 wikiref220 pairs, 86 are joined
    #: in one window and 80 across two, 99.5 % same decisions (at 0.18 before names and
    #: figures were weighed by tf: 94 and 90, 99.3 %); l3s_gn1 sure same-story pairs F1 0.849
    #: as the pipeline decides them vs 0.842 clustered in one window
    #: (``benchmarks/stories.py``)
    link_threshold: float = 0.22
    #: ... and only if the story was last seen at most this many hours before (a week, like
    #: ``time_scale_hours``: coverage of one event runs for days)
    link_hours: float = 168.0
    #: which clusters decide how much a word shared by many of them fades when linking
    #: (``link_weights``). ``run``: every cluster of the run and every story of the state,
    #: so a run's later windows weigh on its earlier decisions, and a backfill cut into
    #: batches groups some articles otherwise than one run: news_search's 1,000 items in 4
    #: runs by event time keep 85.5 % of their story ids. ``past``: for each window, its
    #: own clusters and the stories still in reach (each counted by its articles, which
    #: stand for the clusters it took), as a stream knows them; batches, daily runs and
    #: one run then decide alike (99.6 %), at a cost on the labelled sets, which start
    #: each group from nothing: news_search B3-F1 per group 0.773 / 0.687 -> 0.760 / 0.676,
    #: in one run 0.724 / 0.649 -> 0.720 / 0.645; l3s_gn1 and wikiref220 (no dates: one
    #: window) unchanged (``benchmarks/stories.py`` prints the batch check)
    link_weights_from: str = "run"
    #: fsspec URL of the story state kept across runs; unset: ``<output>/_state/stories``
    state_path: str | None = None
    #: stories not updated for this many days are dropped from the state
    state_retention_days: int = 14

    def __post_init__(self) -> None:
        if not self.topics_file:
            raise ValueError("topics_file: must not be empty")
        if self.window_hours < 1:
            raise ValueError("window_hours: must be at least 1")
        for name in ("cluster_threshold", "link_threshold"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name}: must be in (0, 1)")
        for name in ("term_weight", "entity_weight", "title_weight", "number_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")
        if self.term_weight + self.entity_weight + self.title_weight + self.number_weight <= 0:
            raise ValueError("term_weight: at least one similarity weight must be positive")
        if self.link_weights_from not in ("run", "past"):
            raise ValueError("link_weights_from: must be run or past")
        for name in ("time_scale_hours", "link_hours"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.state_retention_days < 1:
            raise ValueError("state_retention_days: must be at least 1")
        if self.background_docs < 0:
            raise ValueError("background_docs: must not be negative")
        if not self.languages or not all(isinstance(x, str) and x for x in self.languages):
            raise ValueError("languages: a non-empty list of ISO 639-1 codes")


# --- text features ------------------------------------------------------------------------

# News boilerplate and English function words that say nothing about which event a text
# covers. With ``wordfreq`` installed, the background frequencies already push function
# words of every supported language towards zero weight; this list is the fallback without
# it, and it removes agency and photo credits, which are rare words in general text but
# common in news.
_STOPWORD_TEXT = """
    a about above after again against ago all almost along already also although always am
    among an and another any anyone anything are around as at away back be became because
    become been before being below between both but by can cannot could did do does doing
    done down during each either else enough even ever every few for from further get gets
    got had has have having he her here hers herself him himself his how however i if in
    including into is it its itself just last least less let like likely made make makes
    many may me might more most much must my myself near need never new next no nor not
    now of off often on once one only or other others our ours ourselves out over own per
    perhaps quite rather really said same say saying says see seen she should since so some
    still such take than that the their theirs them themselves then there these they thing
    things this those though through thus to today told too toward under until up upon us
    use used very via was way we well were what whatever when where whether which while who
    whom whose why will with within without would yet you your yours yourself
    mr mrs ms dr according added also asked week weeks day days month months year years time
    times monday tuesday wednesday thursday friday saturday sunday yesterday tomorrow
    news report reports reported reporter photo photos image images video videos file getty
    reuters ap afp dpa efe ansa pap read full story click here share comment comments
    subscribe newsletter updated published copyright rights reserved
    """
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

# A capital that starts a word, then the longest run of word characters and ’'&.- that ends
# in a word character. The capital comes first and the word-start check after it, so that the
# regex engine skips ahead to capitals instead of testing every position for a boundary.
_ENTITY = re.compile(r"[A-Z](?<!\w[A-Z])(?:[\w’'&.-]*\w)?")
# A figure: digits, with the separators and decimal points inside it, not glued to a word
# ("MH370", "21st") nor to another figure's separator. Thousands commas (a comma before three
# digits) are dropped when it is read (``_numbers``), so "1,000" and "1000" are one figure,
# while a decimal comma stays ("1,5" is not 15). The digit comes first and the check of the
# character before it after it (as in ``_ENTITY``), so that the regex engine skips ahead to
# digits instead of testing every position (same matches; _numbers 0.09 -> 0.04 ms per article).
_NUMBER = re.compile(r"\d(?<![\w.,]\d)(?:[\d.,]*\d)?(?!\w)")
# years (1900-2099) date an article rather than its event; the figures of an event are others
_YEAR = re.compile(r"(?:19|20)\d\d")
_THOUSANDS = re.compile(r",(?=\d{3}(?!\d))")
# Han, kana and hangul runs have no spaces between words: they are cut into character bigrams
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
# the one range that holds all of _CJK's: a text without a character in it has no CJK run, and
# one range is a cheaper test per character than five (0.038 -> 0.011 ms per article)
_CJK_SPAN = re.compile("[\u3040-\ufaff]")

#: Snowball stemmers (PyStemmer) by ISO 639-1 code.
SNOWBALL = {
    "ar": "arabic",
    "ca": "catalan",
    "cs": "czech",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "hu": "hungarian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "nb": "norwegian",
    "nl": "dutch",
    "no": "norwegian",
    "pl": "polish",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
}
#: Expected number of words in a news article; turns a word's background frequency into
#: the share of articles that contain it (``1 - exp(-p * DOC_WORDS)``).
DOC_WORDS = 400
#: background frequency of a word missing from the word list (the lists stop at about one
#: word per million; a missing word is a name, a rare word or a typo)
RARE_WORD_FREQ = 3e-7
#: words found in more than this share of all articles (by the background) are function
#: words: left out of the vectors, which also keeps the sparse products sparse
FUNCTION_WORD_DF = 0.5
#: background document frequency used when wordfreq is not installed (a smoothed batch idf)
FALLBACK_DF = 0.1
#: words at the start of a text (its lead: who, what, where, when) that count twice in its
#: terms, as the headline does. l3s_gn1 labelled full-text pairs, same-story vs same-topic
#: ROC AUC 0.858 -> 0.866 (paired bootstrap 95 % interval of the gain -0.000..0.016, P(gain
#: <= 0) 3 %; with the unsure pairs 0.835 -> 0.840), F1 at the 0.22 cut 0.824 -> 0.842;
#: 200 or 400 words: AUC 0.865 / 0.861. Stop 30's separate lead channel did not help.
LEAD_WORDS = 100


@lru_cache(maxsize=1 << 16)
def _light_stem(token: str) -> str:
    """A light suffix fold (plural and possessive) so 'talks' and 'talk' meet."""
    if token.endswith(("'s", "’s")):
        token = token[:-2]
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


_stem = _light_stem  # topics match English keyword lists with the light fold


@lru_cache(maxsize=64)
def _stemmer(language: str):
    """Snowball stemmer for the language, or None (PyStemmer missing, or no algorithm).

    PyStemmer's own cache is off: ``_content_words`` keeps the stem of every word it has
    seen, so each word reaches the stemmer once, and that cache (pruned when full) made
    stemming a word it had not seen two to five times slower."""
    algorithm = SNOWBALL.get(language)
    if algorithm is None:
        return None
    try:
        import Stemmer
    except ImportError:
        return None
    return Stemmer.Stemmer(algorithm, 0)


@lru_cache(maxsize=1)
def _wordfreq() -> Any:
    """The ``wordfreq`` module, or None when it is not installed, imported on a new thread.

    At import, wordfreq finds its data folder with ``inspect.stack()`` (through ``locate``),
    which reads the source of every frame of the importing thread's stack; its cost grows
    with the depth of the caller (a Beam worker's stack is deep). A new thread's stack is a
    few frames: the first text profile called 60 frames deep took 0.52 s with the import in
    place, 0.27 s with it here (0.28 / 0.24 at the top of a script)."""
    found: list[Any] = []

    def load() -> None:
        try:
            import wordfreq
        except ImportError:
            return
        found.append(wordfreq)

    thread = threading.Thread(target=load, name="import-wordfreq", daemon=True)
    thread.start()
    thread.join()
    return found[0] if found else None


@lru_cache(maxsize=64)
def _frequencies(language: str) -> dict[str, float] | None:
    """Background word frequencies (share of running words) from ``wordfreq``'s small list
    (about 30-60k words per language, shipped with the package), or None."""
    wordfreq = _wordfreq()
    if wordfreq is None:
        return None
    try:
        if language not in wordfreq.available_languages(wordlist="small"):
            return None
        return wordfreq.get_frequency_dict(language, wordlist="small")
    except (LookupError, ValueError, OSError):
        return None


def preload(languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> None:
    """Import and load once what clustering needs in any worker: scipy's sparse matrices,
    hierarchical clustering and connected components, wordfreq, and the function words of
    ``languages`` (for a process that forks workers: ``pipeline.workerpool``). The tables of
    background frequencies load where an article of their language first needs them."""
    from scipy.cluster import hierarchy  # noqa: F401
    from scipy.sparse import csgraph  # noqa: F401
    from scipy.spatial import distance  # noqa: F401

    _wordfreq()
    _function_words(languages)


#: how many of a language's most frequent words make its function words
FUNCTION_WORDS = 60
#: part of the cache key of the function words (``_wordfreq_data_key``): raise it when
#: ``_top_words`` picks its words otherwise, so that no process reads words picked the old way
FUNCTION_WORDS_FORMAT = 1


@lru_cache(maxsize=16)
def _function_words(languages: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The ``FUNCTION_WORDS`` most frequent words of each language -> the languages they
    belong to."""
    owners: dict[str, list[str]] = defaultdict(list)
    tops = _cached_top_words(languages)
    for language in languages:
        for word in tops.get(language) or ():
            owners[word].append(language)
    return {w: tuple(langs) for w, langs in owners.items()}


def _top_words(language: str) -> list[str] | None:
    """The language's ``FUNCTION_WORDS`` most frequent words (ties: alphabetical), or None
    when wordfreq has no table for it."""
    table = _frequencies(language)
    if not table:
        return None
    # the last frequency that makes the cut first (fast on floats), then sort only what reaches it
    cutoff = heapq.nlargest(FUNCTION_WORDS, table.values())[-1]
    top = sorted(((w, f) for w, f in table.items() if f >= cutoff), key=lambda kv: (-kv[1], kv[0]))
    return [word for word, _ in top[:FUNCTION_WORDS]]


def function_words_cache() -> Path:
    """Where the function words found in wordfreq's tables are kept between processes."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "storybeam", "function-words.json")


def _wordfreq_data_key() -> str | None:
    """A name for the wordfreq tables installed (their folder, names, sizes and times), found
    without importing wordfreq; None when it is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("wordfreq")
    if spec is None or not spec.origin:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "data")
    try:
        with os.scandir(folder) as entries:
            tables = sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries)
    except OSError:
        return None
    return hashlib.sha256(repr((folder, FUNCTION_WORDS, FUNCTION_WORDS_FORMAT, tables)).encode()).hexdigest()[:24]


def _cached_top_words(languages: tuple[str, ...]) -> dict[str, list[str] | None]:
    """``_top_words`` of each language, kept in ``function_words_cache()`` for the same
    wordfreq tables. Finding them loads each language's whole table (13 languages: ~0.3 s, in
    the worker pool before it can fork a worker, and in every other process that clusters);
    read back, ~1 ms. A cache that cannot be read or written is passed by."""
    key = _wordfreq_data_key()
    path = function_words_cache()
    top: dict[str, list[str] | None] = {}
    if key is not None:
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("top"), dict):
                top = stored["top"]
        except (OSError, ValueError):
            pass
    missing = [language for language in languages if language not in top]
    if not missing:
        return top
    top = {**top, **{language: _top_words(language) for language in missing}}
    if key is not None:
        scratch = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch.write_text(json.dumps({"key": key, "top": top}, ensure_ascii=False), encoding="utf-8")
            os.replace(scratch, path)  # whole or not at all, whoever writes at the same time
        except OSError:
            with suppress(OSError):
                scratch.unlink(missing_ok=True)
    return top


def detect_language(tokens: Sequence[str], languages: tuple[str, ...]) -> str:
    """The language among ``languages`` whose most frequent words cover most tokens; ties
    go to the language listed first. Without word lists: the first language."""
    return _language_vote(tokens, languages)[0]


#: a detected language is stated in the output (``detect_languages``) when its 60 most frequent
#: words make at least this share of the text's first 400 tokens...
SURE_LANGUAGE_SHARE = 0.15
#: ...and at least this many times the runner-up's share (Dutch and German, Spanish and
#: Portuguese share some of them)
SURE_LANGUAGE_MARGIN = 2.0


def detect_languages(tokens: Sequence[str], languages: tuple[str, ...]) -> tuple[str, str | None]:
    """(``detect_language``, the same when the text leaves no doubt about it, else None).
    Sure means ``SURE_LANGUAGE_SHARE`` and ``SURE_LANGUAGE_MARGIN``: a text in a language
    without word lists here (Czech, Greek) must not be labelled with the nearest one."""
    language, votes = _language_vote(tokens, languages)
    if not votes:
        return language, None
    best, runner_up = [n for _, n in votes.most_common(2)] + [0] * (2 - min(len(votes), 2))
    enough = best >= SURE_LANGUAGE_SHARE * min(len(tokens), 400)
    return language, (language if enough and best >= SURE_LANGUAGE_MARGIN * runner_up else None)


def _language_vote(tokens: Sequence[str], languages: tuple[str, ...]) -> tuple[str, Counter]:
    owners = _function_words(languages)
    if not owners:
        return (languages[0] if languages else "en"), Counter()
    votes = Counter(chain.from_iterable(filter(None, map(owners.get, tokens[:400]))))
    if not votes:
        return languages[0], votes
    return max(languages, key=lambda lang: (votes[lang], -languages.index(lang))), votes


def _tokens(text: str, found: Sequence[str]) -> list[str]:
    """Casefolded word tokens of ``text`` from its ``words`` (``found``); CJK runs become
    character bigrams."""
    # isascii() reads a flag, not the text
    if text.isascii() or _CJK_SPAN.search(text) is None or _CJK.search(text) is None:
        return list(found)
    out = []
    for token in found:
        if _CJK.search(token) is None:
            out.append(token)
            continue
        for part in re.split(f"({_CJK.pattern})", token):
            if not part:
                continue
            if _CJK.fullmatch(part):
                out.extend(part[i : i + 2] for i in range(max(1, len(part) - 1)))
            else:
                out.append(part)
    return out


def _keep(token: str) -> bool:
    return len(token) > 1 and not token.isdigit() and token not in STOPWORDS


#: Distinct words per language whose stem and background share a worker keeps (about 14 MB
#: for a language in full use); the table starts again empty when it is full
WORD_CACHE_WORDS = 1 << 16
#: (word, stem, background share of articles containing it) for a content word, () for any
#: other word (``_keep``)
_WordFact = tuple[str, str, float] | tuple[()]
#: language -> word -> its fact. Stemming and the background look-up are per distinct word,
#: and most words of an article were in an earlier one: a worker keeps them.
_word_facts: dict[str, dict[str, _WordFact]] = {}


def _learn_words(language: str, new: Iterable[str], known: dict[str, _WordFact]) -> list[tuple[str, str, float]]:
    """Stem the ``new`` words and look up their background share, into ``known``; returns the
    facts of the content words among them."""
    table = _frequencies(language)
    stemmer = _stemmer(language)
    kept = [t for t in new if _keep(t)]
    stems = stemmer.stemWords(kept) if stemmer is not None else [_light_stem(t) for t in kept]
    if table is None:
        facts = list(zip(kept, stems, repeat(FALLBACK_DF, len(kept)), strict=True))
    else:
        facts = list(
            zip(kept, stems, map(_share_of.__getitem__, map(table.get, kept, repeat(RARE_WORD_FREQ))), strict=True)
        )
    known.update(zip(kept, facts, strict=True))
    for token in new:
        known.setdefault(token, ())
    return facts


def _content_words(language: str, tokens: Collection[str]) -> list[tuple[str, str, float]]:
    """(word, stem, background share of articles) of the content words among ``tokens``,
    sorted by word. One look-up per word in the worker's table: it is large, so each look-up
    is a trip to memory; the words learned here are not looked up again."""
    known = _word_facts.get(language, {})
    found = list(map(known.get, tokens))
    if None in found:  # words not seen before
        new = list(compress(tokens, map(is_, found, repeat(None))))
        if not known or len(known) + len(new) > WORD_CACHE_WORDS:
            # A new table rather than clear(): a thread still reading the old one keeps it.
            known = _word_facts[language] = {}
            new = list(tokens)
            found = []
        found.extend(_learn_words(language, new, known))  # sorted by word below, as all are
    return sorted(filter(None, found), key=itemgetter(0))  # by word alone: cheaper than by tuple


class _ValueCache(dict):
    """``function(key)`` per key, computed on first use: a hit is a plain dict look-up (in C),
    cheaper than the call it stands for when few distinct keys come back often."""

    def __init__(self, function: Callable[[Any], Any]) -> None:
        super().__init__()
        self._function = function

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self._function(key)
        return value


#: Count -> ``1 + log(count)``, the term weight of a count. Counts are small numbers: a look-up
#: is cheaper than the logarithm (0.04 of the 0.44 ms that compute_text_profile spends on the
#: words of an article of the 1k corpus).
_log_tf = _ValueCache(lambda count: 1.0 + math.log(count))
#: Background frequency -> share of articles containing such a word, ``1 - exp(-f * DOC_WORDS)``:
#: wordfreq's frequencies are binned, so a few hundred values serve every word.
_share_of = _ValueCache(lambda frequency: -math.expm1(-frequency * DOC_WORDS))


@dataclass(frozen=True)
class TextProfile:
    """What clustering knows about one article: stems of its words, weighted by how often
    they occur, and by how rare they are in general (``prior``)."""

    language: str
    #: stem -> 1 + log(count); the headline counts twice
    terms: dict[str, float]
    #: stems of capitalised words (names, places, organisations, acronyms)
    entities: frozenset[str]
    #: stems of the headline
    title: frozenset[str]
    #: stem -> background share of articles containing it (most frequent surface form)
    prior: dict[str, float]
    #: figures of title + text (``_numbers``) -> 1 + log(count): digit strings, never a term's
    #: key (terms are stems of words that are not all digits, and hold no "." or ",")
    numbers: dict[str, float] = field(default_factory=dict)
    #: the language found in the text of an article that stated none, when the text leaves
    #: no doubt (``detect_languages``): it goes into the article's ``language`` column
    detected: str | None = None


def profile_key(article: Article) -> tuple[str, str | None]:
    """Key of an article's ``TextProfile`` in the ``profiles`` mappings of the clustering
    functions: the id, and the content hash, since one id can be read twice with other text."""
    return article.article_id, article.content_hash


def _profile(article: Article, languages: tuple[str, ...], given: Mapping | None) -> TextProfile:
    found = given.get(profile_key(article)) if given else None
    return found if found is not None else text_profile(article, languages)


def compute_text_profile(article: Article, languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> TextProfile:
    """Tokenise, detect the language (unless the article has one), stem and weigh.

    Stemming and the background look-up are per distinct word, and the worker keeps their
    results (``_content_words``): about 1 ms for a 600-word article once it has seen a few
    hundred articles. GroupStories computes it before grouping (in parallel, with the topic)
    and hands it to the clustering; ``text_profile`` is the memoised form."""
    # NFKC once: the tokens and the capitalised names are both read from the normalised text
    title = unicodedata.normalize("NFKC", article.title or "")
    text, text_words = recent_normalised(article.text)  # as Fingerprint has just made them
    title_tokens = _tokens(article.title or "", nfkc_words(title))
    body_tokens = _tokens(article.text, text_words)
    language = (article.language or "").split("-")[0].lower()
    detected = None
    if not language or (languages and language not in languages):
        stated = language
        language, sure = detect_languages(title_tokens + body_tokens[:400], languages or ("en",))
        detected = None if stated else sure
    # Sorted by word: terms and prior list stems in that order, the same for the same text
    # (the similarity adds up term weights in it).
    # Counted by word, then summed by stem over the content words alone (the words are
    # counted anyway to find the distinct ones): cheaper than counting every token's stem
    # (0.44 -> 0.42 ms for this part of an article of the 1k corpus).
    counts = Counter(body_tokens)
    for token in title_tokens:
        counts[token] += 2  # headline twice
    for token in body_tokens[:LEAD_WORDS]:
        counts[token] += 1  # the lead twice
    content = _content_words(language, counts.keys())
    stem_of: dict[str, str] = {}
    prior: dict[str, float] = {}  # stems in order of their first word
    occurrences: dict[str, int] = {}
    for word, stem, share in content:
        stem_of[word] = stem
        occurrences[stem] = occurrences.get(stem, 0) + counts[word]
        if share > prior.get(stem, 0.0):  # the most frequent surface form of the stem decides
            prior[stem] = share
    terms = {s: _log_tf[occurrences[s]] for s, share in prior.items() if share <= FUNCTION_WORD_DF}
    # NFKC of title + "\n" + text is the two normalised parts joined: a line break never
    # combines with its neighbours
    capitalised = _ENTITY.findall(f"{title}\n{text}")
    entities = frozenset(stem_of[t] for t in set(words(" ".join(capitalised))) if stem_of.get(t) in terms)
    return TextProfile(
        language=language,
        terms=terms,
        entities=entities,
        title=frozenset(stem_of[t] for t in title_tokens if stem_of.get(t) in terms),
        prior={s: prior[s] for s in terms},
        numbers=_numbers(f"{title}\n{text}"),
        detected=detected,
    )


def _numbers(text: str) -> dict[str, float]:
    """The figures of an (NFKC) text, each 1 + log of how often it occurs (sorted): ``_NUMBER``
    matches without thousands commas, leaving out single digits and years."""
    found: Counter = Counter()
    for match in _NUMBER.findall(text):
        figure = _THOUSANDS.sub("", match) if "," in match else match
        if len(figure) > 1 and not _YEAR.fullmatch(figure):
            found[figure] += 1
    return {figure: _log_tf[found[figure]] for figure in sorted(found)}


#: memoised ``compute_text_profile`` (clustering and the story vectors of a window both ask)
text_profile = lru_cache(maxsize=4096)(compute_text_profile)


def content_terms(text: str) -> list[str]:
    """Stemmed content words (English light fold): casefolded, no stopwords, no numbers."""
    return [_light_stem(t) for t in words(text) if _keep(t)]


def entity_terms(text: str) -> list[str]:
    """Capitalised tokens (names, places, organisations, acronyms) as casefolded stems."""
    found = []
    for match in _ENTITY.finditer(unicodedata.normalize("NFKC", text)):
        found.extend(_light_stem(t) for t in words(match.group()) if _keep(t))
    return found


# --- topics -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    name: str
    keywords: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topics:
    """The topic buckets (frozen and picklable: it travels to workers inside the DoFn)."""

    topics: tuple[Topic, ...]
    fallback: str = "general"
    #: an article needs at least this score for a topic, else it goes to ``fallback``
    min_score: float = 2.0
    #: score a matching feed category or topic hint adds
    hint_weight: float = 2.0
    #: a match in the title counts this many times
    title_weight: float = 2.0

    def __post_init__(self) -> None:
        names = [t.name for t in self.topics]
        if len(set(names)) != len(names):
            raise ValueError("topics: topic names must be unique")
        if not self.fallback:
            raise ValueError("fallback: must not be empty")

    @cached_property
    def index(self) -> _TermIndex:
        """Term look-up table, built once per process (not part of equality)."""
        return _term_index(self)


def _phrase(term: str) -> str:
    return " ".join(_stem(t) for t in words(term))


def load_topics(path: str | Path) -> Topics:
    """Read ``topics.yaml``: ``{fallback, min_score, hint_weight, title_weight, topics:
    {name: {keywords: [...], entities: [...], categories: [...]}}}``.

    A relative path that does not exist from the current directory is taken relative to
    the repository. Raises ``ValueError("<key>: <why>")`` for a malformed file.
    """
    path = Path(path)
    if not path.is_absolute() and not path.exists():  # the default, run from elsewhere
        path = Path(__file__).resolve().parents[1] / path
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    if not isinstance(data, dict) or not isinstance(data.get("topics"), dict):
        raise ValueError(  # noqa: TRY004 - the config loader reports ValueErrors
            "topics: a mapping of topic name to keywords/entities/categories"
        )
    known = {"fallback", "min_score", "hint_weight", "title_weight", "topics"}
    for key in data:
        if key not in known:
            raise ValueError(f"{key}: unknown key")
    topics = []
    for name, spec in data["topics"].items():
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ValueError(f"topics.{name}: must be a mapping")  # noqa: TRY004
        for key, value in spec.items():
            if key not in ("keywords", "entities", "categories"):
                raise ValueError(f"topics.{name}.{key}: unknown key")
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"topics.{name}.{key}: must be a list of strings")
        topics.append(
            Topic(
                name=str(name),
                keywords=tuple(_phrase(k) for k in spec.get("keywords", ()) if _phrase(k)),
                entities=tuple(_phrase(e) for e in spec.get("entities", ()) if _phrase(e)),
                categories=tuple(c.casefold().strip() for c in spec.get("categories", ())),
            )
        )
    options = {k: data[k] for k in ("fallback", "min_score", "hint_weight", "title_weight")}
    return Topics(topics=tuple(topics), **{k: v for k, v in options.items() if v is not None})


@dataclass(frozen=True)
class _TermIndex:
    """Every topic term (stemmed word or phrase) -> ranks of the topics listing it, plus what
    is needed to find the terms of a text with set look-ups instead of one regex per term."""

    terms: dict[str, tuple[int, ...]]
    #: terms of one word
    words: frozenset[str]
    #: first word of a phrase (a term of several words) -> the phrases starting with it
    phrases: dict[str, tuple[str, ...]]
    #: every word that ``_light_stem`` folds to a word of a term -> that word; a text's words
    #: are looked up here instead of being stemmed
    forms: dict[str, str]
    #: term -> its place in ``terms``: scores add up in that order
    position: dict[str, int]


def _forms(stem: str) -> list[str]:
    """The words ``_light_stem`` folds to ``stem``. Word tokens have no apostrophe, so only
    the plural folds apply: a word is its stem, its stem + s, or a -y stem's -ies."""
    return [w for w in (stem, stem + "s", stem[:-1] + "ies") if _light_stem(w) == stem]


def _term_index(topics: Topics) -> _TermIndex:
    terms: dict[str, list[int]] = defaultdict(list)
    phrases: dict[str, list[str]] = defaultdict(list)
    for rank, topic in enumerate(topics.topics):
        for term in dict.fromkeys(topic.keywords + topic.entities):
            if term not in terms and " " in term:
                phrases[term.split(" ")[0]].append(term)
            terms[term].append(rank)
    return _TermIndex(
        terms={t: tuple(r) for t, r in terms.items()},
        words=frozenset(t for t in terms if " " not in t),
        phrases={w: tuple(p) for w, p in phrases.items()},
        forms={form: word for term in terms for word in term.split(" ") for form in _forms(word)},
        position={t: k for k, t in enumerate(terms)},
    )


def _term_hits(text: str, index: _TermIndex) -> set[str]:
    """The topic terms (stemmed words and phrases) found in the text."""
    tokens = recent_words(text)
    forms = index.forms
    present = set(map(forms.__getitem__, forms.keys() & set(tokens)))
    hits = present & index.words
    candidates = [
        p
        for first in present.intersection(index.phrases)
        for p in index.phrases[first]
        if present.issuperset(p.split(" "))
    ]
    if candidates:
        # Each word as the term word it folds to, "|" for the others; spaces around each, so
        # that a phrase only matches whole words in a row.
        joined = f" {' '.join(map(forms.get, tokens, repeat('|')))} "
        hits.update(p for p in candidates if f" {p} " in joined)
    return hits


def assign_topic(article: Article, topics: Topics) -> tuple[str, tuple[str, ...]]:
    """The article's topic and the terms that decided it (``'category:x'`` for feed hints).

    Score per topic: each distinct keyword or entity found counts once (``title_weight``
    times when it is in the title), plus ``hint_weight`` when a feed category or the
    topic hint names the topic. Counting distinct terms rather than occurrences keeps the
    choice stable for near-identical texts. Ties go to the topic listed first; below
    ``min_score`` the article goes to ``fallback`` with no terms.

    The words of the text (those ``Fingerprint`` has just made, when it ran on the same
    worker) are looked up among the forms of the terms' words, so nothing is stemmed; a
    phrase is searched for only when all its words are there.
    """
    index = topics.index
    title = _term_hits(article.title or "", index)
    body = _term_hits(article.text, index)
    scores = [0.0] * len(topics.topics)
    matched: list[list[tuple[float, str]]] = [[] for _ in topics.topics]
    for term in sorted(title | body, key=index.position.__getitem__):
        weight = topics.title_weight if term in title else 1.0
        for rank in index.terms[term]:
            scores[rank] += weight
            matched[rank].append((weight, term))
    hints = {c.casefold().strip() for c in article.categories}
    if article.topic_hint:
        hints.add(article.topic_hint.casefold().strip())
    if hints:
        for rank, topic in enumerate(topics.topics):
            hit = sorted(hints & ({topic.name.casefold()} | set(topic.categories)))
            if hit:
                scores[rank] += topics.hint_weight
                matched[rank].append((topics.hint_weight, f"category:{hit[0]}"))
    best = max(range(len(scores)), key=lambda r: (scores[r], -r), default=None)
    if best is None or not scores[best] or scores[best] < topics.min_score:
        return topics.fallback, ()
    terms = tuple(term for _, term in sorted(matched[best], key=lambda m: (-m[0], m[1])))
    return topics.topics[best].name, terms


class AssignTopics(beam.PTransform):
    """PCollection[Article] -> PCollection[Article] with ``topic`` and ``topic_terms``."""

    def __init__(self, topics: Topics) -> None:
        super().__init__()
        self.topics = topics

    def expand(self, articles):
        return articles | "AssignTopic" >> beam.Map(_with_topic, topics=self.topics)


def _with_topic(article: Article, topics: Topics) -> Article:
    topic, terms = assign_topic(article, topics)
    return records.replace(article, topic=topic, topic_terms=terms)


# --- story clustering ---------------------------------------------------------------------


def _idf(profiles: Sequence[TextProfile], background_docs: float) -> dict[str, float]:
    """Inverse document frequency from the batch, smoothed towards the background.

    ``df = (batch_df + m * prior) / (n + m)`` with ``m = background_docs``: in a pair the
    background decides (two articles cannot tell a name from a function word), in a
    window of hundreds the batch does (a query word shared by every article of the group
    stops counting). ``prior`` is the word's background share of articles (wordfreq).
    """
    df = Counter(t for p in profiles for t in chain(p.terms, p.numbers))
    prior: dict[str, float] = {}
    for p in profiles:
        for t, share in p.prior.items():
            if share > prior.get(t, 0.0):
                prior[t] = share
    n = len(profiles)
    m = background_docs
    return {t: -math.log(min(1.0, (d + m * prior.get(t, FALLBACK_DF)) / (n + m))) + 1e-3 for t, d in df.items()}


#: the similarity channels of ``sparse_similarity``: key prefix in a story vector -> weight setting
_CHANNELS = (("t", "term_weight"), ("e", "entity_weight"), ("h", "title_weight"), ("n", "number_weight"))


def _channel_vectors(p: TextProfile, idf: dict[str, float]) -> tuple[dict[str, float], ...]:
    """The article's vectors in the channels of ``_CHANNELS``, in that order: title + text
    terms (log tf x idf), capitalised names (log tf x idf, like the terms: a name the text
    keeps repeating is who the story is about), headline words (idf), figures (log tf x idf).
    Names and headline words are sets, read sorted, and the figures come sorted: the sums made
    of these vectors (norms, story vectors) add in the same order in every process (a set's
    order follows the hash seed, and the last bits of a float sum follow the order)."""
    return (
        {t: tf * idf[t] for t, tf in p.terms.items()},
        {t: p.terms[t] * idf[t] for t in sorted(p.entities)},
        {t: idf[t] for t in sorted(p.title)},
        {t: tf * idf[t] for t, tf in p.numbers.items()},  # sorted by _numbers
    )


def _unit_rows(rows: list[dict[str, float]], vocab: dict[str, int]) -> sparse.csr_matrix:
    from scipy import sparse  # imported where clusters are made (~0.4 s), not in every process

    indptr, indices, data = [0], [], []
    for row in rows:
        weights = list(row.values())
        norm = math.sqrt(sum(map(operator.mul, weights, weights)))
        terms = [t for t in sorted(row) if row[t] > 0]  # the keys alone sort faster than items
        indices.extend(map(vocab.__getitem__, terms))
        data.extend([row[t] / norm for t in terms])
        indptr.append(len(indices))
    return sparse.csr_matrix((np.asarray(data, dtype=float), indices, indptr), shape=(len(rows), len(vocab)))


def _cosine_matrix(rows: list[dict[str, float]]) -> np.ndarray:
    """Dense pairwise cosines of sparse term vectors (small inputs, benchmarks)."""
    vocab: dict[str, int] = {}
    for row in rows:
        for t in row:
            vocab.setdefault(t, len(vocab))
    unit = _unit_rows(rows, vocab)
    return (unit @ unit.T).toarray()


def sparse_similarity(
    articles: Sequence[Article],
    settings: StorySettings,
    profiles: Mapping | None = None,
    candidates: bool | None = None,
) -> sparse.coo_matrix:
    """Pairwise story similarity in [0, 1] of the articles (in the given order), as a
    sparse matrix: pairs that share no content word are never compared (zero).

    Similarity = weighted mean of four cosines over idf-weighted stems (``_idf``): words of
    title + text (log tf), capitalised names, headline words, and over the figures quoted; a
    channel that one of the two articles lacks (no headline, no capitalised names, no
    figures) is left out of the mean rather than counted as zero. Pairs further apart in
    time than ``time_scale_hours`` lose half of their similarity per further
    ``time_scale_hours``. ``profiles``: ``TextProfile`` by
    ``profile_key``, computed elsewhere (missing ones are computed here).

    ``candidates`` (by default: more than ``LARGE_WINDOW`` articles): compare only the pairs
    that share one of their heaviest keys (``_candidate_products``) instead of every pair
    that shares any word, which in news is nearly every pair.
    """
    from scipy import sparse

    found = [_profile(a, settings.languages, profiles) for a in articles]
    idf = _idf(found, settings.background_docs)
    vocab = {t: k for k, t in enumerate(sorted(idf))}
    per_article = [_channel_vectors(p, idf) for p in found]
    channels = [
        (getattr(settings, name), [vectors[k] for vectors in per_article]) for k, (_, name) in enumerate(_CHANNELS)
    ]
    n = len(articles)
    if candidates is None:
        candidates = n > LARGE_WINDOW
    weights = []
    units = []
    for weight, rows in channels:
        if weight <= 0:
            continue
        units.append((weight, _unit_rows(rows, vocab)))
        weights.append((weight, np.array([bool(r) for r in rows], dtype=float)))
    if candidates:
        i, j, data = _candidate_products(units, n)
    else:
        total = sparse.csr_matrix((n, n))
        for weight, unit in units:
            total = total + weight * (unit @ unit.T)
        coo = total.tocoo()
        i, j, data = coo.row, coo.col, coo.data
    norm = np.zeros(len(i))
    for weight, present in weights:
        norm += weight * present[i] * present[j]
    sim = np.divide(data, norm, out=np.zeros_like(data), where=norm > 0)
    hours = np.array([a.event_time.timestamp() for a in articles]) / 3600.0
    gap = np.abs(hours[i] - hours[j])
    sim *= time_factor(gap, settings)
    sim = np.clip(sim, 0.0, 1.0)
    sim[i == j] = 1.0
    return sparse.coo_matrix((sim, (i, j)), shape=(n, n))


#: keys per article and channel that make candidate pairs in a large window
CANDIDATE_KEYS = 12
#: rows of a large window scored against the whole window at a time (memory: this many
#: rows x the window's size, at most)
_ROW_BLOCK = 1000


def _candidate_products(units: list[tuple[float, sparse.csr_matrix]], n: int) -> tuple[np.ndarray, ...]:
    """(rows, columns, weighted sum of the channels' cosines) of the candidate pairs of a large
    window: the pairs of articles that share, in some channel, one of the ``CANDIDATE_KEYS``
    keys of largest weight of each (a key weighs by idf, so the keys that tell an event apart,
    not the words every text has). The cosines themselves are over all keys, as
    ``sparse_similarity`` computes them for every pair. Symmetric, with the diagonal."""
    from scipy import sparse

    marks = sparse.identity(n, format="csr")
    for _, unit in units:
        heaviest = _heaviest_keys(unit, CANDIDATE_KEYS)
        marks = marks + heaviest @ heaviest.T
    pairs = marks.tocsr().tocoo()  # row by row
    i, j = pairs.row, pairs.col
    data = np.zeros(len(i))
    for start in range(0, n, _ROW_BLOCK):
        first, last = np.searchsorted(i, [start, start + _ROW_BLOCK])
        rows, cols = i[first:last] - start, j[first:last]
        for weight, unit in units:
            block = (unit[start : start + _ROW_BLOCK] @ unit.T).tocsr()  # these rows against all
            block.sum_duplicates()  # canonical: sorted indices, so each look-up is a binary search
            data[first:last] += weight * np.asarray(block[rows, cols]).ravel()
    keep = data > 0
    return i[keep], j[keep], data[keep]


def _heaviest_keys(unit: sparse.csr_matrix, k: int) -> sparse.csr_matrix:
    """``unit`` with only the ``k`` largest entries of each row, each set to 1."""
    from scipy import sparse

    indptr, indices, data = unit.indptr, unit.indices, unit.data
    kept = []
    for row in range(unit.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= k:
            kept.append(np.arange(start, end))
        else:
            kept.append(start + np.argpartition(-data[start:end], k)[:k])
    chosen = np.concatenate(kept) if kept else np.zeros(0, dtype=int)
    rows = np.repeat(np.arange(unit.shape[0]), [len(x) for x in kept])
    return sparse.csr_matrix((np.ones(len(chosen)), (rows, indices[chosen])), shape=unit.shape)


def similarity_matrix(articles: Sequence[Article], settings: StorySettings) -> np.ndarray:
    """Dense form of ``sparse_similarity`` (for small inputs and inspection)."""
    dense = sparse_similarity(articles, settings).toarray()
    np.fill_diagonal(dense, 1.0)
    return dense


def _average_linkage(sim: np.ndarray, threshold: float) -> list[list[int]]:
    """Average-linkage (UPGMA) clusters: merge while the mean pairwise similarity of the
    closest two clusters is at least ``threshold``. Returns sorted index lists, sorted."""
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    n = len(sim)
    if n == 1:
        return [[0]]
    distance = 1.0 - np.clip(np.asarray(sim, dtype=float), 0.0, 1.0)
    distance = (distance + distance.T) / 2.0
    np.fill_diagonal(distance, 0.0)
    tree = hierarchy.linkage(squareform(distance, checks=False), method="average")
    # a tiny tolerance so that a mean of exactly ``threshold`` still merges
    labels = hierarchy.fcluster(tree, t=1.0 - threshold + 1e-12, criterion="distance")
    groups: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[int(label)].append(index)
    return sorted(groups.values())


def _blocked_average_linkage(sim: sparse.coo_matrix, threshold: float) -> list[list[int]]:
    """``_average_linkage`` over a sparse similarity, one connected block at a time.

    Two clusters can only merge when their mean similarity reaches ``threshold``, which
    needs at least one pair at or above it; so the connected components of the graph of
    such pairs never merge with each other, and clustering each one alone gives exactly
    the result of clustering everything at once, in O(sum of block sizes squared).
    """
    from scipy import sparse
    from scipy.sparse.csgraph import connected_components

    n = sim.shape[0]
    strong = sim.data >= threshold
    graph = sparse.coo_matrix((np.ones(int(strong.sum())), (sim.row[strong], sim.col[strong])), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    members: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        members[int(label)].append(index)
    csr = sim.tocsr()
    groups = []
    for block in members.values():
        if len(block) == 1:
            groups.append(block)
            continue
        sub = csr[block][:, block].toarray()
        groups.extend([block[k] for k in g] for g in _average_linkage(sub, threshold))
    return sorted(sorted(g) for g in groups)


def cluster_stories(
    articles: list[Article], settings: StorySettings, profiles: Mapping | None = None
) -> list[list[str]]:
    """Group articles about the same event; returns lists of article ids.

    Pure and order-independent: inputs are sorted (earliest published, then id) first; each
    cluster lists its ids in that order, clusters are ordered by their first article.
    Articles repeating an article_id are counted once.
    """
    unique: dict[str, Article] = {}
    for article in sorted(articles, key=representative_key):
        unique.setdefault(article.article_id, article)
    items = list(unique.values())
    if not items:
        return []
    if len(items) == 1:
        return [[items[0].article_id]]
    groups = _blocked_average_linkage(sparse_similarity(items, settings, profiles), settings.cluster_threshold)
    return [[items[i].article_id for i in group] for group in groups]


def story_id_for(topic: str, representative_article_id: str) -> str:
    """Stable story id from the topic and the article that founded the story."""
    key = f"{topic}\x1f{representative_article_id}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


# --- linking clusters to stories across windows and runs ----------------------------------

#: terms kept per channel in a story vector (the tail of a long article's vector carries
#: little of its cosine, and the state stays small: at most ~200 numbers per story)
PROFILE_TERMS = 100


def _trimmed(vector: dict[str, float], keep: int = PROFILE_TERMS) -> dict[str, float]:
    """The ``keep`` heaviest entries of each channel, plus the channel presence counts."""
    out: dict[str, float] = {}
    channels: dict[str, dict[str, float]] = defaultdict(dict)
    for key, w in vector.items():
        if key[0] == "#":
            out[key] = w
        else:
            channels[key[0]][key] = w
    for weights in channels.values():
        out.update(_heaviest(weights, keep))  # the keys of one channel share their prefix
    return out


def story_vector(
    articles: Sequence[Article],
    languages: tuple[str, ...] = DEFAULT_LANGUAGES,
    profiles: Mapping | None = None,
    background_docs: float = StorySettings.background_docs,
) -> dict[str, float]:
    """What linking knows of a cluster or a story: per channel of ``sparse_similarity``
    (``t:`` title + text terms, ``e:`` names, ``h:`` headline, ``n:`` figures), the mean of
    the articles' unit vectors, and per channel the share of articles that have it (``#t``,
    ``#e``, ``#h``, ``#n``).

    The dot product of two such means is the mean pairwise cosine of their articles: the
    average linkage that clustering uses inside a window. So ``link_score`` is on the scale
    of ``cluster_threshold``, and two articles get the same decision whether they meet in
    one window or in two. The idf must not depend on which window a cluster came from, so it
    is the one a window of this article alone would give (``_window_idf``: the background
    share blended as ``_idf`` blends it, ``background_docs`` as in ``StorySettings``)."""
    # The sums are kept per channel on the bare terms, and only the PROFILE_TERMS kept of each
    # channel get their "t:" prefix: the same vector as _trimmed of the prefixed sums (same
    # sums, same order) for less work (one article of the 1k corpus: 0.70 -> 0.38 ms).
    present: dict[str, float] = {}  # channel -> articles that have it, channels first-seen
    sums: dict[str, dict[str, float]] = {}  # channel -> term -> summed weight, first-seen
    for article in articles:
        for channel, unit in _unit_channels(_profile(article, languages, profiles), background_docs):
            present[channel] = present.get(channel, 0.0) + 1.0
            if channel not in sums:
                sums[channel] = unit  # a fresh dict: the first article's weights, as the sums
                continue
            total = sums[channel]
            for term, w in unit.items():
                total[term] = total.get(term, 0.0) + w
    n = len(articles)
    out = {"#" + channel: count / n for channel, count in present.items()}
    for channel, total in sums.items():
        if n > 1:  # (w / 1 is w) the mean first: the heaviest are chosen by it
            total = {term: w / n for term, w in total.items()}
        prefix = channel + ":"
        for term, w in _heaviest(total, PROFILE_TERMS):
            out[prefix + term] = w
    return out


def _heaviest(weights: dict[str, float], keep: int) -> Iterable[tuple[str, float]]:
    """The ``keep`` heaviest (key, weight) entries, as ``_trimmed`` keeps them of a channel:
    all in their order when there are no more, else heaviest first (ties: larger key)."""
    if len(weights) <= keep:
        return weights.items()
    # the keep-th weight first (fast on floats: sorted in C, where heapq.nlargest runs its
    # loop in Python; 0.095 -> 0.061 ms per article of the 1k corpus), then only the entries
    # from it on are ordered
    cutoff = sorted(weights.values(), reverse=True)[keep - 1]
    kept = sorted(((w, key) for key, w in weights.items() if w >= cutoff), reverse=True)[:keep]
    return [(key, w) for w, key in kept]


def _window_idf(background_docs: float) -> _ValueCache:
    """Background share of articles -> the idf ``_idf`` gives a word of an article alone in
    its window: ``-log((1 + m * share) / (1 + m))`` (+ 1e-3), ``m = background_docs``. On
    the scale of a pair's idf (at most ~log(1 + m)), so a link between two one-article
    clusters weighs words as their similarity in one window does; the bare background idf
    (``-log(share)``, up to ~9 for rare words) let rare words dominate the story vectors, and
    on l3s_gn1 pairs linking then decided 7 of 1,176 pairs otherwise than clustering (sure
    pairs F1 0.788 as the pipeline vs 0.810 clustered in one window; now 0.812,
    ``benchmarks/stories.py``). The shares are wordfreq's binned frequencies, so a few hundred
    distinct values serve all terms: a look-up is cheaper than the logarithm."""
    found = _WINDOW_IDF.get(background_docs)
    if found is None:
        m = background_docs
        found = _WINDOW_IDF[m] = _ValueCache(lambda share: -math.log(min(1.0, (1.0 + m * share) / (1.0 + m))) + 1e-3)
    return found


_WINDOW_IDF: dict[float, _ValueCache] = {}


def _unit_channels(
    feats: TextProfile, background_docs: float = StorySettings.background_docs
) -> list[tuple[str, dict[str, float]]]:
    """The article's unit vector in each channel of ``_CHANNELS`` it has (in that order)."""
    prior = feats.prior
    idf_of = _window_idf(background_docs)
    idf = {t: idf_of[prior.get(t, FALLBACK_DF)] for t in chain(feats.terms, feats.numbers)}
    out = []
    for (channel, _), vector in zip(_CHANNELS, _channel_vectors(feats, idf), strict=True):
        weights = list(vector.values())
        norm = math.sqrt(sum(map(operator.mul, weights, weights)))
        if norm:
            out.append((channel, {t: w / norm for t, w in vector.items()}))
    return out


def _as_story_vector(vector: dict[str, float]) -> dict[str, float]:
    """State written before story vectors had channels held one normalised term profile:
    read it as the term channel."""
    if not vector or any(k.startswith("#") for k in vector):
        return vector
    return {"#t": 1.0, **{f"t:{k}": v for k, v in vector.items()}}


def link_weights(
    vectors: Sequence[dict[str, float]], background_docs: float, counts: Sequence[int] | None = None
) -> dict[str, float]:
    """Per term, how much it still counts when linking: its idf among ``vectors`` (the
    clusters and stories being linked, one document each, or ``counts`` each), blended with a nominal
    background as ``_idf`` blends a window, relative to a term found once. A word that many
    of the stories share (the query word of a search, the storm of the week) fades, as it
    does inside a window; a word two clusters share keeps most of its weight."""
    if counts is None:
        df: Counter = Counter(chain.from_iterable(vectors))  # then without the channel shares:
    else:  # a vector that stands for ``count`` documents
        df = Counter()
        for vector, count in zip(vectors, counts, strict=True):
            for key in vector:
                df[key] += count
    for key in [k for k in df if k.startswith("#")]:  # a generator's filter costs 3x the count
        del df[key]
    top = (len(vectors) if counts is None else sum(counts)) + background_docs
    floor = background_docs * FALLBACK_DF
    rare = math.log(top / (1 + floor))
    if rare <= 0:
        return {}
    return {k: math.log(top / (d + floor)) / rare for k, d in df.items() if d > 1}


def link_score(
    a: dict[str, float],
    b: dict[str, float],
    settings: StorySettings,
    weights: dict[str, float] | None = None,
) -> float:
    """Similarity of two story vectors (``story_vector``): the weighted mean of the channel
    cosines, a channel counting as far as both sides have it, as in ``sparse_similarity``.
    ``weights`` (``link_weights``) re-weigh terms; each vector keeps its length, so the score
    stays a mean pairwise similarity."""
    weights = weights or {}
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    dots: dict[str, float] = defaultdict(float)
    for key, w in small.items():
        if key[0] != "#" and key in large:
            dots[key[0]] += w * large[key] * weights.get(key, 1.0) ** 2
    return _combine(dots, _rescales(a, weights), _rescales(b, weights), a, b, _channel_weights(settings))


def _channel_weights(settings: StorySettings) -> list[tuple[str, float]]:
    return [(c, getattr(settings, name)) for c, name in _CHANNELS if getattr(settings, name) > 0]


def _combine(
    dots: dict[str, float],
    rescale_a: dict[str, float],
    rescale_b: dict[str, float],
    a: dict[str, float],
    b: dict[str, float],
    channels: list[tuple[str, float]],
) -> float:
    num = den = 0.0
    for channel, weight in channels:
        share = a.get("#" + channel, 0.0) * b.get("#" + channel, 0.0)
        if share > 0:
            dot = dots.get(channel, 0.0)
            if dot:
                num += weight * dot * rescale_a.get(channel, 1.0) * rescale_b.get(channel, 1.0)
            den += weight * share
    return min(1.0, num / den) if den else 0.0


def _rescales(vector: dict[str, float], weights: dict[str, float]) -> dict[str, float]:
    """Per channel: |channel of vector| / |re-weighed channel of vector|."""
    plain: dict[str, float] = defaultdict(float)
    weighted: dict[str, float] = defaultdict(float)
    for key, w in vector.items():
        if key[0] != "#":
            plain[key[0]] += w * w
            weighted[key[0]] += (w * weights.get(key, 1.0)) ** 2
    return {c: math.sqrt(plain[c] / weighted[c]) if weighted[c] > 0 else 0.0 for c in plain}


class _StoryIndex:
    """Story vectors behind an inverted index (term -> stories), so that a cluster is scored
    against the stories sharing a term with it, not against every story in the state."""

    def __init__(self, weights: dict[str, float]) -> None:
        self._weights = weights
        self._postings: dict[str, dict[str, float]] = defaultdict(dict)
        self._vectors: dict[str, dict[str, float]] = {}
        self._rescales: dict[str, dict[str, float]] = {}
        # the vector last scored and its rescales: a cluster that founds a story is put next
        # (link_clusters never changes a vector it has scored)
        self._scored: tuple[dict[str, float], dict[str, float]] | None = None
        # the stories of the state, as one matrix (``put_state``); a story put again (it took a
        # cluster) leaves it for the postings
        self._block: _StateBlock | None = None

    def put_state(self, stories: Sequence[tuple[str, dict[str, float]]]) -> None:
        """Index the stories of the state, before any ``put``."""
        self._block = _StateBlock(stories, self._weights) if stories else None

    def remove(self, story_id: str) -> None:
        if self._block is not None:
            self._block.drop(story_id)
        for key in self._vectors.pop(story_id, ()):
            if key[0] != "#":
                posting = self._postings[key]
                del posting[story_id]
                if not posting:
                    del self._postings[key]
        self._rescales.pop(story_id, None)

    def put(self, story_id: str, vector: dict[str, float]) -> None:
        self.remove(story_id)
        self._vectors[story_id] = vector
        scored = self._scored
        self._rescales[story_id] = scored[1] if scored and scored[0] is vector else _rescales(vector, self._weights)
        for key, w in vector.items():
            if key[0] != "#":
                self._postings[key][story_id] = w

    def scores(
        self,
        vector: dict[str, float],
        settings: StorySettings,
        keep: Callable[[str], bool],
        at_least: float = 0.0,
    ) -> dict[str, float]:
        """``link_score`` of ``vector`` against every story sharing a term with it, of those
        that ``keep`` accepts (of the state's stories: those scoring ``at_least``)."""
        dots: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for key, w in vector.items():
            posting = self._postings.get(key) if key[0] != "#" else None
            if posting:
                ww = w * self._weights.get(key, 1.0) ** 2
                for story_id, v in posting.items():
                    dots[story_id][key[0]] += ww * v
        mine = _rescales(vector, self._weights)
        self._scored = (vector, mine)
        channels = _channel_weights(settings)
        found = {
            story_id: _combine(d, mine, self._rescales[story_id], vector, self._vectors[story_id], channels)
            for story_id, d in dots.items()
            if keep(story_id)
        }
        if self._block is not None:
            found.update(self._block.scores(vector, mine, channels, keep, at_least))
        return found


_CHANNEL_INDEX = {channel: k for k, (channel, _) in enumerate(_CHANNELS)}


class _StateBlock:
    """The story vectors of the state as one sparse matrix (stories x keys), scored against a
    cluster in one product. A later run's clusters meet most stories of a long-lived state
    through some shared word; scoring them one dict at a time took ~10 us per story and
    cluster (148 clusters against a state of 15,810 stories: 3.5 s). The arithmetic is
    ``_combine``'s, in the same order (dots summed over the cluster's keys in its order,
    channels in ``_CHANNELS`` order), so the scores are the same to the last bit."""

    def __init__(self, stories: Sequence[tuple[str, dict[str, float]]], weights: dict[str, float]) -> None:
        from scipy import sparse

        self._weights = weights
        self.ids = [story_id for story_id, _ in stories]
        self._row = {story_id: r for r, story_id in enumerate(self.ids)}
        self._alive = np.ones(len(self.ids), dtype=bool)
        self._columns: dict[str, int] = {}
        self._shares = np.zeros((len(self.ids), len(_CHANNELS)))
        keys: list[str] = []
        values: list[float] = []
        counts: list[int] = []
        for r, (_, vector) in enumerate(stories):
            for channel, c in _CHANNEL_INDEX.items():
                self._shares[r, c] = vector.get("#" + channel, 0.0)
            mine = [key for key in vector if key[0] != "#"]
            keys.extend(mine)
            values.extend(map(vector.__getitem__, mine))
            counts.append(len(mine))
        columns = self._columns
        column_array = np.array([columns.setdefault(key, len(columns)) for key in keys], dtype=np.intp)
        row_array = np.repeat(np.arange(len(self.ids), dtype=np.intp), counts)
        # a key of a channel this version does not score (-1) is left out
        self._channel_of = np.array([_CHANNEL_INDEX.get(key[0], -1) for key in columns], dtype=np.intp)
        data = np.array(values, dtype=np.float64)
        known = self._channel_of[column_array] >= 0
        if not known.all():
            row_array, column_array, data = row_array[known], column_array[known], data[known]
        self._matrix = sparse.csc_matrix((data, (row_array, column_array)), shape=(len(self.ids), len(columns)))
        # _rescales of every story: sums per (story, channel) in the story's key order
        key_weights = np.array([weights.get(key, 1.0) for key in self._columns], dtype=np.float64)
        bucket = row_array * len(_CHANNELS) + self._channel_of[column_array]
        size = len(self.ids) * len(_CHANNELS)
        plain = np.bincount(bucket, weights=data * data, minlength=size).reshape(-1, len(_CHANNELS))
        weighted = (data * key_weights[column_array]) ** 2
        weighted = np.bincount(bucket, weights=weighted, minlength=size).reshape(-1, len(_CHANNELS))
        with np.errstate(divide="ignore", invalid="ignore"):
            self._rescales = np.where(weighted > 0, np.sqrt(plain / weighted), 0.0)

    def drop(self, story_id: str) -> None:
        row = self._row.get(story_id)
        if row is not None:
            self._alive[row] = False

    def scores(
        self,
        vector: dict[str, float],
        mine: dict[str, float],
        channels: list[tuple[str, float]],
        keep: Callable[[str], bool],
        at_least: float,
    ) -> dict[str, float]:
        picked, products = [], []
        for key, w in vector.items():
            # (a key of a channel not scored has a column, but an empty one)
            if key[0] != "#" and (column := self._columns.get(key)) is not None:
                picked.append(column)
                products.append(w * self._weights.get(key, 1.0) ** 2)
        if not picked:
            return {}
        columns = np.array(picked, dtype=np.intp)
        sub = self._matrix[:, columns]
        rows = np.unique(sub.indices)
        rows = rows[self._alive[rows]]
        if not len(rows):
            return {}
        per_channel = np.zeros((len(picked), len(_CHANNELS)))
        per_channel[np.arange(len(picked)), self._channel_of[columns]] = products
        dots = (sub @ per_channel)[rows]
        num = np.zeros(len(rows))
        den = np.zeros(len(rows))
        for channel, weight in channels:
            c = _CHANNEL_INDEX[channel]
            share = vector.get("#" + channel, 0.0) * self._shares[rows, c]
            on = share > 0
            num += np.where(on, weight * dots[:, c] * mine.get(channel, 1.0) * self._rescales[rows, c], 0.0)
            den += np.where(on, weight * share, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(den > 0, np.minimum(1.0, num / den), 0.0)
        found = {}
        high = score >= at_least
        for row, value in zip(rows[high].tolist(), score[high].tolist(), strict=True):
            story_id = self.ids[row]
            if keep(story_id):
                found[story_id] = value
        return found


def time_factor(gap_hours: Any, settings: StorySettings) -> Any:
    """The time penalty of a pair ``gap_hours`` apart (a number or a numpy array): halved
    per ``time_scale_hours`` beyond the first. Clustering and linking both apply it."""
    scale = settings.time_scale_hours
    return 0.5 ** (np.maximum(0.0, gap_hours - scale) / scale)


@dataclass(frozen=True)
class ClusterSummary:
    """What linking needs to know about one cluster of one (topic, window): no texts."""

    key: str
    topic: str
    window_start: datetime
    window_end: datetime
    article_ids: tuple[str, ...]  # representative order; the first founded the cluster
    title: str
    first_published: datetime
    last_published: datetime
    #: the story vector, as JSON of an object in term order. One string, not ~200 tuples:
    #: the summaries reach the linking step as a side input, which the one-worker runner's
    #: state cache sizes object by object (objsize): 0.6 s for 600 pages with tuples, 0.02 s
    #: for 1,000 summaries as they are now. An object, not [term, weight] pairs: a story
    #: founded by this cluster alone writes it into the state as it is (``StoryState.to_json``)
    profile_json: str
    #: representatives of the cluster's exact and near copies (their ``duplicate_of``), sorted:
    #: a copy's story is its representative's (``link_clusters``)
    copies_of: tuple[str, ...] = ()
    #: its articles that are nobody's copy, for near duplicates across windows and runs: JSON
    #: of [article id, event time (Unix s), fetch time (Unix s), distinct shingles, packed
    #: signature], in representative order (one string, as ``profile_json``)
    originals_json: str = "[]"

    @property
    def profile(self) -> dict[str, float]:
        return json.loads(self.profile_json)


@dataclass
class StoryState:
    """A story as remembered between windows and runs (one JSON line in the state file)."""

    story_id: str
    topic: str
    title: str
    article_ids: list[str]
    first_published: datetime
    last_published: datetime
    window_start: datetime
    window_end: datetime
    profile: dict[str, float] = field(default_factory=dict)
    #: [article id, distinct shingles, packed signature] of its articles that are nobody's
    #: copy: a near copy in a later run points to them (``link_clusters``)
    originals: list[list] = field(default_factory=list)
    #: the line this story was read from (``from_json``), written back as it was while the
    #: story is unchanged: most of a long-lived state is untouched by a run, and encoding a
    #: story's ~180 weights costs ~0.1 ms. ``link_clusters`` drops it from a story it changes;
    #: whoever changes a story otherwise must too (``records.replace`` makes a copy without it).
    _line: ClassVar[str | None] = None
    #: ``profile`` as JSON (sorted keys, as ``to_json`` writes it), while it is the vector of
    #: the one cluster that founded the story (``ClusterSummary.profile_json``): encoding the
    #: weights is most of a line's cost (a run's new stories at 1k pages: 0.14 of 0.18 s).
    #: ``link_clusters`` drops it when the story takes another cluster.
    _profile_line: ClassVar[str | None] = None

    def to_json(self) -> str:
        if self._line is not None:
            return self._line
        row = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        for key in ("first_published", "last_published", "window_start", "window_end"):
            row[key] = row[key].isoformat()
        if self._profile_line is None:
            return json.dumps(row, sort_keys=True, ensure_ascii=False)
        # the same line, with the profile's JSON put where sort_keys puts it
        del row["profile"]
        head = json.dumps({k: v for k, v in row.items() if k < "profile"}, sort_keys=True, ensure_ascii=False)
        tail = json.dumps({k: v for k, v in row.items() if k > "profile"}, sort_keys=True, ensure_ascii=False)
        parts = [head[1:-1], f'"profile": {self._profile_line}', tail[1:-1]]
        return "{" + ", ".join(part for part in parts if part) + "}"

    @classmethod
    def from_json(cls, line: str) -> StoryState:
        row = json.loads(line)
        for key in ("first_published", "last_published", "window_start", "window_end"):
            row[key] = datetime.fromisoformat(row[key])
        story = cls(**row)
        story._line = line.strip()
        return story

    def to_story(self) -> Story:
        return Story(
            story_id=self.story_id,
            topic=self.topic,
            title=self.title,
            article_ids=tuple(self.article_ids),
            size=len(self.article_ids),
            first_published=self.first_published,
            last_published=self.last_published,
            window_start=self.window_start,
            window_end=self.window_end,
        )


def link_clusters(
    clusters: Iterable[ClusterSummary],
    previous: Iterable[StoryState],
    settings: StorySettings,
    known_stories: Mapping[str, str] | None = None,
    fingerprint: FingerprintSettings | None = None,
) -> tuple[dict[str, str], list[StoryState], list[StoryState], dict[str, str]]:
    """Give every cluster a story id, reusing the ids of earlier stories it continues.

    Clusters are visited in event-time order. A cluster continues a story (from the state
    of earlier runs or from an earlier cluster of this run) when it shares an article id
    with it (re-ingest), or else when the story was last seen at most ``link_hours`` before
    and ``link_score`` of their story vectors, times the time penalty of their gap, reaches
    ``link_threshold`` (the best-scoring story wins). A story made only of clusters of one
    (topic, window) of this run takes no other cluster of that (topic, window): the
    clustering there has already decided against joining them. Once the story holds
    anything that clustering did not see (a cluster of another topic or window, or articles
    of an earlier run), a cluster of that (topic, window) may join it, as average linkage in
    one window would merge a cluster with the group a bridge made. Clusters that continue
    nothing found a new story, ``story_id_for(topic, first article)``.

    A copy goes where its representative went (``ClusterSummary.copies_of``): a cluster
    holding a copy continues the story of the copied article, as if it shared that article's
    id; ``known_stories`` (article id -> story id, of articles earlier runs wrote) names that
    story when the article is not in ``previous`` (e.g. its story left the state after
    ``state_retention_days``): the story comes back under its id, with this run's articles.

    Near copies across clusters (other windows, other topics, earlier runs), which the
    clustering inside a window cannot see: a cluster's articles that are nobody's copy
    (``ClusterSummary.originals_json``) are compared with those of the story it joins
    (``StoryState.originals`` and earlier clusters of the run) by ``signatures_match``. A near
    copy's group has one representative: an article an earlier run wrote (it is written
    already), else the earliest published, then first fetched, then smallest id, as inside a
    window (``representative_key``).

    Returns (cluster key -> story id, stories touched in this run, full new state, article id
    -> representative for this run's near copies found across clusters; their own copies
    follow them).
    """
    fingerprint = fingerprint or FingerprintSettings()
    stories: dict[str, StoryState] = {  # copies: the caller's state stays as it was
        s.story_id: _copied(s) for s in previous
    }
    near = _NearCopies(fingerprint, stories.values())
    owner: dict[str, str] = {}
    for story in sorted(stories.values(), key=lambda s: s.story_id):
        for article_id in story.article_ids:
            owner.setdefault(article_id, story.story_id)
    known = known_stories or {}
    # story -> the one (topic, window) of this run it is made of so far, None once it holds
    # anything else (stories of the state have no entry): closed to that (topic, window)
    only: dict[str, tuple[str, datetime] | None] = {}

    def closed(story_id: str, cluster: ClusterSummary) -> bool:
        return only.get(story_id) == (cluster.topic, cluster.window_start)

    assignment: dict[str, str] = {}
    touched: set[str] = set()
    horizon = timedelta(hours=settings.link_hours)
    ordered = sorted(clusters, key=lambda c: (c.window_start, c.first_published, c.key))
    vectors = {c.key: c.profile for c in ordered}
    # ``link_weights_from: past``: each window's words fade by how many of its own clusters
    # and of the stories still in reach hold them, and the stories in reach are indexed
    # afresh with those weights when a window starts; ``run``: one set of weights for all
    per_window: dict[datetime, list[ClusterSummary]] = {}
    if settings.link_weights_from == "past":
        for c in ordered:
            per_window.setdefault(c.window_start, []).append(c)
        weights = {}
    else:
        weights = link_weights([*vectors.values(), *(s.profile for s in stories.values())], settings.background_docs)
    index = _StoryIndex(weights)
    # clusters come in window order: a story last seen more than ``link_hours`` before the
    # current window can no longer be reached, so it leaves the index (keeps it small)
    expiry: list[tuple[datetime, str]] = []
    window: datetime | None = None
    for cluster in ordered:
        if cluster.window_start != window:
            first, window = window is None, cluster.window_start
            if per_window or first:
                # A story last seen before the window - link_hours would leave the index
                # before anything is scored against it: it is not put there (on a story that
                # shares an article with a cluster, ``put`` below). The state of a long
                # backfill is mostly such stories (~14 days kept, 7 reachable).
                in_reach = sorted(
                    (s for s in stories.values() if s.last_published >= window - horizon), key=lambda s: s.story_id
                )
                if per_window:
                    here = per_window[window]
                    weights = link_weights(
                        [*(c.profile for c in here), *(s.profile for s in in_reach)],
                        settings.background_docs,
                        [*(1 for _ in here), *(max(1, len(s.article_ids)) for s in in_reach)],
                    )
                    index = _StoryIndex(weights)
                index.put_state([(story.story_id, story.profile) for story in in_reach])
                expiry = [(story.last_published, story.story_id) for story in in_reach]
                heapq.heapify(expiry)
        while expiry and expiry[0][0] < cluster.window_start - horizon:
            last, story_id = heapq.heappop(expiry)
            if stories[story_id].last_published == last:
                index.remove(story_id)
            else:  # seen again since: check later
                heapq.heappush(expiry, (stories[story_id].last_published, story_id))
        vector = vectors[cluster.key]
        shared = Counter(owner[a] for a in cluster.article_ids if a in owner)
        for original in cluster.copies_of:  # a copy counts as its representative's article
            story_of_original = owner.get(original) or known.get(original)
            if story_of_original is not None:
                shared[story_of_original] += 1
        candidates = [(count, 1.0, sid) for sid, count in shared.items() if not closed(sid, cluster)]
        if not candidates:

            def reachable(story_id: str, cluster: ClusterSummary = cluster) -> bool:
                story = stories[story_id]
                return (
                    not closed(story_id, cluster)
                    and story.last_published >= cluster.first_published - horizon
                    and story.first_published <= cluster.last_published + horizon
                )

            for story_id, score in index.scores(vector, settings, reachable, settings.link_threshold).items():
                if score < settings.link_threshold:  # the time factor only lowers it
                    continue
                story = stories[story_id]
                gap = max(
                    cluster.first_published - story.last_published,
                    story.first_published - cluster.last_published,
                    timedelta(0),
                )
                score *= time_factor(gap / timedelta(hours=1), settings)
                if score >= settings.link_threshold:
                    candidates.append((0, score, story_id))
        story_id = min(candidates, key=lambda c: (-c[0], -c[1], c[2]))[2] if candidates else None
        if story_id in stories:
            story = stories[story_id]
            if only.get(story_id) != (cluster.topic, cluster.window_start):
                only[story_id] = None  # now made of more than one (topic, window)
            # the mean over both (story vectors are means of unit vectors)
            merged: dict[str, float] = defaultdict(float)
            before, added = max(1, len(story.article_ids)), len(cluster.article_ids)
            for t, w in story.profile.items():
                merged[t] += w * before
            for t, w in vector.items():
                merged[t] += w * added
            story.profile = _trimmed({t: w / (before + added) for t, w in merged.items()})
            vars(story).pop("_profile_line", None)
            index.put(story_id, story.profile)
            heapq.heappush(expiry, (story.last_published, story_id))
            story.first_published = min(story.first_published, cluster.first_published)
            story.last_published = max(story.last_published, cluster.last_published)
            story.window_start = min(story.window_start, cluster.window_start)
            story.window_end = max(story.window_end, cluster.window_end)
            story.title = story.title or cluster.title
        else:  # a new story, or one of an earlier run's copied articles that left the state
            earlier = story_id is not None  # it held articles before this run
            story_id = story_id or story_id_for(cluster.topic, cluster.article_ids[0])
            only[story_id] = None if earlier else (cluster.topic, cluster.window_start)
            story = stories[story_id] = StoryState(
                story_id=story_id,
                topic=cluster.topic,
                title=cluster.title,
                article_ids=[],
                first_published=cluster.first_published,
                last_published=cluster.last_published,
                window_start=cluster.window_start,
                window_end=cluster.window_end,
                profile=vector,
            )
            story._profile_line = cluster.profile_json
            index.put(story_id, vector)
            heapq.heappush(expiry, (story.last_published, story_id))
        near.add(story_id, cluster)
        for article_id in cluster.article_ids:
            previous_owner = owner.get(article_id)
            if previous_owner == story_id:
                continue
            if previous_owner is not None:  # the article moved: it is counted once
                stories[previous_owner].article_ids.remove(article_id)
                touched.add(previous_owner)
            owner[article_id] = story_id
            story.article_ids.append(article_id)
        assignment[cluster.key] = story_id
        touched.add(story_id)
    live = [s for s in stories.values() if s.article_ids]
    if live:
        newest = max(s.last_published for s in live)
        keep_after = newest - timedelta(days=settings.state_retention_days)
        state = [s for s in live if s.last_published >= keep_after or s.story_id in touched]
    else:
        state = []
    state.sort(key=lambda s: s.story_id)
    for story in state:
        if story.story_id in touched:
            story.originals = near.kept(story.story_id)
            vars(story).pop("_line", None)  # changed: encoded afresh
    return assignment, [s for s in state if s.story_id in touched], state, near.representatives()


def _copied(story: StoryState) -> StoryState:
    """A story of the state, to be changed by ``link_clusters``: its own lists and vector
    (read as channels), and the line it was read from while it stays as it is (a line of an
    older format too: reading converts it again)."""
    copy = records.replace(
        story,
        article_ids=list(story.article_ids),
        profile=_as_story_vector(dict(story.profile)),
        originals=list(story.originals),
    )
    if story._line is not None:
        copy._line = story._line
    return copy


class _NearCopies:
    """Near copies across the clusters ``link_clusters`` visits: per story, the articles that
    are nobody's copy (from the state, then from each cluster the story takes), each new one
    compared with those of its story; groups are kept as a union-find whose root is the
    group's representative."""

    def __init__(self, fingerprint: FingerprintSettings, stories: Iterable[StoryState]) -> None:
        self._fingerprint = fingerprint
        #: this run's articles; written articles (state) rank before them: they stay
        #: representatives (``_rank_of``)
        self._rank: dict[str, tuple] = {}
        self._groups = UnionFind(key=self._rank_of)
        self._pools: dict[str, _Pool] = {}
        # the state's articles per story, made a pool when a cluster joins the story (most
        # stories of a long-lived state take none)
        self._state = {story.story_id: story.originals for story in stories if story.originals}
        self._written = {entry[0] for originals in self._state.values() for entry in originals}

    def _rank_of(self, article_id: str) -> tuple:
        return self._rank.get(article_id) or (0, 0.0, 0.0, article_id)

    def _pool(self, story_id: str) -> _Pool:
        pool = self._pools.get(story_id)
        if pool is None:
            pool = self._pools[story_id] = _Pool()
            for article_id, count, packed in self._state.pop(story_id, ()):
                pool.add(article_id, count, None, packed)  # unpacked if a cluster joins the story
        return pool

    def add(self, story_id: str, cluster: ClusterSummary) -> None:
        pool = self._pool(story_id)
        signatures, counts = pool.matrix()  # the story before this cluster
        fresh = []
        for article_id, event_s, fetched_s, count, packed in json.loads(cluster.originals_json):
            if article_id in self._rank or article_id in self._written:  # re-read: known already
                continue
            self._rank[article_id] = (1, event_s, fetched_s, article_id)  # as ``representative_key``
            signature = unpack_signature(packed)
            for row in np.flatnonzero(signature_matches(signature, count, signatures, counts, self._fingerprint)):
                self._groups.union(article_id, pool.ids[row])
            fresh.append((article_id, count, signature, packed))
        for entry in fresh:
            pool.add(*entry)

    def representatives(self) -> dict[str, str]:
        """This run's articles that turned out near copies -> their representative."""
        found = {}
        for article_id, rank in self._rank.items():
            if rank[0] == 1 and (root := self._groups.find(article_id)) != article_id:
                found[article_id] = root
        return found

    def kept(self, story_id: str) -> list[list]:
        """What the state keeps of a story for later runs: its articles that are no copy."""
        pool = self._pool(story_id)
        return [
            [article_id, count, packed]
            for article_id, count, packed in zip(pool.ids, pool.counts, pool.packed, strict=True)
            if self._groups.find(article_id) == article_id
        ]


class _Pool:
    """One story's articles that are nobody's copy, with their signatures as one matrix."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.counts: list[int] = []
        self.packed: list[str] = []
        self._signatures: list[np.ndarray | None] = []  # None: not unpacked yet
        self._matrix: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, article_id: str, count: int, signature: np.ndarray | None, packed: str) -> None:
        self.ids.append(article_id)
        self.counts.append(count)
        self.packed.append(packed)
        self._signatures.append(signature)
        self._matrix = None

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(signatures as rows, distinct shingle counts); rows of the wrong length (another
        ``num_perm``) never match."""
        if self._matrix is None:
            self._signatures = [
                unpack_signature(p) if s is None else s for s, p in zip(self._signatures, self.packed, strict=True)
            ]
            width = max((len(s) for s in self._signatures), default=0)
            rows = [s if len(s) == width else np.zeros(width, dtype="<u4") for s in self._signatures]
            signatures = np.vstack(rows) if rows else np.zeros((0, 0), dtype="<u4")
            self._matrix = (signatures, np.array(self.counts, dtype=np.int64))
        return self._matrix


# --- state I/O (fsspec) ---------------------------------------------------------------------

STATE_FILE = "stories.jsonl"


def state_url(settings: StorySettings, output_root: str | None) -> str | None:
    """Where the story state lives: ``state_path`` or ``<output>/_state/stories``."""
    if settings.state_path:
        return settings.state_path
    if output_root:
        return output_root.rstrip("/") + "/_state/stories"
    return None


def read_state(url: str | None) -> list[StoryState]:
    """Stories remembered by earlier runs (none when there is no state yet)."""
    if not url:
        return []
    import fsspec

    fs, base = fsspec.core.url_to_fs(url)
    path = f"{base.rstrip('/')}/{STATE_FILE}"
    if not fs.exists(path):
        return []
    with fs.open(path, "r", encoding="utf-8") as handle:
        return [StoryState.from_json(line) for line in handle if line.strip()]


def _state_bytes(stories: Sequence[StoryState]) -> bytes:
    return "".join(story.to_json() + "\n" for story in stories).encode("utf-8")


def stage_state(url: str, stories: Sequence[StoryState], token: str) -> tuple[str, str]:
    """Write the state under a pending name for the sink's commit; (pending, final) URLs."""
    return stage_file(f"{url.rstrip('/')}/{STATE_FILE}", _state_bytes(stories), token)


def write_state(url: str | None, stories: Sequence[StoryState], token: str) -> None:
    """Replace the state file: write a temporary file, then move it over the old one, so a
    reader sees the old or the new state, never half of one (``token`` is kept for callers)."""
    if not url:
        return
    write_atomic(f"{url.rstrip('/')}/{STATE_FILE}", _state_bytes(stories))


# --- Beam ---------------------------------------------------------------------------------


#: tag of ``kept_reading``'s (article id, key of the reading kept)
FIRST_READINGS = "first_readings"
#: tag of ClusterWindow's ClusterSummary output (its main output: (key, articles, dropped))
SUMMARIES = "summaries"


@dataclass(frozen=True)
class _WindowCluster:
    summary: ClusterSummary
    articles: tuple[Article, ...]  # duplicate_of set
    dropped: tuple[Article, ...] = ()  # repeated article ids (same canonical URL)


def cluster_window(
    topic: str,
    articles: Iterable[Article],
    window_start: datetime,
    window_end: datetime,
    settings: StorySettings,
    fingerprint: FingerprintSettings,
    profiles: Mapping | None = None,
) -> list[_WindowCluster]:
    """Duplicates and story clusters of one (topic, window): the pure core of GroupStories.
    ``profiles``: the articles' ``TextProfile`` by ``profile_key`` when computed before.
    An article that ``mark_exact_copies`` already made a copy of another (in another window,
    or written by an earlier run) keeps that mark, and its near duplicates here point there
    too; it still takes part in the clustering, so it joins a story of its window."""
    unique: dict[str, Article] = {}
    dropped: list[Article] = []

    for article in sorted(articles, key=reading_key):
        if article.article_id in unique:
            dropped.append(article)
        else:
            unique[article.article_id] = article
    duplicate_of = find_duplicates(list(unique.values()), fingerprint) if len(unique) > 1 else {}
    originals = [a for a in unique.values() if a.article_id not in duplicate_of]
    followers: dict[str, list[Article]] = defaultdict(list)
    for article in unique.values():
        if article.article_id in duplicate_of:
            followers[duplicate_of[article.article_id]].append(article)
    by_id = {a.article_id: a for a in originals}
    out = []
    for group in cluster_stories(originals, settings, profiles):
        members = [by_id[i] for i in group]
        dups = [
            records.replace(d, duplicate_of=d.duplicate_of or by_id[i].duplicate_of or i)
            for i in group
            for d in followers.get(i, ())
        ]
        everyone = sorted(members + dups, key=representative_key)
        first = members[0]
        times = [a.event_time for a in everyone]
        summary = ClusterSummary(
            key=f"{topic}|{window_start.isoformat()}|{first.article_id}",
            topic=topic,
            window_start=window_start,
            window_end=window_end,
            article_ids=tuple(a.article_id for a in everyone),
            # the earliest article with a headline speaks for the cluster
            title=next((a.title for a in members if a.title), ""),
            first_published=min(times),
            last_published=max(times),
            profile_json=json.dumps(
                dict(sorted(story_vector(members, settings.languages, profiles, settings.background_docs).items())),
                ensure_ascii=False,
            ),
            copies_of=tuple(sorted({a.duplicate_of for a in everyone if a.duplicate_of})),
            originals_json=json.dumps(
                [
                    [
                        a.article_id,
                        a.event_time.timestamp(),
                        a.fetched_at.timestamp(),
                        a.shingle_count,
                        pack_signature(a.signature),
                    ]
                    for a in everyone
                    if not a.duplicate_of and len(a.signature) == fingerprint.num_perm
                ]
            ),
        )
        mine = [d for d in dropped if d.article_id in set(summary.article_ids)]
        out.append(_WindowCluster(summary, tuple(everyone), tuple(mine)))
    return out


def content_key(article: Article) -> str:
    """What exact copies share: the content_hash (the article id when there is none, so that
    an article without text is nobody's copy)."""
    return article.content_hash or article.article_id


def copy_mark(article: Article) -> tuple[str, tuple]:
    """What finding an article's exact copies needs of it: (content key, (rank, id)), the rank
    being ``representative_key``. Small, so that the run can group these instead of articles."""
    return copy_mark_of_reading(article.article_id, reading_key(article))


def copy_mark_of_reading(article_id: str, key: tuple) -> tuple[str, tuple]:
    """``copy_mark`` of the article read as ``key`` (its ``reading_key``, which holds the rank
    and the content hash)."""
    return key[-2] or article_id, (key[:-2], article_id)


def copy_representative(key: str, marks: Iterable[tuple]) -> Iterator[tuple[str, str]]:
    """``copy_mark``s of one content key -> (key, representative id) when more than one article
    id has that text: the first by ``representative_key``. Nothing for a text read under
    one id only (repeated reads of one id are not copies; ``cluster_window`` drops them)."""
    marks = list(marks)
    if len({article_id for _, article_id in marks}) > 1:
        yield key, min(marks)[1]


def marked_copy(article: Article, representatives: Mapping[str, str], known_hashes: Mapping[str, str]) -> Article:
    """``article`` with ``duplicate_of`` set when it is an exact copy of another: of the article
    of that text an earlier run wrote (``known_hashes``: content_hash -> article_id; it is
    already written), else of its text's representative in this run (``representatives``:
    content key -> article id, see ``copy_representative``)."""
    representative = known_hashes.get(article.content_hash) if article.content_hash else None
    if representative is None:
        representative = representatives.get(content_key(article))
    if representative is None or representative == article.article_id:
        return article
    return records.replace(article, duplicate_of=representative)


def mark_exact_copies(articles: Iterable[Article], known_hashes: Mapping[str, str] | None = None) -> list[Article]:
    """Articles (whatever their window) -> the same articles, every exact copy (same
    ``content_hash``) with ``duplicate_of`` set to its representative (``marked_copy``).
    Repeated reads of one id stay as they are (``cluster_window`` drops them)."""
    articles = list(articles)
    by_key: dict[str, list[tuple]] = defaultdict(list)
    for key, mark in map(copy_mark, articles):
        by_key[key].append(mark)
    representatives = dict(pair for key, marks in by_key.items() for pair in copy_representative(key, marks))
    return [marked_copy(a, representatives, known_hashes or {}) for a in articles]


def cluster_windows(
    articles: Iterable[Article],
    settings: StorySettings,
    fingerprint: FingerprintSettings,
    known_hashes: Mapping[str, str] | None = None,
) -> list[_WindowCluster]:
    """GroupStories without Beam (benchmarks): exact copies marked (``mark_exact_copies``),
    then articles grouped by topic and event-time window of ``window_hours`` (aligned to the
    Unix epoch, as Beam's FixedWindows are), each group through ``cluster_window``."""
    span = settings.window_hours * 3600
    groups: dict[tuple[int, str], list[Article]] = defaultdict(list)
    for article in mark_exact_copies(articles, known_hashes):
        groups[(window_start(article.event_time.timestamp(), span), article.topic)].append(article)
    found = []
    for (start, topic), members in sorted(groups.items()):
        found.extend(cluster_window(topic, members, *window_datetimes(start, span), settings, fingerprint))
    return found


def window_start(event_s: float, span_s: float) -> float:
    """Start (Unix seconds) of the event-time window of ``span_s`` seconds that holds
    ``event_s``: windows are aligned to the Unix epoch, as Beam's ``FixedWindows`` are. Batch
    grouping and streaming's lateness checks (``streaming.window_bounds``) both use it."""
    return event_s // span_s * span_s


def window_datetimes(start_s: float, span_s: float) -> tuple[datetime, datetime]:
    """The window starting at ``start_s`` as (start, end) datetimes."""
    begin = datetime.fromtimestamp(start_s, UTC)
    return begin, begin + timedelta(seconds=span_s)


#: articles in one (topic, window) above which its similarity compares only candidate pairs
#: (``_candidate_products``: pairs sharing one of their heaviest keys) instead of every pair
#: that shares a word, which in news is nearly every pair, and the run logs a warning.
#: news_search (1,000 items), wikiref220 and l3s_gn1 (621 full texts) each as one window
#: through the candidate path give the same clusters as through the exact one; on synthetic
#: windows of wikiref paragraphs (every text shares words with most others), 3,000 the same,
#: 6,000 99.65 % of co-clustered pairs the same, 19.5 -> 12.4 s and 2.2 -> 1.4 GB peak (one
#: process, profiles made before). Still more than linear: 12,000 took 52 s and 4.4 GB there.
LARGE_WINDOW = 5000


def large_window_warning(topic: str, start: datetime, size: int) -> str | None:
    """The warning for a (topic, window) of ``size`` articles, or None when it is not large."""
    if size <= LARGE_WINDOW:
        return None
    return (
        f"window {topic} {start:%Y-%m-%d %H:%M} holds {size} articles: only pairs that share one of their "
        f"heaviest words are compared, and time and memory still grow faster than the window (12,000 "
        f"articles: ~52 s, ~4.4 GB). Smaller batches (run.batch_mb), shorter windows (stories.window_hours) "
        f"or more topics (stories.topics_file) keep windows small"
    )


class _ClusterWindowFn(beam.DoFn):
    """((topic, window start), [(Article, TextProfile)]) -> per story candidate, its
    ClusterSummary (tagged ``SUMMARIES``) and (key, articles, repeated reads dropped);
    readings of an article id other than the one kept are dropped (tagged ``FAILED``; side
    input: article id -> key of the reading kept), exact copies marked (side input: content
    key -> representative id)."""

    def __init__(
        self, settings: StorySettings, fingerprint: FingerprintSettings, known_hashes: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._fingerprint = fingerprint
        self._known_hashes = known_hashes

    def process(self, element, representatives, kept_readings):
        (topic, start), pairs = element
        kept = []
        for article, profile in pairs:
            if is_later_reading(article, kept_readings):
                yield beam.pvalue.TaggedOutput(records.FAILED, _duplicate_url(article))
            else:
                kept.append((article, profile))
        pairs = kept
        bounds = window_datetimes(start, self._settings.window_hours * 3600)
        warning = large_window_warning(topic, bounds[0], len(pairs))
        if warning:
            LOG.warning("%s", warning)
            beam.metrics.Metrics.counter(records.METRICS_NAMESPACE, "large_windows").inc()
        for cluster in cluster_window(
            topic,
            [marked_copy(a, representatives, self._known_hashes) for a, _ in pairs],
            *bounds,
            self._settings,
            self._fingerprint,
            {profile_key(a): p for a, p in pairs},
        ):
            # The summary goes to LinkStories alone; the articles wait for their story ids
            # without it (its story vector is most of a cluster's bytes).
            yield beam.pvalue.TaggedOutput(SUMMARIES, cluster.summary)
            yield cluster.summary.key, cluster.articles, cluster.dropped


class _LinkFn(beam.DoFn):
    """One element (any) and the run's ClusterSummary list (side input) -> one (assignment,
    touched stories, state, near copies)."""

    def __init__(
        self,
        settings: StorySettings,
        url: str | None,
        known_stories: Mapping[str, str],
        fingerprint: FingerprintSettings,
        continue_state: bool = True,
    ) -> None:
        self._settings = settings
        self._url = url
        self._known_stories = known_stories
        self._fingerprint = fingerprint
        self._continue_state = continue_state

    def process(self, _, summaries):
        previous = read_state(self._url) if self._continue_state else []
        firsts, first_cluster = first_readings(summaries)
        linked = link_clusters(firsts, previous, self._settings, self._known_stories, self._fingerprint)
        yield (*linked, first_cluster)


def first_readings(clusters: Iterable[ClusterSummary]) -> tuple[list[ClusterSummary], dict[str, str]]:
    """One article id, one reading: an id that clusters of several (topic, window) groups
    hold (a URL read again days later, or under a tracking-parameter variant, with a new
    text) belongs to the first of them in ``link_clusters`` order (event time, then key).
    Returns the clusters without their later readings (a cluster left with none is not
    linked at all: it must not pull a story along by an id it does not keep) and, for each
    such id, the key of the cluster that keeps it."""
    holder: dict[str, str] = {}
    first_cluster: dict[str, str] = {}
    firsts = []
    for cluster in sorted(clusters, key=lambda c: (c.window_start, c.first_published, c.key)):
        kept = []
        for article_id in cluster.article_ids:
            owner = holder.setdefault(article_id, cluster.key)
            if owner == cluster.key:
                kept.append(article_id)
            else:
                first_cluster[article_id] = owner
        if len(kept) == len(cluster.article_ids):
            firsts.append(cluster)
        elif kept:
            firsts.append(dataclasses.replace(cluster, article_ids=tuple(kept)))
    return firsts, first_cluster


def with_detected_language(article: Article, profile: TextProfile) -> Article:
    """An article that stated no language, with the one its text leaves no doubt about."""
    if profile.detected and not article.language:
        return records.replace(article, language=profile.detected)
    return article


def _keyed_with_profile(article: Article, languages: tuple[str, ...], window_s: float):
    """((topic, window start), (article, its text profile))."""
    profile = compute_text_profile(article, languages)
    article = with_detected_language(article, profile)
    return (article.topic, window_start(article.event_time.timestamp(), window_s)), (article, profile)


def _routing(linked) -> tuple[dict[str, str], dict[str, frozenset[str]], dict[str, str], dict[str, str]]:
    """What SetStoryIds needs of the linking result: cluster key -> story id, story id ->
    its article ids, near copies found across clusters, the cluster that keeps an id read
    in several (``first_readings``). A side input that small (no story
    vectors, no state) is cheap for the runner to hand to every bundle."""
    assignment, touched, _, near, first_cluster = linked
    return assignment, {s.story_id: frozenset(s.article_ids) for s in touched}, near, first_cluster


def with_near_copy(article: Article, near: Mapping[str, str]) -> Article:
    """``article`` pointing to the representative ``link_clusters`` found across clusters,
    when it or the article it was a copy of turned out a near copy there."""
    representative = near.get(article.article_id) or near.get(article.duplicate_of or "")
    return article if representative is None else records.replace(article, duplicate_of=representative)


def _emit_articles(cluster: tuple[str, tuple[Article, ...], tuple[Article, ...]], routing):
    """(cluster key, its articles, repeated reads it dropped) -> the articles with their story
    id (tagged ``FAILED``: the reads of an article id kept elsewhere)."""
    assignment, members_of, near, first_cluster = routing
    key, articles, dropped = cluster
    story_id = assignment.get(key)  # None: every article of the cluster was read before
    members = members_of.get(story_id, frozenset())
    for article in articles:
        if article.article_id in members and first_cluster.get(article.article_id, key) == key:
            yield records.replace(with_near_copy(article, near), story_id=story_id)
        else:  # the same article id already came in through another window
            yield beam.pvalue.TaggedOutput(records.FAILED, _duplicate_url(article))
    for article in dropped:
        yield beam.pvalue.TaggedOutput(records.FAILED, _duplicate_url(article))


def reading_key(article: Article) -> tuple:
    """Order of the readings of one article id (one URL read twice): the first is kept, as
    ``cluster_window`` keeps the first of a window. ``representative_key`` orders by fetch
    time already; the text and URL break what ties remain."""
    return (*representative_key(article), article.content_hash, article.url)


def kept_reading(article_id: str, keys: Iterable[tuple]):
    """``reading_key``s of one article id -> the ``copy_mark`` of the reading kept (the first),
    and, tagged ``FIRST_READINGS``, (id, key of that reading) when the id was read in more than
    one way (nothing for the usual single reading): ClusterWindow drops the other readings."""
    keys = set(keys)
    first = min(keys)
    if len(keys) > 1:
        yield beam.pvalue.TaggedOutput(FIRST_READINGS, (article_id, first))
    yield copy_mark_of_reading(article_id, first)


def is_later_reading(article: Article, first: Mapping[str, tuple]) -> bool:
    """Whether ``article`` is a reading of its id that ``kept_reading`` did not keep."""
    kept = first.get(article.article_id)
    return kept is not None and reading_key(article) != kept


def _duplicate_url(article: Article) -> records.Failure:
    beam.metrics.Metrics.counter(records.METRICS_NAMESPACE, "filter_duplicate_url").inc()
    return records.Failure(
        url=article.url,
        stage=records.FILTER_STAGE,
        reason="duplicate_url",
        detail=f"article {article.article_id} was already read once in this run",
        at=article.fetched_at,
    )


class GroupStories(beam.PTransform):
    """PCollection[Article] (fingerprinted, topic assigned) -> ``{'articles':
    PCollection[Article] with story_id and duplicate_of, 'stories': PCollection[Story],
    ('staged_state': PCollection of (pending, final) state files, with ``commit_token``),
    'failed': PCollection[Failure]}`` (repeated reads of one article id, stage ``filter``,
    reason ``duplicate_url``). Everything stays in the global window.

    Articles are grouped by topic and event-time window (``window_hours``, epoch-aligned:
    the key is (topic, window start));
    each group is de-duplicated and clustered, then all clusters of the run are linked to
    the stories of earlier windows and of the state under ``state_path`` (read when the
    linking step runs, written back after it), so story ids survive across windows and
    runs. Nothing depends on arrival order or the number of workers. Exact copies (one
    ``content_hash``) are marked across windows (``marked_copy``, from small marks grouped by
    text), pointing to the article an earlier run wrote when ``known_hashes`` (content_hash ->
    article_id) has it; such a copy joins that article's story (``known_stories``: article id
    -> story id, see ``link_clusters``). With ``continue_state`` false the state is not read
    (a run that replaces the output: the articles its stories hold are removed) and the run's
    own stories replace it."""

    def __init__(
        self,
        settings: StorySettings | None = None,
        output_root: str | None = None,
        fingerprint: FingerprintSettings | None = None,
        commit_token: str | None = None,
        known_hashes: Mapping[str, str] | None = None,
        known_stories: Mapping[str, str] | None = None,
        continue_state: bool = True,
    ) -> None:
        super().__init__()
        self._continue_state = continue_state
        self.settings = settings or StorySettings()
        # kept as given: a HexMap of many known articles pickles as two arrays, a dict would not
        self._known_hashes = known_hashes if known_hashes is not None else {}
        self._known_stories = known_stories if known_stories is not None else {}
        self.fingerprint = fingerprint or FingerprintSettings()
        self.state_url = state_url(self.settings, output_root)
        self._commit_token = commit_token

    def expand(self, articles):
        window_s = self.settings.window_hours * 3600
        # One reading per article id, decided before copies are looked for: a text read only
        # under a reading that is dropped must not make its copies point at an article whose
        # row holds another text. Decided from small marks: the kept readings' copy marks go
        # on to find the exact copies, and ClusterWindow drops the other readings. Exact
        # copies are found across all windows of the run by grouping such marks too, so the
        # articles travel through one shuffle only, the one by topic (a side input to drop
        # the readings before it would make the runner hold every article once more).
        readings = (
            articles
            | "MarkReadings" >> beam.Map(lambda a: (a.article_id, reading_key(a)))
            | "GroupReadings" >> beam.GroupByKey()
            | "FirstReadings" >> beam.FlatMapTuple(kept_reading).with_outputs(FIRST_READINGS, main="marks")
        )
        representatives = (
            readings.marks
            | "GroupByContent" >> beam.GroupByKey()
            | "Representatives" >> beam.FlatMapTuple(copy_representative)
        )
        clusters = (
            articles
            # The event-time window is part of the key, in the global window: a bounded run
            # fires each window once anyway, and a key per (topic, window) spreads the
            # clustering over workers (a windowed GroupByKey on the topic alone gave a worker
            # whole topics, and made the runner sort every value into windows itself).
            # The text profile (tokens, stems, names: most of the clustering's work per
            # article) is made here, before grouping, where all workers share the work; the
            # biggest (topic, window) group would otherwise make it on one worker.
            | "KeyByTopicWindow"
            >> beam.Map(
                _keyed_with_profile,
                self.settings.languages,
                window_s,
            )
            | "GroupByTopic" >> beam.GroupByKey()
            | "ClusterWindow"
            >> beam.ParDo(
                _ClusterWindowFn(self.settings, self.fingerprint, self._known_hashes),
                beam.pvalue.AsDict(representatives),
                beam.pvalue.AsDict(readings[FIRST_READINGS]),
            ).with_outputs(records.FAILED, SUMMARIES, main="clusters")
        )
        later_readings, summaries, clusters = clusters[records.FAILED], clusters[SUMMARIES], clusters.clusters
        # All summaries reach one LinkStories call, made once (also for a run without clusters:
        # the state is still written), as a side input. Each step of the local runner's plan
        # is a round trip to its workers: a ToList made this two steps (the combine, then the
        # side input), and grouping the summaries keyed alike, with one empty element for a run
        # without clusters, three (the empty element, the Flatten, the linking).
        linked = (
            summaries.pipeline
            | "LinkOnce" >> beam.Create([None])
            | "LinkStories"
            >> beam.ParDo(
                _LinkFn(self.settings, self.state_url, self._known_stories, self.fingerprint, self._continue_state),
                beam.pvalue.AsList(summaries),
            )
        )
        out = clusters | "SetStoryIds" >> beam.FlatMap(
            _emit_articles, routing=beam.pvalue.AsSingleton(linked | "Routing" >> beam.Map(_routing))
        ).with_outputs(records.FAILED, main="articles")
        stories = linked | "StoryRows" >> beam.FlatMap(lambda r: [s.to_story() for s in r[1]])
        result = {
            "articles": out.articles,
            "stories": stories,
            "failed": (later_readings, out[records.FAILED]) | "RepeatedReadings" >> beam.Flatten(),
        }
        if self._commit_token is None:
            _ = linked | "WriteStoryState" >> beam.Map(self._save)
        elif self.state_url:
            result["staged_state"] = linked | "StageStoryState" >> beam.Map(self._stage)
        return result

    def _save(self, linked) -> None:
        state = linked[2]
        token = hashlib.sha256("".join(s.to_json() for s in state).encode()).hexdigest()[:12]
        write_state(self.state_url, state, token)

    def _stage(self, linked) -> tuple[str, str]:
        state = linked[2]
        return stage_state(self.state_url, state, self._commit_token)
