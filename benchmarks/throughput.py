"""Throughput of the whole pipeline against a plain loop (read WARC + trafilatura) on the same
corpus, in the same run.

    python -m benchmarks.throughput [--sizes 1000 4000] [--workers 1 2] [--files 4] [--breakdown 300]
                                    [--batch-mb 28] [--rounds 3]

Prints docs/s, the pipeline/plain ratio, peak memory (RSS and PSS summed over the process tree:
RSS counts the pages forked workers share with their parent once per process, PSS shares them) and CPU
ms per document (whole process tree) per corpus size. Each measurement runs in a fresh subprocess so that peak memory is its own.
``--breakdown N`` (300 by default) adds where the time goes: CPU ms per page of each stage's plain functions
on the first N pages of the corpus, in this process, next to plain trafilatura on the same
pages (CPU time, so that other load on the machine counts less than in wall time).
``--batch-mb N`` adds runs with 1 and 2 workers in batches of at most N MB of input
(``run.batch_mb``, as configs/backfill.yaml does for archives; a file larger than N MB is cut
into parts): peak memory should then not grow with the corpus (28 MB is ~1,000 pages here).
``--rounds N`` repeats the plain loop and the pipeline runs N times and prints medians: each
round brackets its pipeline runs with a plain loop before and after, since this kind of VM
changes speed by tens of percent over minutes (one run saw the same plain loop at 28.9 and
42.7 CPU ms/doc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PLAIN_LOOP = r"""
import os, sys, time, glob, trafilatura
from fastwarc.warc import ArchiveIterator, WarcRecordType
if os.environ.get("STORYBEAM_TUNED_TRAFILATURA"):  # the same speed-ups the pipeline installs
    from transforms.extract import speed_up_trafilatura
    speed_up_trafilatura()
n = 0
t0 = time.perf_counter()
paths = sorted(glob.glob(sys.argv[1]))
part, parts = (int(sys.argv[2]), int(sys.argv[3])) if len(sys.argv) > 3 else (0, 1)
for path in paths[part::parts]:
    with open(path, "rb") as fh:
        for rec in ArchiveIterator(fh, record_types=WarcRecordType.response, parse_http=True):
            html = rec.reader.read()
            trafilatura.extract(html, include_comments=False, include_tables=True, deduplicate=False)
            n += 1
print(n, time.perf_counter() - t0)
"""


def _children_cpu() -> float:
    """CPU seconds (user + system) of all finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_plain(glob_pattern: str, processes: int = 1, tuned: bool = False) -> tuple[int, float, float]:
    """The peer: fastwarc + trafilatura.extract in a loop (imports not timed); with
    ``processes`` > 1, that many loops at once over disjoint files (wall time of the slowest).
    ``tuned``: with the speed-ups storybeam installs in trafilatura (C element lookup,
    rewritten XPaths, Python selectors; same texts), to show what is left of the pipeline's
    own cost.
    Peak memory is polled as for the pipeline (RSS summed over the processes): the
    children's ``ru_maxrss`` would be the largest of every child so far."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if tuned:
        env["STORYBEAM_TUNED_TRAFILATURA"] = "1"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PLAIN_LOOP, glob_pattern, str(i), str(processes)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    peak = watch_memory(procs)
    results = [p.communicate()[0].split() for p in procs]
    n = sum(int(r[0]) for r in results)
    secs = max(float(r[1]) for r in results)
    return n, secs, peak


def run_pipeline(
    glob_pattern: str, workers: int, out_dir: str, config: str | None = None
) -> tuple[int, float, float, float]:
    """Returns (documents, wall seconds incl. interpreter start-up and imports, seconds of the
    run itself as reported by storybeam, peak (RSS, PSS) of the process tree in MB)."""
    cmd = [sys.executable, "-m", "pipeline.main", "--source", "warc", "--input", glob_pattern, "--output", out_dir]
    if config:
        cmd += ["--config", config]
    if workers > 1:
        cmd += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = watch_memory([proc])
    secs = time.perf_counter() - t0
    stdout, stderr = proc.communicate()
    if proc.returncode not in (0, 3):
        raise SystemExit(f"pipeline failed ({proc.returncode}):\n{stderr[-3000:]}")
    summary = json.loads(Path(out_dir, "summary.json").read_text())
    match = re.search(r"wrote .* in ([0-9.]+)s", stdout)
    run_secs = float(match.group(1)) if match else secs
    return summary["inputs"], secs, run_secs, peak


def descendants(pid: int) -> list[int]:
    """Process ids of the running descendants of ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    found, stack = [], list(children.get(pid, []))
    while stack:
        p = stack.pop()
        found.append(p)
        stack.extend(children.get(p, []))
    return found


