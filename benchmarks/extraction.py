"""Extraction quality: storybeam's extract + clean functions vs plain trafilatura, same pages,
same run, one table.

    python -m benchmarks.extraction [--limit N] [--sets trafilatura_eval,l3s_gn1,seeds]
                                    [--misses FILE]

Sets (from ../shared, never committed):

* trafilatura_eval - 990 pages with must-contain ("with") and must-not-contain ("without")
  snippets; trafilatura's pooled snippet metric (P, R, F1 = 2TP / (2TP + FP + FN)).
* l3s_gn1 - 621 news pages with labelled main text, user comments and related content;
  shingle P/R/F1 of the main text (see benchmarks/scoring.py), plus the share of user-comment
  and related-content shingles that leak into the output.
* seeds - five plain-text articles with known leftover boilerplate: boilerplate items left and
  prose paragraphs lost (plain trafilatura does not process text: its column is the input).

Baseline: ``trafilatura.extract(html, include_comments=False, include_tables=True,
include_formatting=False, deduplicate=False)`` on the raw bytes. Ours:
``extract_document`` (settings defaults) then ``clean_article`` with per-host boilerplate
learned over the set, exactly as ``CleanText`` does on a bounded run; a page that ends in a
failure (no text, filtered) counts as empty output. Scored text is the article ``text``;
titles are a separate column and are not added (except on the row marked title+text).
Times are wall-clock per page on this machine, extraction + cleaning.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.scoring import SnippetCounts, leakage, shingle_scores
from transforms.clean import CleanRules, clean_article, learn_host_boilerplate
from transforms.extract import ExtractSettings, extract_document
from transforms.records import Article, Document

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = SHARED / "data"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Page:
    key: str
    url: str
    html: bytes


@dataclass
class Output:
    text: str
    title: str
    seconds: float


def plain_trafilatura(pages: list[Page]) -> dict[str, Output]:
    import trafilatura

    out = {}
    for page in pages:
        started = time.perf_counter()
        try:
            text = trafilatura.extract(
                page.html,
                include_comments=False,
                include_tables=True,
                include_formatting=False,
                deduplicate=False,
            )
        except Exception:  # noqa: BLE001 - the metric counts a crash as empty output
            text = None
        out[page.key] = Output(text or "", "", time.perf_counter() - started)
    return out


def storybeam(pages: list[Page], settings: ExtractSettings, rules: CleanRules) -> dict[str, Output]:
    """extract_document per page, then per-host learning and clean_article (as CleanText)."""
    extracted: dict[str, Article | None] = {}
    seconds: dict[str, float] = {}
    for page in pages:
        doc = Document(url=page.url, source_kind="warc", fetched_at=T0, html=page.html)
        started = time.perf_counter()
        result = extract_document(doc, settings)
        seconds[page.key] = time.perf_counter() - started
        extracted[page.key] = result if isinstance(result, Article) else None
    by_host: dict[str, list[str]] = defaultdict(list)
    for key, art in extracted.items():
        if art is not None:
            by_host[art.source].append(key)
    out = {}
    for keys in by_host.values():
        started = time.perf_counter()
        learned = learn_host_boilerplate((extracted[k].text for k in keys), rules)
        share = (time.perf_counter() - started) / len(keys)
        for key in keys:
            started = time.perf_counter()
            cleaned = clean_article(extracted[key], rules, learned)
            seconds[key] += time.perf_counter() - started + share
            if isinstance(cleaned, Article):
                out[key] = Output(cleaned.text, cleaned.title or "", seconds[key])
    for key in extracted:
        out.setdefault(key, Output("", "", seconds[key]))
    return out


# ---------------------------------------------------------------------------------------------
# Sets
# ---------------------------------------------------------------------------------------------


def trafilatura_eval_set(limit: int | None) -> tuple[list[Page], dict]:
    root = DATA / "trafilatura_eval"
    data = json.loads((root / "evaldata.json").read_text(encoding="utf-8"))
    pages = []
    for url, item in data.items():
        for folder in ("eval", "cache"):
            path = root / folder / (item["file"] + ".gz")
            if path.exists():
                pages.append(Page(url, url, gzip.decompress(path.read_bytes())))
                break
        else:
            pages.append(Page(url, url, b""))
        if limit and len(pages) >= limit:
            break
    return pages, data


_CANONICAL = re.compile(
    rb"<(?:link[^>]+rel=[\"']?canonical[\"']?[^>]+href|meta[^>]+property=[\"']og:url[\"']"
    rb"[^>]+content)=[\"']?(https?://[^\"'\s>]+)",
    re.IGNORECASE,
)


def l3s_set(limit: int | None) -> tuple[list[Page], dict]:
    root = DATA / "l3s_gn1"
    truth = {}
    pages = []
    with gzip.open(root / "ground_truth.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            html = gzip.decompress((root / item["input"]).read_bytes())
            # The set has no URLs; use the page's canonical URL when it states one so that
            # per-host learning sees real hosts, else a host of its own.
            found = _CANONICAL.search(html[:200_000])
            url = found.group(1).decode("ascii", "ignore") if found else ""
            url = url or f"http://page-{item['id']}.invalid/"
            pages.append(Page(item["id"], url, html))
            truth[item["id"]] = item
            if limit and len(pages) >= limit:
                break
    return pages, truth


SEED_BOILERPLATE = (
    "Previous Post Next Post",
    "Comments (0)",
    "Add Comment",
    "Marco RubioPakistan",
)


def _split_title(raw: str) -> tuple[str | None, str]:
    first, _, rest = raw.lstrip().partition("\n")
    first = first.strip()
    if first and len(first) <= 150 and not first.endswith("."):
        return first, rest
    return None, raw


def seed_counts(title: str | None, body: str, output: str) -> tuple[int, int]:
    """(boilerplate items left, prose paragraphs lost) of one seed's output."""
    paras = [" ".join(p.split()) for p in output.splitlines() if p.strip()]
    left = sum(1 for b in SEED_BOILERPLATE if b in output)
    left += bool(title and paras and paras[0] == title)
    left += bool(re.match(r"\s*date \d{4}-\d\d-\d\d", output))
    left += len(paras) - len(set(paras))
    bare = [re.sub(r"^date \d{4}-\d\d-\d\d ", "", p) for p in paras]
    left += sum(1 for a in bare for b in bare if a != b and len(a) > 60 and a in b)
    joined = " ".join(paras)
    lost = 0
    for para in (" ".join(p.split()) for p in body.splitlines() if p.strip()):
        para = re.sub(r"^date \d{4}-\d\d-\d\d ", "", para)
        if para != title and not any(b in para for b in SEED_BOILERPLATE) and para not in joined:
            lost += 1
    return left, lost


