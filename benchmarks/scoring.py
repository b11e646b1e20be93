"""Scoring helpers shared by the quality benchmarks.

* :func:`shingle_scores` - the Scrapinghub article-extraction metric (shingle P/R/F1):
  tokens are Unicode ``\\w+`` runs; a text becomes the multiset of its 4-token shingles (a
  text of fewer than 4 tokens gives one shorter shingle). Per document
  TP = sum(min(true, pred)), FP = sum(max(0, pred - true)), FN = sum(max(0, true - pred)),
  each divided by TP + FP + FN so that every document weighs the same. Per-document
  precision = TP / (TP + FP) (1.0 when FP = FN = 0; 0.0 when TP = FP = 0), recall likewise.
  Corpus precision is the mean over documents with TP + FP > 0, corpus recall the mean over
  documents with TP + FN > 0, and F1 the harmonic mean of those two means.
* :class:`SnippetCounts` - trafilatura's evaluation metric: whitespace-normalised output,
  "with" snippets found = TP (else FN), "without" snippets found = FP (else TN), pooled over
  all documents; F1 = 2TP / (2TP + FP + FN).
* :func:`leakage` - share of the shingles of an unwanted block (user comments, related links)
  that appear in the output, ignoring shingles that also belong to the wanted text.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_TOKEN = re.compile(r"\w+")
SHINGLE = 4


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text or "")


def shingles(text: str, size: int = SHINGLE) -> Counter[tuple[str, ...]]:
    """Multiset of ``size``-token shingles (one shorter shingle for a short, non-empty text)."""
    toks = tokens(text)
    if not toks:
        return Counter()
    if len(toks) < size:
        return Counter([tuple(toks)])
    return Counter(tuple(toks[i : i + size]) for i in range(len(toks) - size + 1))


@dataclass(frozen=True)
class DocScore:
    tp: float
    fp: float
    fn: float

    @property
    def precision(self) -> float | None:
        if self.tp + self.fp == 0:
            return None
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        if self.tp + self.fn == 0:
            return None
        return self.tp / (self.tp + self.fn)


def shingle_doc(true: str, pred: str) -> DocScore:
    t, p = shingles(true), shingles(pred)
    tp = sum(min(n, p[s]) for s, n in t.items())
    fp = sum(max(0, n - t[s]) for s, n in p.items())
    fn = sum(max(0, n - p[s]) for s, n in t.items())
    total = tp + fp + fn
    if total == 0:
        return DocScore(0.0, 0.0, 0.0)
    return DocScore(tp / total, fp / total, fn / total)


def _doc_precision(s: DocScore) -> float | None:
    if s.fp == 0 and s.fn == 0 and s.tp > 0:
        return 1.0
    return s.precision


def _doc_recall(s: DocScore) -> float | None:
    if s.fp == 0 and s.fn == 0 and s.tp > 0:
        return 1.0
    return s.recall


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def shingle_scores(pairs: list[tuple[str, str]]) -> PRF:
    """(true, predicted) text pairs -> corpus P, R and F1 (harmonic mean of the two means)."""
    docs = [shingle_doc(t, p) for t, p in pairs]
    precisions = [p for p in (_doc_precision(d) for d in docs) if p is not None]
    recalls = [r for r in (_doc_recall(d) for d in docs) if r is not None]
    precision = sum(precisions) / len(precisions) if precisions else 0.0
    recall = sum(recalls) / len(recalls) if recalls else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PRF(precision, recall, f1)


def normalise_ws(text: str | None) -> str:
    return " ".join((text or "").split())


@dataclass
class SnippetCounts:
    """Pooled counts of trafilatura's snippet metric."""

    tp: int = 0
    fn: int = 0
    fp: int = 0
    tn: int = 0
    misses: list[tuple[str, str, str]] = field(default_factory=list)  # (doc, kind, snippet)

    def add(self, doc: str, output: str | None, with_: list[str], without: list[str]) -> None:
        text = normalise_ws(output)
        for snippet in with_:
            if normalise_ws(snippet) in text:
                self.tp += 1
            else:
                self.fn += 1
                self.misses.append((doc, "with", snippet))
        for snippet in without:
            if normalise_ws(snippet) in text:
                self.fp += 1
                self.misses.append((doc, "without", snippet))
            else:
                self.tn += 1

    def prf(self) -> PRF:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        denom = 2 * self.tp + self.fp + self.fn
        return PRF(precision, recall, 2 * self.tp / denom if denom else 0.0)


def leakage(pairs: list[tuple[str, str, str]]) -> float | None:
    """(unwanted block, wanted text, output) triples -> pooled share of the unwanted block's
    distinct shingles found in the output (shingles shared with the wanted text excluded);
    None when no triple has an unwanted block."""
    leaked = total = 0
    for unwanted, wanted, output in pairs:
        bad = set(shingles(unwanted)) - set(shingles(wanted))
        if not bad:
            continue
        total += len(bad)
        leaked += len(bad & set(shingles(output)))
    return leaked / total if total else None
