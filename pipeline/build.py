"""The graph, read top to bottom as the story of one document:

    read -> (fetch) -> extract -> clean -> fingerprint -> topic -> window + cluster -> write

Every stage hands documents it cannot handle to a ``failed`` side output; all of them end in
``failures/`` so that ``inputs == articles + filtered + failed`` holds in summary.json.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from dataclasses import dataclass
from datetime import datetime

import apache_beam as beam

from pipeline.config import Config
from transforms.beamspeed import install as install_beam_speedups
from transforms.clean import HOST_BOILERPLATE, CleanText, host_state_bytes, load_host_state
from transforms.extract import ExtractMainText
from transforms.fingerprint import Fingerprint
from transforms.fsutil import stage_file
from transforms.progress import LogProgress
from transforms.sinks import SkipKnownArticles, WriteOutputs, partition_of
from transforms.sources import ReadDocuments
from transforms.stories import AssignTopics, GroupStories, load_topics

# The runner builds and translates the graph here (and on one worker runs every bundle in this
# process): ``transforms/__init__`` installs the caches only when Beam was imported before it,
# and the command line imports ``transforms`` (for its settings) first.
install_beam_speedups()


@dataclass(frozen=True)
class RunPlan:
    """What one run reads and where it writes, decided before the graph is built."""

    config: Config
    files: tuple[str, ...]  # expanded file URLs (warc/jsonl/text) or feed inputs (feeds)
    output: str
    run_id: str
    fetched_at: datetime
    poll_interval_s: float | None = None
    stop_after: int | None = None
    # article ids already in the output (appending runs); those articles are filtered
    known_ids: Set[str] = frozenset()  # a knownindex.HexSet when many
    # content_hash -> article_id of articles in the output (appending runs): a later exact copy
    # is marked duplicate_of that article
    known_hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # article_id -> story_id of those articles: a later copy joins that story
    known_stories: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # --resume: skip inputs the manifest lists, append to the output
    resume: bool = False
    # files whose last part (``files`` holds parts of them) this run reads: the manifest lists
    # them whole as well, once the run commits
    completes: tuple[str, ...] = ()


def read_documents(p: beam.Pipeline, plan: RunPlan):
    """PBegin -> (result with ``.ok`` (Document) and ``.failed`` (Failure), the source's
    staged state files for the sink's commit, or None)."""
    cfg = plan.config
    if cfg.run.source == "feeds":
        from transforms.feeds import ReadFeeds

        feeds = ReadFeeds(
            list(plan.files),
            cfg.fetch,
            cfg.feeds,
            poll_interval_s=plan.poll_interval_s,
            stop_after=plan.stop_after,
            output_root=plan.output,
            commit_token=plan.run_id,
        )
        result = p | "ReadFeeds" >> feeds
        return result, feeds.staged_state
    reader = ReadDocuments(cfg.run.source, list(plan.files), cfg.sources, plan.fetched_at)
    return p | "ReadDocuments" >> reader, None


HOST_STATE_FILE = "_state/hosts.json"


def _stage_host_state(_: None, learned: list, path: str, token: str) -> tuple[str, str]:
    """Saved + newly learned host boilerplate, staged for the sink's commit (run once)."""
    return stage_file(path, host_state_bytes(load_host_state(path), learned), token)


def build_pipeline(p: beam.Pipeline, plan: RunPlan):
    """Assemble the whole graph on ``p``; returns the one-element summary PCollection."""
    cfg = plan.config
    every = cfg.run.progress_interval_s
    read, source_state = read_documents(p, plan)
    documents = read.ok | "ProgressRead" >> LogProgress("documents read", every)
    extracted = documents | "ExtractMainText" >> ExtractMainText(cfg.extract)
    rules = cfg.clean
    if not rules.host_state_path:  # learned host boilerplate lives with the output by default
        rules = dataclasses.replace(rules, host_state_path=f"{plan.output.rstrip('/')}/{HOST_STATE_FILE}")
    cleaned = extracted.ok | "CleanText" >> CleanText(rules)
    fingerprinted = cleaned.ok | "Fingerprint" >> Fingerprint(cfg.fingerprint)
    fresh = fingerprinted | "SkipKnownArticles" >> SkipKnownArticles(plan.known_ids)
    with_topics = fresh.ok | "AssignTopics" >> AssignTopics(load_topics(cfg.stories.topics_file))
    grouping = GroupStories(
        cfg.stories,
        output_root=plan.output,
        fingerprint=cfg.fingerprint,
        commit_token=plan.run_id,
        known_hashes=plan.known_hashes,
        known_stories=plan.known_stories,
        # A run that replaces the output removes the articles of the stories kept in the
        # output's own state: linking to them would leave story rows and duplicate_of pointing
        # at articles that are gone. A state_path set apart is shared on purpose and kept.
        continue_state=cfg.sink.mode == "append" or bool(cfg.stories.state_path),
    )
    grouped = with_topics | "GroupStories" >> grouping

    failures = (
        read.failed,
        extracted.failed,
        cleaned.failed,
        fresh.failed,
        grouped["failed"],
    ) | "AllFailures" >> beam.Flatten()
    # Inputs are counted by a small mark made inside the reading stage (the sink's
    # MarkInputs): flattening the documents themselves would make the runner hold every
    # page's HTML a second time.
    inputs = (read.ok, read.failed)
    outputs = {
        "articles": grouped["articles"] | "ProgressArticles" >> LogProgress("articles", every),
        "stories": grouped["stories"],
        "failures": failures | "ProgressFailures" >> LogProgress("failed or filtered", every),
        "inputs": inputs,
        # counted before story grouping, so that the sink keys articles to files as they come
        # (repeated reads of one URL, dropped later, are counted too)
        "article_partitions": with_topics
        | "MarkArticlePartitions" >> beam.Map(lambda a, sink: partition_of("articles", a, sink), cfg.sink),
    }
    # State that says "done" (seen feed entries, known stories) is staged during the run and
    # moved into place by the sink's commit, before the manifest entry: a run that dies
    # before its commit leaves the state as it was.
    # (the learned lines as a side input of one step: a list combine would be two more
    # round trips of the local runner to its workers)
    host_state = (
        p
        | "StageHostBoilerplate" >> beam.Create([None])
        | "StageHostState"
        >> beam.Map(
            _stage_host_state, beam.pvalue.AsList(cleaned[HOST_BOILERPLATE]), rules.host_state_path, plan.run_id
        )
    )
    outputs["staged"] = tuple(pc for pc in (source_state, grouped.get("staged_state"), host_state) if pc is not None)
    manifest_inputs = (*plan.files, *plan.completes) if cfg.run.source != "feeds" else ()
    return outputs | "WriteOutputs" >> WriteOutputs(plan.output, plan.run_id, cfg.sink, manifest_inputs)