def _tree_memory_mb(pid: int, pss: bool = True) -> tuple[float, float]:
    """(RSS, PSS) summed over pid and its descendants, MB (Linux /proc). RSS counts a page
    shared by several processes once per process (forked workers share their parent's
    imports); PSS divides each shared page among the processes that map it (0 when ``pss`` is
    false: reading it is the costly part)."""
    rss = pss_bytes = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/statm") as fh:
                rss += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            if pss:
                with open(f"/proc/{p}/smaps_rollup") as fh:
                    pss_bytes += next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) * 1024
        except (OSError, StopIteration, ValueError):
            pass
    return rss / 2**20, pss_bytes / 2**20


#: seconds between reads of the processes' RSS; PSS is read every ``PSS_EVERY`` polls
POLL_S = 0.2
PSS_EVERY = 5


def watch_memory(procs: list[subprocess.Popen]) -> tuple[float, float]:
    """Poll until every process of ``procs`` has ended; (peak RSS, peak PSS) of their process
    trees together, MB. RSS is read every ``POLL_S`` and PSS every ``PSS_EVERY`` polls: the
    kernel walks a process's page tables for PSS (``smaps_rollup``), ~17 ms of CPU for the
    10 processes of a 2-worker run. Read every 0.2 s, that took ~4 % of this 2-core machine
    from the runs being measured, which on 2 workers have no idle core to spare: three
    1,000-page runs on 2 workers took 17.0, 16.6 and 17.1 s watched so, then 16.1, 16.2 and
    16.1 s with PSS read every second (peak PSS 1,158 MB, then 1,093-1,168 MB)."""
    peak_rss = peak_pss = 0.0
    polls = 0
    while any(p.poll() is None for p in procs):
        with_pss = polls % PSS_EVERY == 0
        each = [_tree_memory_mb(p.pid, with_pss) for p in procs]
        peak_rss = max(peak_rss, sum(m[0] for m in each))
        peak_pss = max(peak_pss, sum(m[1] for m in each))
        polls += 1
        time.sleep(POLL_S)
    return peak_rss, peak_pss


def stage_breakdown(pattern: str, limit: int) -> list[tuple[str, float]]:
    """(stage, CPU ms per page) of the pipeline's plain stage functions, run one after the
    other on the first ``limit`` pages, as the 1-worker pipeline runs them (extraction with
    the signal time limit, per-host boilerplate learned over the pages, one clustering call
    per topic and window)."""
    import glob
    from collections import defaultdict

    import trafilatura

    from pipeline.config import load_config
    from transforms.clean import clean_article, learn_host_boilerplate
    from transforms.extract import extract_document
    from transforms.fingerprint import fingerprint_article
    from transforms.records import Article
    from transforms.sources import read_warc_file
    from transforms.stories import _with_topic, cluster_windows, load_topics

    cfg = load_config(str(REPO / "configs" / "local.yaml"))
    cpu = time.process_time
    spent: dict[str, float] = defaultdict(float)
    started = cpu()
    docs = []
    for path in sorted(glob.glob(pattern)):
        docs.extend(d for d in read_warc_file(path, cfg.sources) if not hasattr(d, "reason"))
    docs = docs[:limit]
    spent["read WARC (whole files)"] = cpu() - started
    for doc in docs:
        started = cpu()
        trafilatura.extract(doc.html, include_comments=False, include_tables=True, deduplicate=False)
        spent["(plain trafilatura.extract, for reference)"] += cpu() - started
    articles = []
    for doc in docs:
        started = cpu()
        result = extract_document(doc, cfg.extract)
        spent["extract"] += cpu() - started
        if isinstance(result, Article):
            articles.append(result)
    for doc in docs:  # extract_document installed the speed-ups in this process
        started = cpu()
        trafilatura.extract(doc.html, include_comments=False, include_tables=True, deduplicate=False)
        spent["(the same, with storybeam's trafilatura speed-ups)"] += cpu() - started
    started = cpu()
    by_host = defaultdict(list)
    for article in articles:
        by_host[article.source].append(article)
    cleaned = []
    for group in by_host.values():
        learned = learn_host_boilerplate((a.text for a in group[: cfg.clean.host_sample_articles]), cfg.clean)
        cleaned.extend(a for a in (clean_article(a, cfg.clean, learned) for a in group) if isinstance(a, Article))
    spent["clean"] = cpu() - started
    started = cpu()
    printed = [fingerprint_article(a, cfg.fingerprint) for a in cleaned]
    spent["fingerprint"] = cpu() - started
    started = cpu()
    topics = load_topics(cfg.stories.topics_file)
    with_topics = [_with_topic(a, topics) for a in printed]
    spent["topic"] = cpu() - started
    started = cpu()
    cluster_windows(with_topics, cfg.stories, cfg.fingerprint)
    spent["stories (dedup + clustering, incl. word-frequency loading)"] = cpu() - started
    return [(name, secs / len(docs) * 1000) for name, secs in spent.items()]


