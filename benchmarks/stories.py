"""Story clustering quality and fingerprint speed, printed as tables.

    python -m benchmarks.stories [--shared ../shared] [--sweep] [--per-group] [--speed]

Datasets (third-party, read from ``../shared/data``, never copied into the repo):

* ``news_search_clustering``: 20 query groups of 50 dated news items (title + meta title +
  description), each with event-level human clusterings ``gold1`` and ``gold2``. We cluster
  each group and report ARI and BCubed P/R/F1 per annotator, averaged over the groups,
  beside the annotators' agreement with each other (gold2 scored against gold1), two
  ceilings of our similarity (the best threshold chosen per group on its own gold; the share
  of gold same-story pairs it scores near zero or below the cut, split by the items' search
  rank), with ``--per-group`` each group's F1 beside the annotators' agreement, and a
  pairwise same-story F1 where every pair is clustered on its own (two-article input, as a
  stream sees it), for pairs on which both annotators agree. Also all 20 groups clustered in
  one run, each scored on its items' clusters: query words are then rare inside a window, as
  in a mixed stream, where the per-group protocol makes them common. And the batch check:
  all 1,000 items in one run and in 4 runs by event time, each linking to the state of the
  ones before, with either ``stories.link_weights_from``: how many articles keep their story.
* ``wikiref220``: 220 full-text articles, 16 topic labels (5 major + 11 noise topics). Labels
  are topical, coarser than stories, so this mainly checks that stories do not cross topics.
* ``l3s_gn1``: 621 full-text Google News articles (Jan 2008) with our own story labels
  (``benchmarks/data/l3s_gn1_story_labels.json``: ids only; 57 sure + 13 unsure same-story
  groups, 66 same-topic other-event pairs). Full-text same-story pairs, each pair compared on
  its own, against those hard negatives and 1,000 random pairs; the TF-IDF peer gets idf
  from all 621 articles and its best threshold (an oracle). Then the same pairs when all 621
  articles go through in one run, as a user would ingest them (topics, one window, linking
  across topics), the peer clustering them all at its best threshold.

Every row compares our ``cluster_stories`` with a plain TF-IDF-cosine baseline (same
average linkage, no entities, no title or time signal) from the same run.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import gzip
import json
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import combinations
from pathlib import Path

import numpy as np

from transforms.fingerprint import (
    FingerprintSettings,
    find_duplicates,
    fingerprint_article,
    shingles,
    signature,
)
from transforms.records import Article, replace
from transforms.stories import (
    StorySettings,
    _average_linkage,
    _cosine_matrix,
    assign_topic,
    cluster_stories,
    cluster_windows,
    content_terms,
    link_clusters,
    load_topics,
    read_state,
    similarity_matrix,
    text_profile,
    write_state,
)

TOPICS_FILE = Path(__file__).resolve().parents[1] / "configs" / "topics.yaml"

DEFAULT_SHARED = Path(__file__).resolve().parents[2] / "shared"
L3S_LABELS = Path(__file__).resolve().parent / "data" / "l3s_gn1_story_labels.json"
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

# --- metrics ------------------------------------------------------------------------------


def ari(truth: Sequence[int], pred: Sequence[int]) -> float:
    """Adjusted Rand index (Hubert & Arabie) of two labelings of the same items."""
    n = len(truth)
    pairs = Counter(zip(truth, pred, strict=True))

    def comb2(x: float) -> float:
        return x * (x - 1) / 2

    index = sum(comb2(c) for c in pairs.values())
    a = sum(comb2(c) for c in Counter(truth).values())
    b = sum(comb2(c) for c in Counter(pred).values())
    expected = a * b / comb2(n) if n > 1 else 0.0
    maximum = (a + b) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def bcubed(truth: Sequence[int], pred: Sequence[int]) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 (Bagga & Baldwin; Amigo et al. 2009)."""
    n = len(truth)
    both = Counter(zip(truth, pred, strict=True))
    t_size, p_size = Counter(truth), Counter(pred)
    precision = sum(both[(t, p)] / p_size[p] for t, p in zip(truth, pred, strict=True)) / n
    recall = sum(both[(t, p)] / t_size[t] for t, p in zip(truth, pred, strict=True)) / n
    return precision, recall, 2 * precision * recall / (precision + recall)


def labels_of(clusters: Sequence[Sequence[str]], ids: Sequence[str]) -> list[int]:
    where = {a: k for k, cluster in enumerate(clusters) for a in cluster}
    return [where[i] for i in ids]


# --- data ---------------------------------------------------------------------------------


def _article(key: str, title: str, text: str, published: datetime | None) -> Article:
    return Article(
        url=f"https://bench.invalid/{key}",
        fetched_at=EPOCH,
        text=text,
        title=title,
        published_at=published,
        article_id=key,
    )


