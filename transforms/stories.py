"""Topic and story stages: assign a coarse topic, then cluster articles about the same event.

``AssignTopics`` puts every article in one coarse bucket from ``configs/topics.yaml``
(keywords, entity names, feed categories; fallback ``general``) and records which terms
matched. ``GroupStories`` windows articles by event time, groups them by topic, marks
duplicates (``fingerprint.find_duplicates``) and clusters the rest into stories
(``cluster_stories``); clusters are then linked to stories of earlier windows and earlier
runs (``link_clusters``) so that a story keeps its id while coverage grows.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import yaml

from transforms import records
from transforms.fsutil import write_atomic
from transforms.fingerprint import (
    FingerprintSettings,
    find_duplicates,
    representative_key,
    words,
)
from transforms.records import Article, Story

# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StorySettings:
    """Topics, windows and story clustering (section ``stories`` of the config).

    The similarity of two articles is a weighted mean of three cosines (TF-IDF of title +
    text, idf-weighted named entities, idf-weighted title words) times a time factor; stories
    are the clusters of an average-linkage agglomeration cut at ``cluster_threshold``.
    The weights and thresholds were chosen on general grounds (event identity is carried by
    names and the headline more than by topical vocabulary) and then checked, not searched,
    on news_search_clustering and the seed story: ``benchmarks/stories.py`` prints the
    scores and a threshold sweep.
    """

    #: YAML file with the topic buckets; relative paths are resolved by the config loader
    topics_file: str = "configs/topics.yaml"
    #: event-time window length in hours; stories crossing a boundary are linked afterwards
    window_hours: int = 24
    #: average-linkage cut: an article joins a story when its mean similarity to the story's
    #: articles is at least this. news_search_clustering's sweep is flat from 0.15 to 0.25
    #: (BCubed F1); the five seed articles hold together up to 0.22 while unrelated texts of
    #: the same topic stay at or below 0.11, so 0.2 keeps a margin on both sides
    cluster_threshold: float = 0.2
    #: weight of the TF-IDF cosine of title + text (topical vocabulary)
    term_weight: float = 1.0
    #: weight of the cosine of capitalised names (who/where: the strongest event signal)
    entity_weight: float = 1.0
    #: weight of the headline cosine (headlines of one event reuse the same key words)
    title_weight: float = 1.0
    #: articles further apart than this (hours) get a similarity penalty, halved per step
    time_scale_hours: float = 48.0
    #: a new cluster continues an earlier story (earlier window or run) at this cosine of
    #: their term profiles: one seed article against the other four scores 0.50-0.71, a
    #: same-topic article about another event 0.28-0.32, so 0.45 sits between
    link_threshold: float = 0.45
    #: ... and only if the story was last seen at most this many hours before
    link_hours: float = 72.0
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
        for name in ("term_weight", "entity_weight", "title_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative")
        if self.term_weight + self.entity_weight + self.title_weight <= 0:
            raise ValueError(
                "term_weight: at least one similarity weight must be positive"
            )
        for name in ("time_scale_hours", "link_hours"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive")
        if self.state_retention_days < 1:
            raise ValueError("state_retention_days: must be at least 1")


# --- text features ------------------------------------------------------------------------

# Function words and news boilerplate that say nothing about which event a text covers.
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
    reuters ap afp read full story click here share comment comments subscribe newsletter
    updated published copyright rights reserved
    """
STOPWORDS = frozenset(_STOPWORD_TEXT.split())

_ENTITY = re.compile(r"\b[A-Z][\w’'&.-]*[\w]|\b[A-Z]\b")


def _stem(token: str) -> str:
    """A light suffix fold (plural and possessive) so 'talks' and 'talk' meet."""
    if token.endswith(("'s", "’s")):
        token = token[:-2]
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if (
        len(token) > 3
        and token.endswith("s")
        and not token.endswith(("ss", "us", "is"))
    ):
        return token[:-1]
    return token