def _with_cpu(run, *args, **kwargs) -> tuple[tuple, float]:
    """``run(*args, **kwargs)`` (a result whose first item is the number of documents) and
    the CPU ms per document of the child processes it ran."""
    before = _children_cpu()
    result = run(*args, **kwargs)
    return result, (_children_cpu() - before) / result[0] * 1000


class _Rows:
    """Measurements per (corpus size, run name), over rounds; printed as medians."""

    def __init__(self) -> None:
        self.runs: dict[tuple[int, str], list[tuple[int, float, float, tuple[float, float], float]]] = {}

    def add(
        self, size: int, name: str, n: int, secs: float, ratio: float, peak: tuple[float, float], cpu_ms: float
    ) -> None:
        self.runs.setdefault((size, name), []).append((n, secs, ratio, peak, cpu_ms))

    def print(self, rounds: int) -> None:
        header = (
            f"{'corpus':>7} | {'run':<54} | {'docs':>5} | {'secs':>7} | {'docs/s':>7} | {'vs plain':>8}"
            f" | {'range':>9} | {'peak MB':>7} | {'PSS MB':>7} | {'CPU ms/doc':>10}"
        )
        print(header)
        print("-" * len(header))
        for (size, name), found in self.runs.items():
            n = found[0][0]
            secs = statistics.median(f[1] for f in found)
            ratios = [f[2] for f in found]
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if len(found) > 1 else ""
            peak = max(f[3][0] for f in found)
            peak_pss = max(f[3][1] for f in found)
            cpu_ms = statistics.median(f[4] for f in found)
            print(
                f"{size:>7} | {name:<54} | {n:>5} | {secs:>7.1f} | {n / secs:>7.1f} | {statistics.median(ratios):>8.2f}"
                f" | {spread:>9} | {peak:>7.0f} | {peak_pss:>7.0f} | {cpu_ms:>10.1f}"
            )
        if rounds > 1:
            print(
                f"{rounds} rounds: secs, CPU ms/doc and 'vs plain' are medians over the rounds (range: lowest-highest"
                " ratio); peak MB (RSS) and PSS MB the highest."
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # two sizes by default (issue 7: the ratios at two corpus sizes); --sizes 200 for a quick look
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--files", type=int, default=4, help="WARC files per corpus")
    parser.add_argument(
        "--breakdown", type=int, default=300, help="pages for the per-stage CPU breakdown (default 300; 0: none)"
    )
    parser.add_argument(
        "--batch-mb", type=float, default=0, help="also run 1 and 2 workers in batches of N MB of input (0: no)"
    )
    parser.add_argument(
        "--light-metadata",
        action="store_true",
        help="also run 1 worker with extract.metadata_heuristics [title] (no date or author heuristics)",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat plain and pipeline runs N times; print medians (default 1)"
    )
    args = parser.parse_args(argv)
    import compileall

    from benchmarks.corpus import build_warc

    # As scripts/bootstrap.sh (run_local.sh) does: the project's modules as bytecode, so that
    # the pipeline's processes do not compile them again when PYTHONDONTWRITEBYTECODE is set.
    for package in ("pipeline", "transforms"):
        compileall.compile_dir(str(REPO / package), quiet=1)

    rows = _Rows()
    breakdown = None

    with tempfile.TemporaryDirectory() as tmp:
        # More runs, once per size: (row name, config file, workers)
        variants: list[tuple[str, str, int]] = []
        if args.light_metadata:
            variants.append(("storybeam, 1 worker, metadata_heuristics [title]", f"{tmp}/light.yaml", 1))
            Path(variants[-1][1]).write_text("extract:\n  metadata_heuristics: [title]\n")
        if args.batch_mb:
            name = f"storybeam, {{}} worker(s), batches of {args.batch_mb:g} MB"
            Path(f"{tmp}/batches.yaml").write_text(f"run:\n  batch_mb: {args.batch_mb}\n")
            variants.extend((name.format(w), f"{tmp}/batches.yaml", w) for w in args.workers)
        for size in args.sizes:
            build_warc(f"{tmp}/c{size}", size, files=args.files)
            pattern = f"{tmp}/c{size}-*.warc.gz"
            if args.breakdown and breakdown is None:
                breakdown = stage_breakdown(pattern, args.breakdown)
            for round_no in range(args.rounds):
                # The plain loop runs before and after the pipeline runs of a round and the
                # pipeline is compared with the mean of the two: this VM's speed drifts by
                # tens of percent over minutes, and bracketing cancels a steady drift.
                plain = [_with_cpu(run_plain, pattern)]
                piped = []
                for workers in args.workers:
                    out = f"{tmp}/out{size}-{workers}-{round_no}"
                    (n2, wall, run_secs, peak2), cpu_ms = _with_cpu(run_pipeline, pattern, workers, out)
                    if n2 != size:  # every page must be accounted for, whatever the worker count
                        print(f"MISMATCH: {size} pages in, summary.json counts {n2} inputs ({workers} workers)")
                    piped.append((workers, n2, wall, run_secs, peak2, cpu_ms))
                plain.append(_with_cpu(run_plain, pattern))
                plain_rate = statistics.mean(n / secs for (n, secs, _), _ in plain)
                for (n, secs, peak), cpu_ms in plain:
                    rows.add(size, "plain loop, 1 process", n, secs, n / secs / plain_rate, peak, cpu_ms)
                for workers, n2, wall, run_secs, peak2, cpu_ms in piped:
                    name = f"storybeam, {workers} worker(s)"
                    rows.add(size, name, n2, run_secs, n2 / run_secs / plain_rate, peak2, cpu_ms)
                    name = f"  same, {workers} worker(s), wall incl. interpreter + imports"
                    rows.add(size, name, n2, wall, n2 / wall / plain_rate, peak2, cpu_ms)
                if round_no == 0:  # once per size: for reference
                    (n2, secs2, peak2), cpu_ms = _with_cpu(run_plain, pattern, tuned=True)
                    name = "plain loop, storybeam's trafilatura speed-ups"
                    rows.add(size, name, n2, secs2, n2 / secs2 / plain_rate, peak2, cpu_ms)
                    if max(args.workers) > 1:
                        # What this machine gives two processes of the very same work: the
                        # ceiling for any 2-worker run here.
                        (n2, secs2, peak2), cpu_ms = _with_cpu(run_plain, pattern, processes=2)
                        name = "plain loop, 2 processes (machine ceiling)"
                        rows.add(size, name, n2, secs2, n2 / secs2 / plain_rate, peak2, cpu_ms)
                    for number, (name, config, workers) in enumerate(variants):
                        out = f"{tmp}/outv{size}-{number}"
                        (n2, wall, run_secs, peak2), cpu_ms = _with_cpu(run_pipeline, pattern, workers, out, config)
                        rows.add(size, name, n2, run_secs, n2 / run_secs / plain_rate, peak2, cpu_ms)
    rows.print(args.rounds)
    print(
        "vs plain: docs/s over the plain loop's docs/s of the same round (the mean of its run before and after the"
        " round's pipeline runs). Rows run once per size use that round's plain rate."
    )
    print("plain loop: fastwarc + trafilatura.extract(include_comments=False, include_tables=True, deduplicate=False);")
    print(
        "storybeam's trafilatura speed-ups (transforms/extract.py): a C element-class lookup for its parser,"
        " pages loaded without its whole-page regex scan and parsed as UTF-8 bytes,"
        " XPaths rewritten (regex tests guarded, name tests as unions), the element selectors evaluated in"
        " Python (transforms/fastxpath.py) and jusText's paragraphs made without SAX (transforms/fastjustext.py);"
        " same texts, stock trafilatura is the peer."
    )
    print(
        "storybeam secs: the run as reported by storybeam (graph construction, all stages, commit), no interpreter start."
    )
    print(
        "CPU ms/doc: user + system CPU of the whole process tree (interpreter start-up, imports and worker"
        " processes included), per document; less sensitive than docs/s to other load on the machine."
    )
    if breakdown:
        pipeline_total = sum(ms for name, ms in breakdown if not name.startswith("("))
        print(f"\nwhere the time goes (CPU ms per page, first {args.breakdown} pages of the first corpus):")
        for name, ms in breakdown:
            print(f"  {name:<60} {ms:7.2f}")
        print(f"  {'sum of the pipeline stages (no Beam, no writing)':<60} {pipeline_total:7.2f}")
        first = args.sizes[0]
        for workers in args.workers:
            found = rows.runs.get((first, f"storybeam, {workers} worker(s)"))
            if found:
                cpu_ms = statistics.median(f[4] for f in found)
                print(f"  {f'whole pipeline, {workers} worker(s) (table above, all {first} pages)':<60} {cpu_ms:7.2f}")
                print(f"  {'  the rest: Beam, runner, writing, processes, imports':<60} {cpu_ms - pipeline_total:7.2f}")


if __name__ == "__main__":
    main()