# ---------------------------------------------------------------------------------------------
# Table
# ---------------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _ms(outputs: dict[str, Output]) -> str:
    return f"{1000 * sum(o.seconds for o in outputs.values()) / max(len(outputs), 1):.1f}"


def _prf(p) -> str:
    return f"{p.precision:.3f} / {p.recall:.3f} / {p.f1:.3f}"


def run(sets: list[str], limit: int | None, misses: Path | None, fast: bool = False) -> list[tuple[str, ...]]:
    settings, rules = ExtractSettings(fast=fast), CleanRules()
    rows: list[tuple[str, ...]] = []
    miss_log = []
    if "trafilatura_eval" in sets and (DATA / "trafilatura_eval").is_dir():
        pages, data = trafilatura_eval_set(limit)
        base, ours = plain_trafilatura(pages), storybeam(pages, settings, rules)
        counts = {}
        for name, outputs in (("trafilatura", base), ("storybeam", ours)):
            counts[name] = SnippetCounts()
            for page in pages:
                item = data[page.key]
                counts[name].add(page.key, outputs[page.key].text, item["with"], item["without"])
        titled = SnippetCounts()
        for page in pages:
            item, out = data[page.key], ours[page.key]
            titled.add(page.key, f"{out.title}\n{out.text}", item["with"], item["without"])
        label = f"trafilatura_eval ({len(pages)})"
        rows.append((label, "snippet P / R / F1", _prf(counts["trafilatura"].prf()),
                     _prf(counts["storybeam"].prf())))  # fmt: skip
        rows.append((label, "snippet P / R / F1, title+text", "", _prf(titled.prf())))
        rows.append((label, "ms / page", _ms(base), _ms(ours)))
        miss_log += [("trafilatura_eval", "storybeam", *m) for m in counts["storybeam"].misses]
        miss_log += [("trafilatura_eval", "trafilatura", *m) for m in counts["trafilatura"].misses]
    if "l3s_gn1" in sets and (DATA / "l3s_gn1").is_dir():
        pages, truth = l3s_set(limit)
        base, ours = plain_trafilatura(pages), storybeam(pages, settings, rules)
        label = f"l3s_gn1 ({len(pages)})"

        def scores(outputs, with_title=False):
            def text(k):
                o = outputs[k]
                return f"{o.title}\n{o.text}" if with_title and o.title else o.text

            keys = [p.key for p in pages]
            main = shingle_scores([(truth[k]["text"], text(k)) for k in keys])
            com = leakage([(truth[k]["user_comments"], truth[k]["text"], text(k)) for k in keys])
            rel = leakage([(truth[k]["related_content"], truth[k]["text"], text(k)) for k in keys])
            return main, com, rel

        (bm, bc, br), (om, oc, orl) = scores(base), scores(ours)
        tm = scores(ours, with_title=True)[0]
        rows.append((label, "shingle P / R / F1", _prf(bm), _prf(om)))
        rows.append((label, "shingle P / R / F1, title+text", "", _prf(tm)))
        rows.append((label, "user-comment leakage", _pct(bc), _pct(oc)))
        rows.append((label, "related-content leakage", _pct(br), _pct(orl)))
        rows.append((label, "ms / page", _ms(base), _ms(ours)))
        for k in (p.key for p in pages):
            miss_log.append(("l3s_gn1", "storybeam", k, "output", ours[k].text[:3000]))
    if "seeds" in sets and (SHARED / "seeds").is_dir():
        files = sorted((SHARED / "seeds").glob("*.txt"))
        if limit:
            files = files[:limit]
        left = {"trafilatura": 0, "storybeam": 0}
        lost = {"trafilatura": 0, "storybeam": 0}
        for path in files:
            title, body = _split_title(path.read_text(encoding="utf-8"))
            art = Article(url="file://seed", fetched_at=T0, text=body, title=title)
            cleaned = clean_article(art, rules)
            text = cleaned.text if isinstance(cleaned, Article) else ""
            for name, output in (("trafilatura", body), ("storybeam", text)):
                a, b = seed_counts(title, body, output)
                left[name] += a
                lost[name] += b
        label = f"seeds ({len(files)})"
        rows.append((label, "boilerplate items left", str(left["trafilatura"]),
                     str(left["storybeam"])))  # fmt: skip
        rows.append((label, "prose paragraphs lost", str(lost["trafilatura"]),
                     str(lost["storybeam"])))  # fmt: skip
    if misses:
        with misses.open("w", encoding="utf-8") as fh:
            for row in miss_log:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


def print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("set", "metric", "trafilatura", "storybeam")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print(line(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="pages per set (quick runs)")
    parser.add_argument("--sets", default="trafilatura_eval,l3s_gn1,seeds")
    parser.add_argument("--misses", type=Path, default=None, help="write misses as JSON lines")
    parser.add_argument("--fast", action="store_true", help="storybeam with extract.fast (trafilatura's fast mode)")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        print(f"no benchmark data under {DATA}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    rows = run(args.sets.split(","), args.limit, args.misses, args.fast)
    print_table(rows)
    print(f"\n({time.perf_counter() - started:.0f} s; trafilatura {_version()}; ours = "
          f"extract_document + clean_article, defaults)")  # fmt: skip
    return 0


def _version() -> str:
    import trafilatura

    return trafilatura.__version__


if __name__ == "__main__":
    sys.exit(main())
