"""``python -m pipeline.main`` / ``storybeam``: parse flags, load config, build, run, report.

Exit status: 0 when the run finished; 2 for usage/config/input errors (one clear line, no
traceback); 3 when the share of failed documents exceeds ``run.max_failure_ratio``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.config import Config, ConfigError, load_config
from pipeline.options import CliArgs, UsageError, parse_args

if TYPE_CHECKING:
    from transforms.sinks import SinkSettings

LOG = logging.getLogger("storybeam")

EXIT_USAGE = 2
EXIT_TOO_MANY_FAILURES = 3

LOCAL_RUNNERS = (None, "", "DirectRunner", "FnApiRunner", "direct")


def new_run_id(now: datetime) -> str:
    """Sortable and unique: UTC time to the second plus 6 random hex digits."""
    return now.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def choose_runner(runner_name: str | None, streaming: bool):
    """The default local runner never tries to download Prism: batch runs on the FnApiRunner
    (honours --direct_num_workers / --direct_running_mode); streaming on the Python
    BundleBasedDirectRunner, which supports unbounded sources and TestStream."""
    if runner_name in LOCAL_RUNNERS:
        if streaming:
            from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

            return BundleBasedDirectRunner()
        from pipeline.workerpool import local_runner

        return local_runner()  # with --direct_running_mode=multi_processing: pre-started workers
    return runner_name


def apply_flags(cfg: Config, args: CliArgs) -> Config:
    """The config with the command line's overrides (--source, --input, --output,
    --allow-hosts). Raises UsageError when the run would have no input, or when --source
    changes the config's source without --input: the config's inputs belong to its own source
    (the bundled config lists a WARC, which --source text would read as one garbage article)."""
    if args.source and args.source != cfg.run.source and not args.inputs and cfg.run.inputs:
        raise UsageError(
            f"--source {args.source} needs --input: the inputs in {cfg.path} are for source {cfg.run.source}"
        )
    if args.source:
        cfg = cfg.replace("run", source=args.source)
    if args.inputs:
        cfg = cfg.replace("run", inputs=args.inputs)
    if args.output:
        cfg = cfg.replace("run", output=args.output)
    if args.allow_hosts:
        cfg = cfg.replace("fetch", allow_hosts=tuple(cfg.fetch.allow_hosts) + args.allow_hosts)
    if not cfg.run.inputs:
        raise UsageError("no input: give --input (or run.inputs in the config)")
    return cfg


def plan_run(argv: list[str]):
    """Flags + config -> (RunPlan, PipelineOptions, StandardOptions). Raises UsageError (also for a
    memory:// output that worker processes would not share), ConfigError or InputError."""
    import fsspec
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from pipeline.build import RunPlan
    from transforms.sources import default_fetched_at, expand_inputs

    args = parse_args(argv)
    cfg = apply_flags(load_config(args.config), args)
    if cfg.run.source == "feeds":
        from transforms.feeds import resolve_inputs

        try:
            resolve_inputs(list(cfg.run.inputs))
        except (OSError, ValueError) as err:
            raise UsageError(f"bad feed input: {err}") from None
        files = tuple(cfg.run.inputs)
        # Feeds are incremental: entries seen before are not fetched again, so a run adds to
        # the output instead of replacing it.
        cfg = cfg.replace("sink", mode="append")
    else:
        files = tuple(expand_inputs(cfg.run.inputs))
    try:
        from transforms.stories import load_topics

        load_topics(cfg.stories.topics_file)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{cfg.path}: stories.topics_file: {cfg.stories.topics_file}: {err}") from None
    output = cfg.run.output
    if "://" not in output:
        output = os.path.abspath(output)
    options = PipelineOptions(list(args.beam_args))
    standard = options.view_as(StandardOptions)
    if standard.streaming and cfg.run.source != "feeds":
        raise UsageError(f"--streaming reads feeds; --source {cfg.run.source} is a batch source (drop --streaming)")
    fetched_at = default_fetched_at()
    plan = RunPlan(
        config=cfg,
        files=files,
        output=output,
        run_id=new_run_id(fetched_at),
        fetched_at=fetched_at,
        poll_interval_s=args.poll_interval,
        stop_after=args.stop_after,
        resume=args.resume,
    )
    if fsspec.utils.get_protocol(output) == "memory" and not _in_this_process(plan, options):
        # Each process has its own memory:// file system: the workers' shards would vanish and
        # the commit step fail to find them, after all the work.
        raise UsageError(
            f"--output {output}: memory:// exists in this process only, and other processes run this pipeline "
            "(--direct_running_mode=multi_processing or a remote runner); use a local path or a shared store"
        )
    from apache_beam.options.pipeline_options import TypeOptions

    from pipeline.streaming import wants_streaming

    if not wants_streaming(plan, bool(standard.streaming)):
        # The batch graph declares no type hints and its coders do not depend on them (values
        # are pickled, keys are strings and tuples): Beam's inference of each step's output
        # type from its bytecode was half of building the graph (~0.15 s, before any stage).
        # The streaming graph declares the key-value types its stateful steps need: kept there.
        options.view_as(TypeOptions).pipeline_type_check = False
    return plan, options, standard


def _in_this_process(plan, options) -> bool:
    """Whether the whole pipeline runs in this process: the local runner in its default or
    multi_threading mode, or streaming (the BundleBasedDirectRunner is in-process)."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    from pipeline.streaming import wants_streaming

    standard = options.view_as(StandardOptions)
    if standard.runner not in LOCAL_RUNNERS:
        return False
    if wants_streaming(plan, bool(standard.streaming)):
        return True
    return options.view_as(DirectOptions).direct_running_mode != "multi_processing"


def read_summary(output: str) -> dict:
    import fsspec

    with fsspec.open(output.rstrip("/") + "/summary.json", "r") as handle:
        return json.load(handle)


def run_once(plan, options, standard) -> dict | None:
    """Build and run one pipeline; the summary it committed (None if not readable yet)."""
    import apache_beam as beam

    from pipeline.build import build_pipeline
    from pipeline.streaming import build_streaming_pipeline, is_local_runner, wants_streaming

    streaming = wants_streaming(plan, bool(standard.streaming))  # --streaming, or feeds + --poll-interval
    standard.streaming = streaming
    runner = choose_runner(standard.runner, streaming)
    pipeline = beam.Pipeline(runner=runner, options=options)
    if streaming:
        build_streaming_pipeline(pipeline, plan, local=is_local_runner(runner))
    else:
        build_pipeline(pipeline, plan)
    pipeline.run().wait_until_finish()
    try:
        return read_summary(plan.output)
    except (OSError, ValueError):  # a remote runner may still be writing
        return None


def batches_of(files: tuple[str, ...], size: int) -> list[tuple[str, ...]]:
    if size <= 0 or len(files) <= size:
        return [files]
    return [files[i : i + size] for i in range(0, len(files), size)]


def remaining_inputs(files: tuple[str, ...], done: set[str]) -> tuple[list[str], int]:
    """(inputs of ``files`` that no committed run processed, number of files wholly done).
    ``done`` holds the manifest's inputs: whole files, and parts (``input_part``) written by
    size-limited batches; the gaps a file's done parts leave are its remaining parts."""
    from transforms.sources import file_size, input_part, parse_input

    spans: dict[str, list[tuple[int, int]]] = {}
    for item in done:
        url, start, end = parse_input(item)
        if end is not None:
            spans.setdefault(url, []).append((start, end))
    remaining, finished = [], 0
    for url in files:
        size = file_size(url) if url in spans and url not in done else None
        gaps = _gaps(spans[url], size) if size is not None else None
        if url in done or gaps == []:
            finished += 1
        elif gaps is None:
            remaining.append(url)
        else:
            remaining.extend(input_part(url, start, end) for start, end in gaps)
    return remaining, finished


def _gaps(spans: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The byte ranges of [0, size) that no span covers."""
    gaps, at = [], 0
    for start, end in sorted(spans):
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    if at < size:
        gaps.append((at, size))
    return gaps


def plan_batches(inputs: list[str], source: str, batch_files: int, batch_mb: float) -> list[tuple[str, ...]]:
    """Inputs -> batches, one pipeline run each: ``batch_files`` inputs at most, and with
    ``batch_mb`` at most that many MB of input, a gzipped WARC larger than that being cut into
    parts (``input_parts``) that go to batches of their own. Input order is kept."""
    from transforms.sources import file_size, input_parts, parse_input

    limit = int(batch_mb * (1 << 20))
    if source == "feeds":
        return [tuple(inputs)]
    if limit <= 0:
        return batches_of(tuple(inputs), batch_files)
    sized: list[tuple[str, int]] = []
    for item in inputs:
        url, start, end = parse_input(item)
        size = (file_size(url) or 0) if end is None else end
        sized.extend((part, _span(part, size)) for part in input_parts(item, source, size, limit))
    batches: list[tuple[str, ...]] = []
    current: list[str] = []
    used = 0
    for item, size in sized:
        if current and (used + size > limit or (batch_files and len(current) >= batch_files)):
            batches.append(tuple(current))
            current, used = [], 0
        current.append(item)
        used += size
    if current:
        batches.append(tuple(current))
    return batches or [()]


def _completed_files(batches: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Per batch, the files whose last remaining part it holds: once it commits, every part of
    them is done (earlier parts by earlier batches or runs), and the manifest says so."""
    from transforms.sources import parse_input

    last: dict[str, int] = {}
    for i, batch in enumerate(batches):
        for item in batch:
            url, _, end = parse_input(item)
            if end is not None:
                last[url] = i
    out: list[list[str]] = [[] for _ in batches]
    for url, i in last.items():
        out[i].append(url)
    return [tuple(urls) for urls in out]


def _span(item: str, size: int) -> int:
    from transforms.sources import parse_input

    _, start, end = parse_input(item)
    return (size if end is None else end) - start


def merge_summaries(parts: list[dict]) -> dict:
    from transforms.sinks import SUMMARY_KEYS

    total: dict = {key: sum(p.get(key, 0) for p in parts) for key in (*SUMMARY_KEYS, "unaccounted")}
    reasons: dict[str, int] = {}
    for part in parts:
        for key, value in part.get("failures_by_reason", {}).items():
            reasons[key] = reasons.get(key, 0) + value
    total["failures_by_reason"] = dict(sorted(reasons.items()))
    total["batches"] = [p.get("run_id") for p in parts]
    return total


#: the run id of one batch of an invocation: "<invocation run id>-b<batch>"
_BATCH_SUFFIX = re.compile(r"-b\d{4}$")


def invocation_summary(output: str, parts: list[dict], skipped: int = 0, sink: SinkSettings | None = None) -> dict:
    """summary.json of an invocation made of several committed runs (batches, or a run that
    appends), written after each of them: the invocation's counts so far (``stories``: the
    distinct stories of its articles), the whole output's rows (``articles_in_output``,
    ``stories_in_output``), with the story rows of several runs merged first (written as
    ``sink``, the run's ``SinkSettings``, says: its compression)."""
    from transforms.sinks import SinkSettings, compact_stories, output_totals, runs_totals, write_summary

    total = merge_summaries(parts)
    runs = set(total["batches"])
    total["stories"] = runs_totals(output, runs)["stories"]
    compact_stories(output, parts[-1]["run_id"], sink or SinkSettings())
    total.update(output_totals(output))
    total["skipped_inputs"] = skipped
    total["run_id"] = parts[-1]["run_id"]
    write_summary(output, parts[-1]["run_id"], total)
    return total


def finish_interrupted(output: str, sink: SinkSettings | None = None) -> None:
    """--resume: finish the last invocation when it was killed after a commit and before its
    summary (summary.json names an older run, or one batch's own counts): its story rows are
    merged and its summary is made again from the manifest and its runs' files."""
    from transforms.sinks import SinkSettings, compact_stories, manifest_entries, runs_totals

    entries = manifest_entries(output)
    if not entries:
        return
    last = entries[-1]["run_id"]
    prefix = _BATCH_SUFFIX.sub("", last)
    try:
        summary = read_summary(output)
    except (OSError, ValueError):  # missing or cut short
        summary = {}
    if summary.get("run_id") == last and ("batches" in summary or prefix == last):
        compact_stories(output, last, sink or SinkSettings())  # an appending run killed before merging
        return
    mine = [e for e in entries if _BATCH_SUFFIX.sub("", e["run_id"]) == prefix]
    parts = []
    for entry in mine:
        totals = runs_totals(output, {entry["run_id"]})
        parts.append({**entry["counts"], "failures_by_reason": totals["failures_by_reason"], "run_id": entry["run_id"]})
    LOG.info("resume: finishing run %s (%d committed batch(es)): story rows merged, summary written", prefix, len(mine))
    invocation_summary(output, parts, sink=sink)


def execute(plan, options, standard) -> dict | None:
    """Run the plan: one pipeline, or one per batch of inputs (``run.batch_files``,
    ``run.batch_mb``: ``plan_batches``), each committed on its own so that ``--resume`` can
    continue after an interruption."""
    import dataclasses

    from pipeline.streaming import wants_streaming
    from transforms.knownindex import HexMap, HexSet
    from transforms.sinks import existing_articles, read_manifest, remove_orphans

    if wants_streaming(plan, bool(standard.streaming)):  # its sink commits and summarises per pane
        return run_once(plan, options, standard)
    cfg = plan.config
    files = list(plan.files)
    skipped = 0
    if plan.resume:
        done, runs = read_manifest(plan.output)
        removed = remove_orphans(plan.output, runs)
        if removed:
            LOG.info("resume: removed %d file(s) of an interrupted commit", len(removed))
        finish_interrupted(plan.output, plan.config.sink)
        files, skipped = remaining_inputs(plan.files, done)
        LOG.info("resume: %d input file(s) already processed, %d input(s) to go", skipped, len(files))
        if not files:
            return {"nothing_to_do": True, "skipped_inputs": skipped}
    batches = plan_batches(files, cfg.run.source, cfg.run.batch_files, cfg.run.batch_mb)
    completes = _completed_files(batches)
    started = time.monotonic()
    parts: list[dict] = []
    summary = None
    # Article ids already in the output: read whole once, then only each new batch's files.
    appending = plan.resume or cfg.sink.mode == "append"
    known, hashes, story_of = existing_articles(plan.output) if appending else (HexSet(), HexMap(), HexMap())
    # one run that replaces the output: its own summary is the invocation's
    several = len(batches) > 1 or appending
    for i, batch in enumerate(batches):
        mode = "append" if plan.resume or i > 0 else cfg.sink.mode
        run_id = plan.run_id if len(batches) == 1 else f"{plan.run_id}-b{i:04d}"
        step = dataclasses.replace(
            plan,
            files=batch,
            completes=completes[i],
            run_id=run_id,
            known_ids=known if mode == "append" else frozenset(),
            known_hashes=hashes if mode == "append" else {},
            known_stories=story_of if mode == "append" else {},
            config=cfg.replace("sink", mode=mode),
        )
        if mode == "append" and len(known):
            step = _with_stored_known(step)
        if len(batches) > 1:
            span = batch[0] if len(batch) == 1 else f"{batch[0]} ... {batch[-1]}"
            LOG.info("batch %d/%d: %d input(s): %s", i + 1, len(batches), len(batch), span)
        summary = run_once(step, options, standard)
        if summary is None:
            return None
        if i + 1 < len(batches):
            ids, new_hashes, new_stories = existing_articles(plan.output, {run_id})
            known, hashes = known | ids, hashes.first_wins(new_hashes)  # the earlier run's article stays
            story_of = story_of.first_wins(new_stories)
        parts.append(summary)
        if several:  # readers between batches see one row per story and the counts so far
            summary = invocation_summary(plan.output, parts, skipped, cfg.sink)
        if len(batches) > 1:
            LOG.info("%s", batch_progress(i + 1, len(batches), summary, time.monotonic() - started))
    return summary


def batch_progress(done: int, total: int, summary: dict, elapsed: float) -> str:
    """The line logged after each committed batch of a backfill: counts of the invocation so
    far, its rate, and the time left if the remaining batches take as long as the done ones
    (``run.batch_mb`` makes batches of about equal input)."""
    inputs = summary.get("inputs", 0)
    counts = ", ".join(f"{key} {summary.get(key, 0)}" for key in ("articles", "duplicates", "filtered", "failed"))
    line = f"batch {done}/{total} committed: {inputs} documents so far ({counts}) in {elapsed:.0f}s"
    line += f", {inputs / elapsed:.1f} docs/s" if elapsed > 0 else ""
    if done < total:
        left = elapsed / done * (total - done)
        line += f"; about {left / 60:.0f} min left" if left >= 90 else f"; about {left:.0f}s left"
    return line


def _with_stored_known(step):
    """The step with its known articles written under ``<output>/_tmp/<run>/known/`` (removed
    by its commit, or by ``--resume`` as an orphan) and pickled as those files' URLs: the DoFns
    that carry them then stay small (``knownindex.store``)."""
    import dataclasses

    from transforms.knownindex import store

    folder = f"{step.output.rstrip('/')}/_tmp/{step.run_id}/known"
    return dataclasses.replace(
        step,
        known_ids=store(f"{folder}/ids.npz", step.known_ids),
        known_hashes=store(f"{folder}/hashes.npz", step.known_hashes),
        known_stories=store(f"{folder}/stories.npz", step.known_stories),
    )


def run(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("apache_beam", "trafilatura", "urllib3", "htmldate", "courlan", "fsspec", "gcsfs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        from pipeline.options import make_parser

        make_parser().print_help()
        return 0
    if "--version" in argv:
        from pipeline.options import versions

        print(versions())
        return 0
    from pipeline import workerpool

    # multi_processing workers import Beam and storybeam in the pool while this process does
    workerpool.start(argv)
    try:
        return _run(argv)
    finally:
        workerpool.stop()


def _run(argv: list[str]) -> int:
    from transforms.fsutil import OutputError, check_output
    from transforms.sources import InputError

    try:
        plan, options, standard = plan_run(argv)
        # Before any work: an output that cannot be written would otherwise fail the commit
        # step, after the whole run, with a traceback.
        check_output(plan.output)
    except (UsageError, ConfigError, InputError, OutputError) as err:
        print(f"storybeam: error: {err}", file=sys.stderr)
        return EXIT_USAGE

    started = time.monotonic()
    LOG.info("run %s: %s input(s) from %s -> %s", plan.run_id, len(plan.files), plan.config.run.source, plan.output)
    summary = execute(plan, options, standard)
    elapsed = time.monotonic() - started
    if summary is None:
        print(f"storybeam: run finished; no summary.json yet under {plan.output} (remote runner still writing?)")
        return 0
    if summary.get("nothing_to_do"):
        print(f"storybeam: nothing to do: all {summary['skipped_inputs']} input(s) were processed by earlier runs")
        return 0
    counts = ", ".join(
        f"{k} {summary.get(k, 0)}" for k in ("inputs", "articles", "duplicates", "stories", "filtered", "failed")
    )
    rate = summary.get("inputs", 0) / elapsed if elapsed > 0 else 0.0
    print(f"storybeam: wrote {plan.output} in {elapsed:.1f}s ({rate:.1f} docs/s): {counts}")
    if summary.get("failures_by_reason"):
        top = sorted(summary["failures_by_reason"].items(), key=lambda kv: -kv[1])[:8]
        print("storybeam: failures/filtered by reason: " + ", ".join(f"{k} {v}" for k, v in top))
    inputs = summary.get("inputs", 0)
    ratio = summary.get("failed", 0) / inputs if inputs else 0.0
    if ratio > plan.config.run.max_failure_ratio:
        print(
            f"storybeam: error: {summary.get('failed', 0)} of {inputs} documents failed ({ratio:.0%}), "
            f"more than run.max_failure_ratio {plan.config.run.max_failure_ratio:.0%}; see {plan.output}/failures/",
            file=sys.stderr,
        )
        return EXIT_TOO_MANY_FAILURES
    return 0


def main() -> None:
    from pipeline import workerpool

    # The command line only: run() called from other code leaves that process's imports alone
    # and starts its extraction children when the first page comes.
    workerpool.prestart_extraction(sys.argv[1:])
    workerpool.skip_optional_beam(sys.argv[1:])
    sys.exit(run())


if __name__ == "__main__":
    main()