def content_terms(text: str) -> list[str]:
    """Stemmed content words: casefolded, no stopwords, no bare numbers, 2+ characters."""
    return [
        _stem(t)
        for t in words(text)
        if len(t) > 1 and not t.isdigit() and t not in STOPWORDS
    ]


def entity_terms(text: str) -> list[str]:
    """Capitalised tokens (names, places, organisations, acronyms) as casefolded stems."""
    found = []
    for match in _ENTITY.finditer(unicodedata.normalize("NFKC", text)):
        for token in words(match.group()):
            if len(token) > 1 and not token.isdigit() and token not in STOPWORDS:
                found.append(_stem(token))
    return found


def _has_letters(text: str) -> bool:
    return any(c.isalpha() for c in text)


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
            if not isinstance(value, list) or not all(
                isinstance(v, str) for v in value
            ):
                raise ValueError(f"topics.{name}.{key}: must be a list of strings")
        topics.append(
            Topic(
                name=str(name),
                keywords=tuple(
                    _phrase(k) for k in spec.get("keywords", ()) if _phrase(k)
                ),
                entities=tuple(
                    _phrase(e) for e in spec.get("entities", ()) if _phrase(e)
                ),
                categories=tuple(
                    c.casefold().strip() for c in spec.get("categories", ())
                ),
            )
        )
    options = {
        k: data[k] for k in ("fallback", "min_score", "hint_weight", "title_weight")
    }
    return Topics(
        topics=tuple(topics), **{k: v for k, v in options.items() if v is not None}
    )


def _count_phrase(haystack: str, phrase: str) -> int:
    return len(re.findall(rf"(?<!\S){re.escape(phrase)}(?!\S)", haystack))


def assign_topic(article: Article, topics: Topics) -> tuple[str, tuple[str, ...]]:
    """The article's topic and the terms that decided it (``'category:x'`` for feed hints).

    Score per topic: each distinct keyword or entity found counts once (``title_weight``
    times when it is in the title), plus ``hint_weight`` when a feed category or the
    topic hint names the topic. Counting distinct terms rather than occurrences keeps the
    choice stable for near-identical texts. Ties go to the topic listed first; below
    ``min_score`` the article goes to ``fallback`` with no terms.
    """
    body = " ".join(_stem(t) for t in words(article.text))
    title = " ".join(_stem(t) for t in words(article.title or ""))
    hints = {c.casefold().strip() for c in article.categories}
    if article.topic_hint:
        hints.add(article.topic_hint.casefold().strip())
    best: tuple[float, int, str, tuple[str, ...]] | None = None
    for rank, topic in enumerate(topics.topics):
        score = 0.0
        matched: list[tuple[float, str]] = []
        for term in dict.fromkeys(topic.keywords + topic.entities):
            weight = topics.title_weight if _count_phrase(title, term) else 0.0
            if not weight and _count_phrase(body, term):
                weight = 1.0
            if weight:
                score += weight
                matched.append((weight, term))
        hit = sorted(hints & ({topic.name.casefold()} | set(topic.categories)))
        if hit:
            score += topics.hint_weight
            matched.append((topics.hint_weight, f"category:{hit[0]}"))
        if score and (best is None or (score, -rank) > (best[0], best[1])):
            terms = tuple(
                term for _, term in sorted(matched, key=lambda m: (-m[0], m[1]))
            )
            best = (score, -rank, topic.name, terms)
    if best is None or best[0] < topics.min_score:
        return topics.fallback, ()
    return best[2], best[3]


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


@dataclass(frozen=True)
class _Features:
    terms: Counter
    entities: frozenset[str]
    title: frozenset[str]


def _features(article: Article) -> _Features:
    title = article.title or ""
    # the headline counts twice: it names the event, the body also covers background
    terms = Counter(content_terms(title) * 2 + content_terms(article.text))
    entities = frozenset(entity_terms(title) + entity_terms(article.text))
    return _Features(
        terms=terms, entities=entities, title=frozenset(content_terms(title))
    )


