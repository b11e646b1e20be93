"""The streaming graph: the batch stages between a polling source and a streaming sink.

    PollTicks -> PollFeedsStream -> ExtractMainText -> CleanText -> Fingerprint -> AssignTopics
      -> GateLateArticles -> WindowStories -> CommitStream
    every stage ── failed ──► CommitStream (failures/)

Only the source, the windowing/triggering and the sink differ from ``pipeline/build.py``; the
document stages are the same transforms with the same settings. ``python -m pipeline.main``
builds this graph with ``--streaming``, or for ``--source feeds`` with ``--poll-interval``
(a bounded run with ``--stop-after N``). On the local runner the graph runs on Beam's
Python direct runner (``BundleBasedDirectRunner``); on Dataflow, Flink or Spark the ticks
come from ``PeriodicImpulse``.
"""

from __future__ import annotations

import time

import apache_beam as beam

from pipeline.build import RunPlan
from pipeline.config import Config
from transforms.clean import CleanText
from transforms.extract import ExtractMainText
from transforms.fingerprint import Fingerprint
from transforms.stories import AssignTopics, load_topics
from transforms.streaming import (
    CommitStream,
    GateLateArticles,
    PollFeedsStream,
    PollTicks,
    StreamingSettings,
    WindowStories,
)

#: Seconds between polls when neither --poll-interval nor a feed's own interval says.
DEFAULT_POLL_INTERVAL_S = 300.0


def streaming_settings(cfg: Config) -> StreamingSettings:
    """The ``streaming`` config section (defaults until the loader knows the section)."""
    return getattr(cfg, "streaming", None) or StreamingSettings()


def wants_streaming(plan: RunPlan, streaming_flag: bool) -> bool:
    """--streaming, or feeds polled more than once on an interval (a bounded streaming run)."""
    return streaming_flag or (plan.config.run.source == "feeds" and plan.poll_interval_s is not None)


def is_local_runner(runner) -> bool:
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner

    return runner is None or isinstance(runner, BundleBasedDirectRunner) or runner in ("", "DirectRunner", "direct")


def read_stream(p: beam.Pipeline, plan: RunPlan, *, local: bool, start: float | None = None):
    """PBegin -> result with ``.ok`` (Document) and ``.failed`` (Failure), polling forever
    (or ``plan.stop_after`` times) every ``plan.poll_interval_s`` seconds."""
    cfg = plan.config
    if cfg.run.source != "feeds":
        raise ValueError(f"streaming reads feeds; --source {cfg.run.source} is a batch source (drop --streaming)")
    from transforms.feeds import resolve_inputs, state_path_of

    specs = resolve_inputs(list(plan.files))
    interval = plan.poll_interval_s or DEFAULT_POLL_INTERVAL_S
    ticks = p | "PollTicks" >> PollTicks(
        interval,
        plan.stop_after,
        local=local,
        start=time.time() if start is None else start,
        max_polls=streaming_settings(cfg).local_max_polls,
    )
    return ticks | "ReadFeeds" >> PollFeedsStream(specs, cfg.fetch, cfg.feeds, state_path_of(cfg.feeds, plan.output))


def process_articles(documents, cfg: Config):
    """PCollection[Document] -> (PCollection[Article] with topics, [failure PCollections]):
    the batch stages, unchanged."""
    extracted = documents | "ExtractMainText" >> ExtractMainText(cfg.extract)
    cleaned = extracted.ok | "CleanText" >> CleanText(cfg.clean)
    fingerprinted = cleaned.ok | "Fingerprint" >> Fingerprint(cfg.fingerprint)
    with_topics = fingerprinted | "AssignTopics" >> AssignTopics(load_topics(cfg.stories.topics_file))
    return with_topics, [extracted.failed, cleaned.failed]


def stories_and_sink(
    articles,
    failures: list,
    inputs,
    plan: RunPlan,
    settings: StreamingSettings | None = None,
    ticks=None,
):
    """PCollection[Article] (topics assigned) + failures + inputs (+ the poll ticks, so that a
    run that reads nothing new still commits a summary) -> written output; returns the
    PCollection of summaries (one per commit)."""
    from transforms.feeds import state_path_of

    cfg = plan.config
    settings = settings or streaming_settings(cfg)
    feed_state = None
    if cfg.run.source == "feeds":  # entries of committed rows are seen by later runs too
        feed_state = (state_path_of(cfg.feeds, plan.output), cfg.feeds.state_max_age_days * 86_400)
    gated = articles | "GateLateArticles" >> GateLateArticles(cfg.stories, settings)
    panes = gated.ok | "WindowStories" >> WindowStories(cfg.stories, cfg.fingerprint, settings)
    all_failures = (*failures, gated.failed) | "AllFailures" >> beam.Flatten()
    streams = {"panes": panes, "failures": all_failures, "inputs": inputs}
    if ticks is not None:
        streams["ticks"] = ticks
    return streams | "CommitStream" >> CommitStream(
        plan.output, plan.run_id, cfg.sink, cfg.stories, settings, cfg.fingerprint, feed_state
    )


def build_streaming_pipeline(p: beam.Pipeline, plan: RunPlan, *, local: bool = True, start: float | None = None):
    """Assemble the streaming graph on ``p``; returns the PCollection of commit summaries."""
    read = read_stream(p, plan, local=local, start=start)
    articles, failed = process_articles(read.ok, plan.config)
    inputs = (
        read.ok | "MarkDocuments" >> beam.Map(lambda _: 1),
        read.failed | "MarkReadFailures" >> beam.Map(lambda _: 1),
    ) | "AllInputs" >> beam.Flatten()
    return stories_and_sink(articles, [read.failed, *failed], inputs, plan, ticks=read.ticks)