def _parse_date(text: str) -> datetime | None:
    for parse in (datetime.fromisoformat, parsedate_to_datetime):
        try:
            value = parse(text.strip())
        except (ValueError, TypeError):
            continue
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:  # "Aug 22, 2017 ..." and the like
        return datetime.strptime(text.strip()[:12], "%b %d, %Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def load_news_search(
    root: Path,
) -> list[tuple[str, list[Article], dict[str, list[int]]]]:
    """[(query, articles, {annotator: labels})]; unlisted items are singletons."""
    groups = []
    for path in sorted((root / "dataset").glob("m1-*.txt")):
        items = json.loads(path.read_text(encoding="utf-8-sig"))
        articles = []
        for k, item in enumerate(items):
            meta = item.get("meta") or {}
            title = meta.get("title") or item.get("title") or ""
            # the search-result title often repeats the headline with a site suffix
            extra = item.get("title") or ""
            text = " ".join(x for x in (extra, meta.get("description") or "") if x)
            day = _parse_date(item.get("date") or "")
            articles.append(_article(f"{path.stem}-{k:03d}", title, text, day))
        golds = {}
        for annotator in ("gold1", "gold2"):
            clusters = json.loads((root / annotator / path.name).read_text(encoding="utf-8-sig"))
            labels = [-1] * len(items)
            for c, members in enumerate(clusters):
                for position in members:
                    if labels[position - 1] == -1:  # first assignment wins on duplicates
                        labels[position - 1] = c
            fresh = len(clusters)
            for i, label in enumerate(labels):
                if label == -1:
                    labels[i] = fresh
                    fresh += 1
            golds[annotator] = labels
        groups.append((path.stem[3:], articles, golds))
    return groups