def _idf(docs: Sequence[Iterable[str]]) -> dict[str, float]:
    # smoothed so that a batch of two articles still weighs shared terms above zero
    df = Counter(t for doc in docs for t in set(doc))
    n = len(docs)
    return {t: math.log(1.0 + (n + 1.0) / (d + 1.0)) for t, d in df.items()}


def _cosine_matrix(rows: list[dict[str, float]]) -> np.ndarray:
    vocab: dict[str, int] = {}
    for row in rows:
        for t in row:
            vocab.setdefault(t, len(vocab))
    matrix = np.zeros((len(rows), max(1, len(vocab))))
    for i, row in enumerate(rows):
        for t, w in row.items():
            matrix[i, vocab[t]] = w
    norms = np.linalg.norm(matrix, axis=1)
    matrix[norms > 0] /= norms[norms > 0, None]
    return matrix @ matrix.T


def similarity_matrix(
    articles: Sequence[Article], settings: StorySettings
) -> np.ndarray:
    """Pairwise story similarity in [0, 1] of the articles (in the given order)."""
    feats = [_features(a) for a in articles]
    term_idf = _idf([f.terms for f in feats])
    ent_idf = _idf([f.entities for f in feats])
    title_idf = _idf([f.title for f in feats])
    term_rows = [
        {t: (1 + math.log(c)) * term_idf[t] for t, c in f.terms.items()} for f in feats
    ]
    ent_rows = [{t: ent_idf[t] for t in f.entities} for f in feats]
    title_rows = [{t: title_idf[t] for t in f.title} for f in feats]
    parts = [
        (settings.term_weight, _cosine_matrix(term_rows), [bool(r) for r in term_rows]),
        (settings.entity_weight, _cosine_matrix(ent_rows), [bool(r) for r in ent_rows]),
        (
            settings.title_weight,
            _cosine_matrix(title_rows),
            [bool(r) for r in title_rows],
        ),
    ]
    n = len(articles)
    total = np.zeros((n, n))
    weight = np.zeros((n, n))
    for w, sim, present in parts:
        if w <= 0:
            continue
        mask = np.outer(present, present).astype(
            float
        )  # a missing title is no evidence
        total += w * sim * mask
        weight += w * mask
    sim = np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)
    times = np.array([a.event_time.timestamp() for a in articles]) / 3600.0
    gap = np.abs(times[:, None] - times[None, :])
    sim *= 0.5 ** (
        np.maximum(0.0, gap - settings.time_scale_hours) / settings.time_scale_hours
    )
    np.fill_diagonal(sim, 1.0)
    return np.clip(sim, 0.0, 1.0)


def _average_linkage(sim: np.ndarray, threshold: float) -> list[list[int]]:
    """Agglomerate clusters while the mean pairwise similarity of the best pair of
    clusters is at least ``threshold``. Ties go to the smallest indices (deterministic)."""
    n = len(sim)
    clusters: dict[int, list[int]] = {i: [i] for i in range(n)}
    link = sim.astype(float).copy()
    np.fill_diagonal(link, -np.inf)
    sizes = np.ones(n)
    alive = np.ones(n, dtype=bool)
    while True:
        masked = np.where(alive[:, None] & alive[None, :], link, -np.inf)
        flat = int(np.argmax(masked))
        i, j = divmod(flat, n)
        if masked[i, j] < threshold:
            break
        i, j = min(i, j), max(i, j)
        # mean similarity of the merged cluster to every other cluster (UPGMA update)
        merged = (link[i] * sizes[i] + link[j] * sizes[j]) / (sizes[i] + sizes[j])
        link[i, :] = merged
        link[:, i] = merged
        link[i, i] = -np.inf
        sizes[i] += sizes[j]
        alive[j] = False
        clusters[i].extend(clusters.pop(j))
    return sorted(sorted(c) for c in clusters.values())