def load_wikiref(root: Path) -> tuple[list[Article], list[str]]:
    articles, topics = [], []
    with open(root / "labels.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            raw = (root / "WikiRef220" / row["file"]).read_text(encoding="utf-8", errors="replace")
            title, _, body = raw.strip().partition("\n")
            articles.append(_article(row["file"], title.strip(), body.strip(), None))
            topics.append(row["topic"])
    return articles, topics


# --- baseline -----------------------------------------------------------------------------


def tfidf_rows(articles: Sequence[Article]) -> list[dict[str, float]]:
    """Plain TF-IDF vectors (sublinear tf, smoothed idf over ``articles``), not normalised."""
    docs = [Counter(content_terms(f"{a.title or ''} {a.text}")) for a in articles]
    df = Counter(t for d in docs for t in d)
    n = len(docs)
    return [{t: (1 + math.log(c)) * (math.log((1 + n) / (1 + df[t])) + 1) for t, c in d.items()} for d in docs]


def tfidf_baseline(articles: Sequence[Article], threshold: float) -> list[list[str]]:
    """Plain TF-IDF cosine (sublinear tf, smoothed idf) + the same average linkage."""
    groups = _average_linkage(_cosine_matrix(tfidf_rows(articles)), threshold)
    return [[articles[i].article_id for i in g] for g in groups]


BASELINE_THRESHOLD = 0.3

Clusterer = Callable[[list[Article]], list[list[str]]]


def ours(settings: StorySettings) -> Clusterer:
    return lambda articles: cluster_stories(articles, settings)


def baseline(threshold: float = BASELINE_THRESHOLD) -> Clusterer:
    return lambda articles: tfidf_baseline(articles, threshold)


def as_pipeline(settings: StorySettings, topics_file: Path = TOPICS_FILE) -> Clusterer:
    """What GroupStories decides, without Beam: topic per article, event-time windows of
    ``window_hours``, clustering per (topic, window), then linking across windows and topics."""
    topics = load_topics(topics_file)
    fingerprint = FingerprintSettings()

    def clusterer(articles: list[Article]) -> list[list[str]]:
        topical = [replace(a, topic=assign_topic(a, topics)[0]) for a in articles]
        stories: dict[str, list[str]] = {}
        for article_id, story_id in linked_stories([topical], settings, fingerprint).items():
            stories.setdefault(story_id, []).append(article_id)
        return list(stories.values())

    return clusterer


def linked_stories(
    runs: Sequence[Sequence[Article]], settings: StorySettings, fingerprint: FingerprintSettings
) -> dict[str, str]:
    """Article id -> story id when the articles (topics assigned) go through as these runs in
    turn, each clustered by window and linked to the story state the runs before left."""
    state: list = []
    story: dict[str, str] = {}
    for run in runs:
        found = cluster_windows(run, settings, fingerprint)
        assignment, _, state, _ = link_clusters([c.summary for c in found], state, settings)
        for c in found:
            for article_id in c.summary.article_ids:
                story[article_id] = assignment[c.summary.key]
    return story


def batch_agreement(
    articles: Sequence[Article], settings: StorySettings, batches: int = 4, topics_file: Path = TOPICS_FILE
):
    """The articles as one run and as ``batches`` runs in event-time order, each linking
    against the story state the ones before left (as a backfill in batches or daily runs
    would): (share of articles whose story id is the same, pairs joined in one run, pairs
    joined in batches, pairs joined in both). No labels: a story should not depend on how
    the input was cut."""
    topics = load_topics(topics_file)
    fingerprint = FingerprintSettings()
    topical = sorted(
        (replace(a, topic=assign_topic(a, topics)[0]) for a in articles), key=lambda a: (a.event_time, a.article_id)
    )

    one = linked_stories([topical], settings, fingerprint)
    cut = [len(topical) * k // batches for k in range(batches + 1)]
    parts = linked_stories([topical[cut[k] : cut[k + 1]] for k in range(batches)], settings, fingerprint)
    ids = sorted(one)
    same = sum(one[i] == parts.get(i) for i in ids) / len(ids)
    joined_one = joined_parts = joined_both = 0
    for a, b in combinations(ids, 2):
        x, y = one[a] == one[b], parts.get(a) == parts.get(b)
        joined_one += x
        joined_parts += y
        joined_both += x and y
    return same, joined_one, joined_parts, joined_both


def window_agreement(articles: Sequence[Article], settings: StorySettings, pairs: int = 1500, seed: int = 0):
    """Pairs of articles decided once inside one window (one hour apart) and once across two
    windows (30 hours apart, so linking decides): how often the decisions agree, and how
    many pairs each joins. Labels are not needed: the two ways must simply agree."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(articles) * len(articles), size=pairs * 3, replace=False)
    index = [(int(k) // len(articles), int(k) % len(articles)) for k in chosen]
    index = [(i, j) for i, j in index if i < j][:pairs]
    cluster = as_pipeline(settings)
    one = two = agree = 0
    for i, j in index:
        joined = []
        for gap in (1, 30):
            a = replace(articles[i], published_at=EPOCH)
            b = replace(articles[j], published_at=EPOCH + timedelta(hours=gap))
            joined.append(len(cluster([a, b])) == 1)
        one += joined[0]
        two += joined[1]
        agree += joined[0] == joined[1]
    return len(index), agree / len(index), one, two


# --- evaluations --------------------------------------------------------------------------


def eval_news(groups, clusterer: Clusterer) -> dict[str, float]:
    scores: dict[str, list[float]] = {}
    for _, articles, golds in groups:
        ids = [a.article_id for a in articles]
        pred = labels_of(clusterer(articles), ids)
        for annotator, truth in golds.items():
            p, r, f = bcubed(truth, pred)
            for name, value in (
                ("ari", ari(truth, pred)),
                ("p", p),
                ("r", r),
                ("f1", f),
            ):
                scores.setdefault(f"{annotator}_{name}", []).append(value)
    return {k: float(np.mean(v)) for k, v in scores.items()}


def eval_news_joint(groups, clusterer: Clusterer) -> dict[str, float]:
    """``eval_news`` when all groups' items are clustered in one run (as a media monitor
    ingesting 20 searches would): each group is scored on the clusters restricted to its
    items. Query words are no longer common inside a window, so items of one query but
    different events meet more often."""
    clusters = clusterer([a for _, articles, _ in groups for a in articles])

    def restricted(articles: list[Article]) -> list[list[str]]:
        mine = {a.article_id for a in articles}
        return [kept for kept in ([i for i in c if i in mine] for c in clusters) if kept]

    return eval_news(groups, restricted)


def _gold_pairs(groups, settings: StorySettings) -> Iterator[tuple[str, int, int, bool, float]]:
    """(annotator, i, j, same story in that gold, our similarity) for every pair i < j of
    items inside each group."""
    for _, articles, golds in groups:
        sim = similarity_matrix(articles, settings)
        for annotator, labels in golds.items():
            for i, j in combinations(range(len(articles)), 2):
                yield annotator, i, j, labels[i] == labels[j], sim[i, j]


def gold_pair_similarity(
    groups, settings: StorySettings, low: float = 0.05
) -> dict[str, tuple[int, float, float, int, float]]:
    """Per annotator, what ``sparse_similarity`` sees of the gold's pairs inside each group:
    (same-story pairs, share below ``low``, share below the cut, other pairs, share at or
    above the cut). A same-story pair the similarity puts near zero can only join through
    others (average linkage), which bounds what any threshold can reach."""
    cut = settings.cluster_threshold
    annotators = sorted({a for _, _, golds in groups for a in golds})
    same: dict[str, list[float]] = {a: [] for a in annotators}
    other: dict[str, list[float]] = {a: [] for a in annotators}
    for annotator, _, _, is_same, value in _gold_pairs(groups, settings):
        (same if is_same else other)[annotator].append(value)

    def share(mask: np.ndarray) -> float:
        return float(mask.mean()) if mask.size else 0.0

    out = {}
    for annotator in annotators:
        s, o = np.array(same[annotator]), np.array(other[annotator])
        out[annotator] = (len(s), share(s < low), share(s < cut), len(o), share(o >= cut))
    return out


def gold_pairs_by_rank(groups, settings: StorySettings, top: int = 20, low: float = 0.05) -> dict[str, tuple]:
    """Per annotator, the gold's same-story pairs split by the items' search rank (their
    position in the group's file): (pairs of two items among the first ``top``, share of them
    our similarity puts below ``low``; pairs with an item ranked after ``top``, share below
    ``low``). Lower-ranked results are looser: a clusterer of events cannot follow the gold
    there, whatever its threshold."""
    counts: dict[str, list[int]] = {a: [0, 0, 0, 0] for _, _, golds in groups for a in golds}
    for annotator, _, j, is_same, value in _gold_pairs(groups, settings):
        if is_same:
            k = 0 if j < top else 2  # i < j: both in the top when j is
            counts[annotator][k] += 1
            counts[annotator][k + 1] += bool(value < low)
    return {a: (c[0], c[1] / c[0] if c[0] else 0.0, c[2], c[3] / c[2] if c[2] else 0.0) for a, c in counts.items()}


def per_group(groups, clusterer: Clusterer) -> list[tuple[str, float, float, float]]:
    """(query, our B3-F1 against gold1, against gold2, gold2 against gold1) per group: where the
    annotators agree and we do not, and where they disagree with each other."""
    rows = []
    for name, articles, golds in groups:
        pred = labels_of(clusterer(articles), [a.article_id for a in articles])
        rows.append(
            (
                name,
                bcubed(golds["gold1"], pred)[2],
                bcubed(golds["gold2"], pred)[2],
                bcubed(golds["gold1"], golds["gold2"])[2],
            )
        )
    return rows


def oracle_thresholds(groups, settings: StorySettings, thresholds: Sequence[float]) -> dict[str, float]:
    """BCubed F1 per annotator with the best ``cluster_threshold`` chosen for each group on
    its own gold: a ceiling for the similarity as it is (no threshold rule can beat it)."""
    best: dict[str, list[float]] = {}
    for _, articles, golds in groups:
        ids = [a.article_id for a in articles]
        preds = [
            labels_of(cluster_stories(articles, dataclasses.replace(settings, cluster_threshold=t)), ids)
            for t in thresholds
        ]
        for annotator, truth in golds.items():
            best.setdefault(annotator, []).append(max(bcubed(truth, pred)[2] for pred in preds))
    return {annotator: float(np.mean(v)) for annotator, v in best.items()}


def eval_annotators(groups) -> dict[str, float]:
    rows = []
    for _, _, golds in groups:
        p, r, f = bcubed(golds["gold1"], golds["gold2"])
        rows.append((ari(golds["gold1"], golds["gold2"]), p, r, f))
    a, p, r, f = (float(np.mean(col)) for col in zip(*rows, strict=True))
    return {"ari": a, "p": p, "r": r, "f1": f}


def agreed_pairs(groups, limit_per_group: int = 0):
    """Pairs both annotators label alike: (a, b, same_story)."""
    pairs = []
    for _, articles, golds in groups:
        g1, g2 = golds["gold1"], golds["gold2"]
        chosen = []
        for i, j in combinations(range(len(articles)), 2):
            same1, same2 = g1[i] == g1[j], g2[i] == g2[j]
            if same1 == same2:
                chosen.append((articles[i], articles[j], same1))
        if limit_per_group:
            positives = [c for c in chosen if c[2]]
            negatives = [c for c in chosen if not c[2]][: max(limit_per_group, len(positives))]
            chosen = positives + negatives
        pairs.extend(chosen)
    return pairs


def eval_pairs(pairs, clusterer: Clusterer) -> tuple[float, float, float]:
    said = [len(clusterer([a, b])) == 1 for a, b, _ in pairs]
    return _prf(said, [same for _, _, same in pairs])


def load_l3s_pairs(root: Path, labels: Path = L3S_LABELS, randoms: int = 1000, seed: int = 0):
    """l3s_gn1 full texts and our labels -> (articles by id, {"sure": [(a, b)], "unsure": ...,
    "hard": ..., "random": ...}); pairs hold ids. Random pairs never share a labelled group."""
    articles = {}
    with gzip.open(root / "ground_truth.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            articles[row["id"]] = _article(row["id"], row.get("headline") or "", row.get("fulltext_only") or "", None)
    data = json.loads(labels.read_text())
    pairs: dict[str, list[tuple[str, str]]] = {"sure": [], "unsure": [], "hard": [], "random": []}
    group_of = {}
    for k, group in enumerate(data["groups"]):
        pairs["sure" if group["confidence"] == "sure" else "unsure"].extend(combinations(group["ids"], 2))
        group_of.update({i: k for i in group["ids"]})
    pairs["hard"] = [tuple(h["ids"]) for h in data["hard_negatives"]]
    rng, ids = random.Random(seed), sorted(articles)
    while len(pairs["random"]) < randoms:
        a, b = rng.sample(ids, 2)
        if group_of.get(a, -1) != group_of.get(b, -2):
            pairs["random"].append((a, b))
    return articles, pairs


def _prf(said_same: Sequence[bool], same: Sequence[bool]) -> tuple[float, float, float]:
    tp = sum(s and t for s, t in zip(said_same, same, strict=True))
    fp = sum(s and not t for s, t in zip(said_same, same, strict=True))
    fn = sum(t and not s for s, t in zip(said_same, same, strict=True))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _pair_rows(pairs, said, peer: Callable[[float, tuple[str, str]], bool], thresholds, digits: int):
    """(method, positives, P, R, F1) for sure and sure + unsure positives against hard +
    random negatives, from each method's decisions (``said[name][pair]``), then the TF-IDF
    peer's best of ``thresholds`` (``peer(threshold, pair)``: joined at that threshold)."""
    negatives = pairs["hard"] + pairs["random"]
    rows = []
    for positives_name, positives in (("sure", pairs["sure"]), ("sure+unsure", pairs["sure"] + pairs["unsure"])):
        labelled = positives + negatives
        truth = [True] * len(positives) + [False] * len(negatives)
        for name, decided in said.items():
            rows.append((name, positives_name, *_prf([decided[pair] for pair in labelled], truth)))
        best = max(
            (_prf([peer(th, pair) for pair in labelled], truth) + (th,) for th in thresholds), key=lambda x: x[2]
        )
        rows.append((f"tfidf best ({best[3]:.{digits}f})", positives_name, *best[:3]))
    return rows


def eval_l3s(articles, pairs, methods: dict[str, Clusterer]) -> list[tuple[str, str, float, float, float]]:
    """Every pair clustered on its own; the TF-IDF peer's cosine at its best threshold."""
    every = pairs["sure"] + pairs["unsure"] + pairs["hard"] + pairs["random"]  # each decided once per method
    said = {name: {(a, b): len(m([articles[a], articles[b]])) == 1 for a, b in every} for name, m in methods.items()}
    cosine = _tfidf_cosines(articles, every)
    return _pair_rows(pairs, said, lambda th, pair: cosine[pair] >= th, np.arange(0.05, 0.6, 0.005), 3)


def eval_l3s_joint(articles, pairs, methods: dict[str, Clusterer]) -> list[tuple[str, str, float, float, float]]:
    """All the set's articles clustered in one run (as a user would ingest them): a pair is
    "same" when both land in one cluster, so other articles can bridge or split it. The
    TF-IDF peer clusters them all at its best threshold for this mode."""
    every = list(articles.values())
    labelled = pairs["sure"] + pairs["unsure"] + pairs["hard"] + pairs["random"]

    def decisions(clusters: list[list[str]]) -> dict[tuple[str, str], bool]:
        of = {i: k for k, c in enumerate(clusters) for i in c}
        return {(a, b): of[a] == of[b] for a, b in labelled}

    said = {name: decisions(m(every)) for name, m in methods.items()}
    swept = {th: decisions(tfidf_baseline(every, th)) for th in np.arange(0.1, 0.5, 0.01)}
    return _pair_rows(pairs, said, lambda th, pair: swept[th][pair], swept, 2)


def _tfidf_cosines(articles, pairs) -> dict[tuple[str, str], float]:
    """The TF-IDF peer's cosine of each pair (idf over all the articles)."""
    unit = {}
    for k, v in zip(articles, tfidf_rows(list(articles.values())), strict=True):
        norm = math.sqrt(sum(x * x for x in v.values())) or 1.0
        unit[k] = {t: x / norm for t, x in v.items()}
    return {(a, b): sum(x * unit[b].get(t, 0.0) for t, x in unit[a].items()) for a, b in pairs}


def roc_auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """Share of (positive, negative) pairs that the scores put in the right order (ties half)."""
    pos, neg = np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)
    if not len(pos) or not len(neg):
        return float("nan")
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def l3s_ranking(articles, pairs, settings: StorySettings) -> list[tuple[str, float, float]]:
    """(positives, our AUC, TF-IDF AUC): how well each similarity ranks same-story pairs
    above same-topic other-event pairs (``hard``), free of any threshold. With ~100 labelled
    pairs a threshold's F1 moves by one or two pairs; the ranking moves less."""
    every = pairs["sure"] + pairs["unsure"] + pairs["hard"]
    ours_sim = {(a, b): float(similarity_matrix([articles[a], articles[b]], settings)[0, 1]) for a, b in every}
    cosine = _tfidf_cosines(articles, every)
    rows = []
    for name, positives in (("sure", pairs["sure"]), ("sure+unsure", pairs["sure"] + pairs["unsure"])):
        rows.append(
            (
                name,
                roc_auc([ours_sim[p] for p in positives], [ours_sim[p] for p in pairs["hard"]]),
                roc_auc([cosine[p] for p in positives], [cosine[p] for p in pairs["hard"]]),
            )
        )
    return rows


def eval_wikiref(articles, topics, clusterer: Clusterer) -> dict[str, float]:
    ids = [a.article_id for a in articles]
    pred = labels_of(clusterer(articles), ids)
    names = sorted(set(topics))
    counts = Counter(topics)
    out = {}
    for variant, labels in (
        ("16", [names.index(t) for t in topics]),
        ("5+noise", [names.index(t) if counts[t] > 5 else -1 for t in topics]),
    ):
        out[f"ari_{variant}"] = ari(labels, pred)
        out[f"f1_{variant}"] = bcubed(labels, pred)[2]
    out["clusters"] = len(set(pred))
    return out


def speed(texts: Sequence[str]) -> list[tuple[str, float]]:
    settings = FingerprintSettings()
    rows = []
    start = time.perf_counter()
    for text in texts:
        signature(text, settings)
    rows.append(("signature (numpy, ours)", (time.perf_counter() - start) / len(texts)))
    try:
        import datasketch
    except ImportError:
        return rows
    start = time.perf_counter()
    for text in texts:
        minhash = datasketch.MinHash(num_perm=settings.num_perm, seed=settings.seed)
        minhash.update_batch([s.encode() for s in shingles(text, settings.shingle_size)])
    rows.append(("datasketch update_batch", (time.perf_counter() - start) / len(texts)))
    return rows