def cluster_stories(
    articles: list[Article], settings: StorySettings
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
    groups = _average_linkage(
        similarity_matrix(items, settings), settings.cluster_threshold
    )
    return [[items[i].article_id for i in group] for group in groups]


def story_id_for(topic: str, representative_article_id: str) -> str:
    """Stable story id from the topic and the article that founded the story."""
    key = f"{topic}\x1f{representative_article_id}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


# --- linking clusters to stories across windows and runs ----------------------------------

#: terms kept in a story profile (the rest of the vector is noise for matching)
PROFILE_TERMS = 60


def _normalised(
    vector: dict[str, float], keep: int = PROFILE_TERMS
) -> dict[str, float]:
    top = sorted(vector.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]
    norm = math.sqrt(sum(w * w for _, w in top)) or 1.0
    return {t: w / norm for t, w in top}


def _dot(a: dict[str, float], b: dict[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(w * b.get(t, 0.0) for t, w in a.items())


def profile(articles: Sequence[Article]) -> dict[str, float]:
    """Term profile of a cluster: the normalised sum of its articles' normalised term and
    entity vectors (plain log-tf; idf would depend on the window the cluster came from)."""
    total: dict[str, float] = defaultdict(float)
    for article in articles:
        feats = _features(article)
        vector = {t: 1 + math.log(c) for t, c in feats.terms.items()}
        for t in feats.entities:
            vector[t] = (
                vector.get(t, 0.0) + 1.0
            )  # names count again: they pin the event
        for t, w in _normalised(vector, keep=10 * PROFILE_TERMS).items():
            total[t] += w
    return _normalised(total)


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
    profile: tuple[tuple[str, float], ...]


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

    def to_json(self) -> str:
        row = dict(vars(self))
        for key in ("first_published", "last_published", "window_start", "window_end"):
            row[key] = row[key].isoformat()
        return json.dumps(row, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> StoryState:
        row = json.loads(line)
        for key in ("first_published", "last_published", "window_start", "window_end"):
            row[key] = datetime.fromisoformat(row[key])
        return cls(**row)

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
) -> tuple[dict[str, str], list[StoryState], list[StoryState]]:
    """Give every cluster a story id, reusing the ids of earlier stories it continues.

    Clusters are visited in event-time order. A cluster continues a story (from the state
    of earlier runs or from an earlier cluster of this run) when it shares an article id
    with it (re-ingest), or else when the story was last seen at most ``link_hours`` before
    and their term profiles reach ``link_threshold``. A story takes at most one cluster per
    (topic, window): within a window the clustering has already decided. Clusters that
    continue nothing found a new story, ``story_id_for(topic, first article)``.

    Returns (cluster key -> story id, stories touched in this run, full new state).
    """
    stories: dict[str, StoryState] = {  # copies: the caller's state stays as it was
        s.story_id: records.replace(
            s, article_ids=list(s.article_ids), profile=dict(s.profile)
        )
        for s in previous
    }
    owner: dict[str, str] = {}
    for story in sorted(stories.values(), key=lambda s: s.story_id):
        for article_id in story.article_ids:
            owner.setdefault(article_id, story.story_id)
    taken: set[tuple[str, str, datetime]] = set()  # (story, topic, window) pairs used
    assignment: dict[str, str] = {}
    touched: set[str] = set()
    horizon = timedelta(hours=settings.link_hours)
    ordered = sorted(clusters, key=lambda c: (c.window_start, c.first_published, c.key))
    for cluster in ordered:
        vector = dict(cluster.profile)
        shared = Counter(owner[a] for a in cluster.article_ids if a in owner)
        candidates = [
            (count, 1.0, sid)
            for sid, count in shared.items()
            if (sid, cluster.topic, cluster.window_start) not in taken
        ]
        if not candidates:
            for story in stories.values():
                if (story.story_id, cluster.topic, cluster.window_start) in taken:
                    continue
                if story.last_published < cluster.first_published - horizon:
                    continue
                if story.first_published > cluster.last_published + horizon:
                    continue
                score = _dot(vector, story.profile)
                if score >= settings.link_threshold:
                    candidates.append((0, score, story.story_id))
        if candidates:
            story_id = min(candidates, key=lambda c: (-c[0], -c[1], c[2]))[2]
            story = stories[story_id]
            merged = defaultdict(float)
            for t, w in story.profile.items():
                merged[t] += w * len(story.article_ids)
            for t, w in vector.items():
                merged[t] += w * len(cluster.article_ids)
            story.profile = _normalised(merged)
            story.first_published = min(story.first_published, cluster.first_published)
            story.last_published = max(story.last_published, cluster.last_published)
            story.window_start = min(story.window_start, cluster.window_start)
            story.window_end = max(story.window_end, cluster.window_end)
            story.title = story.title or cluster.title
        else:
            story_id = story_id_for(cluster.topic, cluster.article_ids[0])
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
        for article_id in cluster.article_ids:
            previous_owner = owner.get(article_id)
            if previous_owner == story_id:
                continue
            if previous_owner is not None:  # the article moved: it is counted once
                stories[previous_owner].article_ids.remove(article_id)
                touched.add(previous_owner)
            owner[article_id] = story_id
            story.article_ids.append(article_id)
        taken.add((story_id, cluster.topic, cluster.window_start))
        assignment[cluster.key] = story_id
        touched.add(story_id)
    live = [s for s in stories.values() if s.article_ids]
    if live:
        newest = max(s.last_published for s in live)
        keep_after = newest - timedelta(days=settings.state_retention_days)
        state = [
            s for s in live if s.last_published >= keep_after or s.story_id in touched
        ]
    else:
        state = []
    state.sort(key=lambda s: s.story_id)
    return assignment, [s for s in state if s.story_id in touched], state


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


def write_state(url: str | None, stories: Sequence[StoryState], token: str) -> None:
    """Replace the state file: write a temporary file, then move it over the old one, so a
    reader sees the old or the new state, never half of one (``token`` is kept for callers)."""
    if not url:
        return
    data = "".join(story.to_json() + "\n" for story in stories).encode("utf-8")
    write_atomic(f"{url.rstrip('/')}/{STATE_FILE}", data)


# --- Beam ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WindowCluster:
    summary: ClusterSummary
    articles: tuple[Article, ...]  # duplicate_of set
    dropped: tuple[Article, ...] = ()  # repeated article ids (same canonical URL)


def _as_datetime(timestamp: Any) -> datetime:
    return datetime.fromtimestamp(float(timestamp), UTC)


def cluster_window(
    topic: str,
    articles: Iterable[Article],
    window_start: datetime,
    window_end: datetime,
    settings: StorySettings,
    fingerprint: FingerprintSettings,
) -> list[_WindowCluster]:
    """Duplicates and story clusters of one (topic, window): the pure core of GroupStories."""
    unique: dict[str, Article] = {}
    dropped: list[Article] = []
    order = lambda a: (*representative_key(a), a.fetched_at, a.content_hash, a.url)
    for article in sorted(articles, key=order):
        if article.article_id in unique:
            dropped.append(article)
        else:
            unique[article.article_id] = article
    duplicate_of = find_duplicates(list(unique.values()), fingerprint)
    originals = [a for a in unique.values() if a.article_id not in duplicate_of]
    followers: dict[str, list[Article]] = defaultdict(list)
    for article in unique.values():
        if article.article_id in duplicate_of:
            followers[duplicate_of[article.article_id]].append(article)
    by_id = {a.article_id: a for a in originals}
    out = []
    for group in cluster_stories(originals, settings):
        members = [by_id[i] for i in group]
        dups = [
            records.replace(d, duplicate_of=duplicate_of[d.article_id])
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
            profile=tuple(sorted(profile(members).items())),
        )
        mine = [d for d in dropped if d.article_id in set(summary.article_ids)]
        out.append(_WindowCluster(summary, tuple(everyone), tuple(mine)))
    return out


class _ClusterWindowFn(beam.DoFn):
    """(topic, [Article]) in one window -> _WindowCluster per story candidate."""

    def __init__(
        self, settings: StorySettings, fingerprint: FingerprintSettings
    ) -> None:
        self._settings = settings
        self._fingerprint = fingerprint

    def process(self, element, window=beam.DoFn.WindowParam):
        topic, articles = element
        yield from cluster_window(
            topic,
            articles,
            _as_datetime(window.start),
            _as_datetime(window.end),
            self._settings,
            self._fingerprint,
        )


class _LinkFn(beam.DoFn):
    """[ClusterSummary] (all of the run) -> one (assignment, touched stories, state)."""

    def __init__(self, settings: StorySettings, url: str | None) -> None:
        self._settings = settings
        self._url = url

    def process(self, summaries):
        previous = read_state(self._url)
        yield link_clusters(summaries, previous, self._settings)


def _emit_articles(cluster: _WindowCluster, linked):
    assignment, touched, _ = linked
    story_id = assignment[cluster.summary.key]
    members = {a for s in touched if s.story_id == story_id for a in s.article_ids}
    for article in cluster.articles:
        if article.article_id in members:
            yield records.replace(article, story_id=story_id)
        else:  # the same article id already came in through another window
            yield beam.pvalue.TaggedOutput(records.FAILED, _duplicate_url(article))
    for article in cluster.dropped:
        yield beam.pvalue.TaggedOutput(records.FAILED, _duplicate_url(article))


def _duplicate_url(article: Article) -> records.Failure:
    beam.metrics.Metrics.counter(
        records.METRICS_NAMESPACE, "filter_duplicate_url"
    ).inc()
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
    'failed': PCollection[Failure]}`` (repeated reads of one article id, stage ``filter``,
    reason ``duplicate_url``). Outputs are in the global window.

    Articles are windowed by event time into ``window_hours`` windows and grouped by topic;
    each group is de-duplicated and clustered, then all clusters of the run are linked to
    the stories of earlier windows and of the state under ``state_path`` (read when the
    linking step runs, written back after it), so story ids survive across windows and
    runs. Nothing depends on arrival order or the number of workers.
    """

    def __init__(
        self,
        settings: StorySettings | None = None,
        output_root: str | None = None,
        fingerprint: FingerprintSettings | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or StorySettings()
        self.fingerprint = fingerprint or FingerprintSettings()
        self.state_url = state_url(self.settings, output_root)

    def expand(self, articles):
        window_s = self.settings.window_hours * 3600
        clusters = (
            articles
            | "StampEventTime"
            >> beam.Map(
                lambda a: beam.window.TimestampedValue(a, a.event_time.timestamp())
            )
            | "WindowByEventTime" >> beam.WindowInto(beam.window.FixedWindows(window_s))
            | "KeyByTopic" >> beam.Map(lambda a: (a.topic, a))
            | "GroupByTopic" >> beam.GroupByKey()
            | "ClusterWindow"
            >> beam.ParDo(_ClusterWindowFn(self.settings, self.fingerprint))
            | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
        )
        linked = (
            clusters
            | "Summaries" >> beam.Map(lambda c: c.summary)
            | "AllClusters" >> beam.combiners.ToList()
            | "LinkStories" >> beam.ParDo(_LinkFn(self.settings, self.state_url))
        )
        out = clusters | "SetStoryIds" >> beam.FlatMap(
            _emit_articles, linked=beam.pvalue.AsSingleton(linked)
        ).with_outputs(records.FAILED, main="articles")
        stories = linked | "StoryRows" >> beam.FlatMap(
            lambda r: [s.to_story() for s in r[1]]
        )
        _ = linked | "WriteStoryState" >> beam.Map(self._save)
        return {
            "articles": out.articles,
            "stories": stories,
            "failed": out[records.FAILED],
        }

    def _save(self, linked) -> None:
        _, _, state = linked
        token = hashlib.sha256(
            "".join(s.to_json() for s in state).encode()
        ).hexdigest()[:12]
        write_state(self.state_url, state, token)