def speed_pool(groups, wikiref: Sequence[Article], n: int) -> list[Article]:
    """``n`` articles for timing, mixed like one (topic, window) group: the news_search
    items (short) interleaved with the wikiref texts cut into five parts (full-length
    paragraphs, parts of one article share a story), event times spread over one day."""
    short = [a for _, articles, _ in groups for a in articles]
    long = []
    for article in wikiref:
        lines = [x for x in article.text.split("\n") if x.strip()]
        step = max(1, math.ceil(len(lines) / 5))
        for part in range(0, len(lines), step):
            long.append(
                _article(
                    f"{article.article_id}-{part}",
                    article.title or "",
                    "\n".join(lines[part : part + step]),
                    None,
                )
            )
    pool = [x for pair in zip(short, long, strict=False) for x in pair]
    pool += short[len(long) :] + long[len(short) :]
    out = []
    for k, article in enumerate(pool[:n]):
        when = EPOCH.replace(hour=(k * 7) % 24, minute=(k * 13) % 60)
        fields = {name: getattr(article, name) for name in article.__slots__}
        out.append(Article(**{**fields, "published_at": when}))
    return out


def stage_speed(groups, wikiref: Sequence[Article], topics_file: Path):
    """ms per article of the non-extraction stages, for one group of n = 200 and 2,000."""
    settings, fp = StorySettings(), FingerprintSettings()
    topics = load_topics(topics_file)
    # one-off costs (word lists, stemmers, topic index) are per worker, not per article
    assign_topic(wikiref[0], topics)
    text_profile(wikiref[0], settings.languages)
    rows = []
    for n in (200, 2000):
        pool = speed_pool(groups, wikiref, n)
        start = time.perf_counter()
        printed = [fingerprint_article(a, fp) for a in pool]
        marks = [time.perf_counter()]
        for article in pool:
            assign_topic(article, topics)
        marks.append(time.perf_counter())
        find_duplicates(printed, fp)
        marks.append(time.perf_counter())
        cluster_stories(printed, settings)
        marks.append(time.perf_counter())
        ms = [(b - a) * 1e3 / n for a, b in zip([start, *marks], marks, strict=False)]
        words = sum(len(a.text.split()) for a in pool) / n
        rows.append((n, words, ms[1], ms[0], ms[2], ms[3]))
    return rows


def link_speed(groups, wikiref: Sequence[Article], n: int = 2000, days: int = 30) -> tuple[int, float]:
    """Seconds ``link_clusters`` takes for the clusters of ``n`` articles over ``days`` windows."""
    found = _speed_clusters(groups, wikiref, n, days)
    start = time.perf_counter()
    link_clusters(found, [], StorySettings())
    return len(found), time.perf_counter() - start


def _speed_clusters(groups, wikiref: Sequence[Article], n: int, days: int) -> list:
    pool = [
        replace(article, topic="general", published_at=EPOCH + timedelta(hours=(k * 37) % (24 * days)))
        for k, article in enumerate(speed_pool(groups, wikiref, n))
    ]
    return [c.summary for c in cluster_windows(pool, StorySettings(), FingerprintSettings())]


def state_link_speed(
    groups,
    wikiref: Sequence[Article],
    copies: Sequence[int] = (0, 10, 30),
    n: int = 2000,
    days: int = 30,
    late_days: int = 3,
) -> list[tuple[int, int, float, float, int, float]]:
    """A later run against a long-lived state: the clusters of the last ``late_days`` are
    linked against the stories of the days before (the 14 days that the state keeps), plus
    ``k`` copies of those stories under other ids, moved back by 1..k hours (other news of
    those days; about half of it was last seen beyond the linking's reach of 7 days).
    [(stories in the state, clusters, read s, link s, stories kept, write s)]."""
    import tempfile

    settings = StorySettings()
    found = _speed_clusters(groups, wikiref, n, days)
    split = EPOCH + timedelta(days=days - late_days)
    early = [c for c in found if c.window_start < split]
    late = [c for c in found if c.window_start >= split]
    state = link_clusters(early, [], settings)[2]
    rows = []
    for k in copies:
        aged = list(state)
        for hour in range(1, k + 1):
            back = timedelta(hours=hour)
            aged.extend(
                dataclasses.replace(
                    s,
                    story_id=f"{s.story_id}-{hour}",
                    article_ids=[f"{a}-{hour}" for a in s.article_ids],
                    originals=[[f"{o[0]}-{hour}", *o[1:]] for o in s.originals],
                    first_published=s.first_published - back,
                    last_published=s.last_published - back,
                    window_start=s.window_start - back,
                    window_end=s.window_end - back,
                )
                for s in state
            )
        with tempfile.TemporaryDirectory() as url:
            write_state(url, aged, "bench")
            start = time.perf_counter()
            previous = read_state(url)
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            new_state = link_clusters(late, previous, settings)[2]
            link_s = time.perf_counter() - start
            start = time.perf_counter()
            write_state(url, new_state, "bench")
            rows.append((len(aged), len(late), read_s, link_s, len(new_state), time.perf_counter() - start))
    return rows


def print_speed(groups, wikiref: Sequence[Article]) -> None:
    print("\nstage speed, one (topic, window) group of n articles (ms per article)")
    header = f"{'n':>6}{'words':>7}{'topic':>8}{'fingerpr':>10}{'dups':>8}{'cluster':>9}"
    print(header)
    print("-" * len(header))
    topics_file = Path(__file__).resolve().parents[1] / "configs" / "topics.yaml"
    for n, words, topic, fingerprint, dups, cluster in stage_speed(groups, wikiref, topics_file):
        print(f"{n:6d}{words:7.0f}{topic:8.3f}{fingerprint:10.3f}{dups:8.3f}{cluster:9.3f}")

    clusters, secs = link_speed(groups, wikiref)
    print(f"\nlinking {clusters} clusters of 2,000 articles spread over 30 daily windows: {secs:.2f} s")
    for stories, clusters, read_s, link_s, kept, write_s in state_link_speed(groups, wikiref):
        print(
            f"  a later run's {clusters} clusters against a state of {stories:,} stories:"
            f" read {read_s:.2f} s, link {link_s:.2f} s, write {kept:,} {write_s:.2f} s"
        )

    print("\nfingerprint speed (wikiref220 texts)")
    for name, seconds in speed([a.text for a in wikiref]):
        print(f"  {name:<26}{seconds * 1e3:7.2f} ms/article")


# --- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    parser.add_argument("--sweep", action="store_true", help="also sweep cluster_threshold")
    parser.add_argument("--pairs", type=int, default=200, help="negatives per group, 0 = all")
    parser.add_argument("--speed", action="store_true", help="only the speed tables")
    parser.add_argument(
        "--per-group", action="store_true", help="also news_search B3-F1 per query group, beside the annotators'"
    )
    args = parser.parse_args(argv)
    data = args.shared / "data"
    settings = StorySettings()
    methods = {"ours": ours(settings), "ours, as the pipeline": as_pipeline(settings), "tfidf-cosine": baseline()}

    groups = load_news_search(data / "news_search_clustering")
    if args.speed:
        print_speed(groups, load_wikiref(data / "wikiref220")[0])
        return
    agree = eval_annotators(groups)
    print("news_search_clustering: 20 groups x 50 items, mean over groups")
    header = f"{'method':<22}{'gold':<7}{'ARI':>7}{'B3-P':>7}{'B3-R':>7}{'B3-F1':>7}"
    print(header)
    print("-" * len(header))
    print(f"{'annotators g1<->g2':<22}{'':<7}{agree['ari']:7.3f}{agree['p']:7.3f}{agree['r']:7.3f}{agree['f1']:7.3f}")
    for name, method in methods.items():
        start = time.perf_counter()
        s = eval_news(groups, method)
        took = time.perf_counter() - start
        for g in ("gold1", "gold2"):
            print(f"{name:<22}{g:<7}{s[g + '_ari']:7.3f}{s[g + '_p']:7.3f}{s[g + '_r']:7.3f}{s[g + '_f1']:7.3f}")
        print(f"{'':<22}({took:.2f} s for 1,000 items)")

    print("all 20 groups in one run (each group scored on its items' clusters):")
    for name, method in methods.items():
        s = eval_news_joint(groups, method)
        for g in ("gold1", "gold2"):
            print(f"{name:<22}{g:<7}{'':>7}{s[g + '_p']:7.3f}{s[g + '_r']:7.3f}{s[g + '_f1']:7.3f}")

    oracle = oracle_thresholds(groups, settings, np.arange(0.06, 0.42, 0.02))
    print(
        f"{'ours, best threshold per group':<31}gold1 B3-F1 {oracle['gold1']:.3f}, gold2 {oracle['gold2']:.3f}"
        " (a ceiling for this similarity)"
    )
    cut, low = settings.cluster_threshold, 0.05
    print(f"gold pairs inside the groups by our similarity (cut {cut:.2f}):")
    for annotator, (n_same, below_low, below_cut, n_other, above_cut) in gold_pair_similarity(
        groups, settings, low
    ).items():
        print(
            f"  {annotator}: {n_same} same-story pairs, {below_low:.0%} below {low}, {below_cut:.0%} below the cut;"
            f" {n_other} other pairs, {above_cut:.1%} at or above the cut"
        )
    top = 20
    for annotator, (n_top, low_top, n_rest, low_rest) in gold_pairs_by_rank(groups, settings, top, low).items():
        print(
            f"  {annotator} same-story pairs below {low}: {low_top:.0%} of {n_top} among the first {top} results"
            f" of a query, {low_rest:.0%} of {n_rest} with a result ranked after {top}"
        )
    if args.per_group:
        print("per group, B3-F1 of ours as the pipeline against each annotator, and of the annotators:")
        print(f"  {'query':<18}{'gold1':>7}{'gold2':>7}{'g1<->g2':>9}")
        for name, f1, f2, fa in per_group(groups, methods["ours, as the pipeline"]):
            print(f"  {name:<18}{f1:7.3f}{f2:7.3f}{fa:9.3f}")

    pairs = agreed_pairs(groups, args.pairs)
    positives = sum(1 for p in pairs if p[2])
    print(f"\nsame-story pairs, each clustered alone ({positives} same / {len(pairs)} pairs)")
    print(f"{'method':<22}{'P':>7}{'R':>7}{'F1':>7}")
    for name, method in methods.items():
        p, r, f = eval_pairs(pairs, method)
        print(f"{name:<22}{p:7.3f}{r:7.3f}{f:7.3f}")
    best = max(
        ((t, eval_pairs(pairs, baseline(t))[2]) for t in np.arange(0.05, 0.9, 0.05)),
        key=lambda x: x[1],
    )
    print(f"{'tfidf best threshold':<22}{'':>14}{best[1]:7.3f}  (threshold {best[0]:.2f})")

    everything = [a for _, group, _ in groups for a in group]
    print(
        f"\nbatch check, news_search's {len(everything)} items in one run and in 4 runs by event time (each"
        " linking to the state of the ones before), by stories.link_weights_from:"
    )
    for mode in ("run", "past"):
        moded = dataclasses.replace(settings, link_weights_from=mode)
        same, joined_one, joined_parts, joined_both = batch_agreement(everything, moded)
        scores = eval_news(groups, as_pipeline(moded))
        print(
            f"  {mode:<5} same story id {same:.1%}; pairs joined {joined_one} in one run, {joined_parts} in batches,"
            f" {joined_both} in both; B3-F1 per group as the pipeline {scores['gold1_f1']:.3f} / {scores['gold2_f1']:.3f}"
        )
    articles, topics = load_wikiref(data / "wikiref220")
    n, agree, one, two = window_agreement(articles, settings)
    print(
        f"\nwindow check, wikiref220: {n} pairs 1 h apart (one window) and 30 h apart (two windows,"
        f" linking decides):\n  same decision {agree:.1%}; joined {one} in one window, {two} across two"
    )
    print("\nwikiref220: 220 full texts, topic labels (16, or 5 major + noise)")
    header = f"{'method':<22}{'ARI16':>7}{'F1-16':>7}{'ARI5+n':>7}{'F1-5+n':>7}{'#clu':>6}"
    print(header)
    print("-" * len(header))
    for name, method in methods.items():
        s = eval_wikiref(articles, topics, method)
        print(
            f"{name:<22}{s['ari_16']:7.3f}{s['f1_16']:7.3f}{s['ari_5+noise']:7.3f}"
            f"{s['f1_5+noise']:7.3f}{s['clusters']:6d}"
        )

    l3s = data / "l3s_gn1"
    if (l3s / "ground_truth.jsonl.gz").exists() and L3S_LABELS.exists():
        l3s_articles, l3s_pairs = load_l3s_pairs(l3s)
        counts = ", ".join(f"{len(v)} {k}" for k, v in l3s_pairs.items())
        print(f"\nl3s_gn1 full-text pairs, each clustered alone ({counts})")
        header = f"{'method':<24}{'positives':<13}{'P':>7}{'R':>7}{'F1':>7}"
        print(header)
        print("-" * len(header))
        for name, positives, p, r, f in eval_l3s(l3s_articles, l3s_pairs, methods):
            print(f"{name:<24}{positives:<13}{p:7.3f}{r:7.3f}{f:7.3f}")
        print(
            f"\nl3s_gn1, all {len(l3s_articles)} articles clustered in one run (no dates: one window), the same pairs"
        )
        print(header)
        print("-" * len(header))
        for name, positives, p, r, f in eval_l3s_joint(l3s_articles, l3s_pairs, methods):
            print(f"{name:<24}{positives:<13}{p:7.3f}{r:7.3f}{f:7.3f}")
        print(
            "ranking same-story above same-topic (hard) pairs, ROC AUC (no threshold; ours as a pair alone in"
            " a window, the TF-IDF peer with idf over all the set's articles):"
        )
        for positives, ours_auc, tfidf_auc in l3s_ranking(l3s_articles, l3s_pairs, settings):
            print(f"  {positives:<12} ours {ours_auc:.3f}   tfidf-cosine {tfidf_auc:.3f}")

    if args.sweep:
        print("\ncluster_threshold sweep (news_search_clustering B3-F1 g1/g2, pairs F1)")
        for t in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45):
            swept = StorySettings(cluster_threshold=t)
            s = eval_news(groups, ours(swept))
            pf = eval_pairs(pairs, ours(swept))[2]
            print(f"  {t:.2f}  {s['gold1_f1']:.3f} {s['gold2_f1']:.3f}  {pf:.3f}")

    print_speed(groups, articles)


if __name__ == "__main__":
    main()
