"""Streaming pieces: periodic polling, the late-data policy, event-time story windows and a
streaming-safe Parquet sink. The document stages (extract, clean, fingerprint, topics) are
the batch ones; only the source, the windowing/triggering and the sink differ.

    PollTicks          one tick every poll interval (PeriodicImpulse; locally a scripted
                       stream of ticks, see ``PollTicks``)
    PollFeedsStream    tick -> per-feed stateful poll (seen entries with a time-to-live)
                       -> article page fetch -> Document | Failure
    ... ExtractMainText -> CleanText -> Fingerprint -> AssignTopics (unchanged) ...
    GateLateArticles   event time = published (else fetched); an article whose window has
                       expired (window end + allowed lateness passed by the watermark) is a
                       Failure(stage 'late', reason 'dropped_late'), never a silent drop
    WindowStories      FixedWindows(window_hours) per topic, early panes, one late pane per
                       late article, accumulating: every pane re-clusters the whole window
    CommitStream       one serial committer: links pane clusters to stories, writes each new
                       article exactly once, rewrites the story rows it changed, and commits
                       files with temp name -> checkpoint -> rename -> summary.json

Late policy: an article that arrives after its window fired but within the allowed lateness
joins its window; the late pane re-clusters the window, the cluster keeps its story id
(``stories.link_clusters`` follows the shared article ids) and that story's row is
rewritten in place, so ``stories/`` keeps exactly one row per story. Past the allowed
lateness the article goes to ``failures/`` with stage ``late`` and reason ``dropped_late``.

Output layout (same as batch, see CONTRACT.md):

    articles/date=YYYY-MM-DD/part-<window>-<run>-<seq>-<shard>.parquet   one per window, pane, shard
    stories/part-<shard>.parquet        one row per story; replaced whole (temp, rename) on update
    failures/part-<run>-<seq>-<shard>.parquet
    summary.json                        counts of this run + per-window summaries, per commit
    _state/stream.json                  checkpoint: stories, written ids, files being committed
    _state/feeds.json                   seen feed entries (shared with batch runs), after each commit
    _tmp/<run>/<seq>/...                files being written (readers ignore ``_`` paths)

Restart safety: a commit writes its files under ``_tmp``, then the checkpoint (which lists
the pending renames and already contains the new state), then renames. A new job reads the
checkpoint first and finishes any pending renames, so no committed file is lost, and articles
already written are recognised by id and not written again. A retried bundle writes the same
names (run id + commit sequence from Beam state) with the same rows.
"""

# Beam declares state and timer parameters as argument defaults (DoFn.StateParam(...)).
# ruff: noqa: B008

from __future__ import annotations

import json
import logging
import posixpath
import time
import typing
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import apache_beam as beam
import fsspec
import pyarrow.parquet as pq
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger as tr
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    CombiningValueStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Duration

from transforms import records
from transforms.fingerprint import FingerprintSettings
from transforms.fsutil import move
from transforms.records import FILTER_STAGE, Article, Failure, Story
from transforms.schemas import SCHEMAS
from transforms.sinks import KINDS, SinkSettings, partition_of, shard_of, write_table
from transforms.stories import (
    StorySettings,
    StoryState,
    cluster_window,
    link_clusters,
    text_profile,
    window_start,
    with_detected_language,
    with_near_copy,
)

LOG = logging.getLogger(__name__)

LATE_STAGE = "late"
DROPPED_LATE = "dropped_late"
CHECKPOINT = "_state/stream.json"
#: Type hint of keyed elements: str keys get a deterministic coder for stateful DoFns.
KeyedAny = typing.Tuple[str, typing.Any]  # noqa: UP006 - Beam wants typing generics
_COMMIT_KEY = "stream"


@dataclass(frozen=True)
class StreamingSettings:
    """Streaming behaviour (section ``streaming`` of the config)."""

    # Hours an article may arrive after its event-time window closed (watermark past the
    # window end) and still join it. Feeds list entries for a day or two, so 24 h lets a
    # first poll keep yesterday's backlog; older entries are 'dropped_late' failures.
    allowed_lateness_hours: float = 24.0
    # Early panes: 0 fires one pane per bundle of new articles (each poll on the local
    # runner); > 0 fires at most one early pane per this many seconds of processing time,
    # which keeps files larger on distributed runners.
    early_firing_s: float = 0.0
    # Failures are written with the next pane, or after this many seconds of event time.
    failure_flush_s: float = 60.0
    # Article ids written are remembered this long (days) to write each article once
    # across panes and restarts (late panes repeat the whole window).
    written_ttl_days: float = 14.0
    # Per-window summaries kept in summary.json (the most recent windows).
    window_summaries: int = 48
    # Local runner without --stop-after: polls before the run ends by itself.
    local_max_polls: int = 10_000

    def __post_init__(self) -> None:
        if self.allowed_lateness_hours < 0:
            raise ValueError("allowed_lateness_hours: must not be negative")
        if self.early_firing_s < 0:
            raise ValueError("early_firing_s: must not be negative")
        if self.failure_flush_s <= 0:
            raise ValueError("failure_flush_s: must be positive")
        if self.written_ttl_days <= 0:
            raise ValueError("written_ttl_days: must be positive")
        if self.window_summaries < 1:
            raise ValueError("window_summaries: must be at least 1")
        if self.local_max_polls < 1:
            raise ValueError("local_max_polls: must be at least 1")


def _counter(name: str):
    return Metrics.counter(records.METRICS_NAMESPACE, name)


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


# --------------------------------------------------------------------------- event time


def window_bounds(event_s: float, window_s: float) -> tuple[float, float]:
    """The fixed event-time window [start, end) holding ``event_s`` (epoch seconds)."""
    start = window_start(event_s, window_s)
    return start, start + window_s


def window_expiry(event_s: float, window_s: float, lateness_s: float) -> float:
    """Watermark at which the window of ``event_s`` stops taking late articles."""
    return window_bounds(event_s, window_s)[1] + lateness_s


def late_failure(
    article: Article, window_s: float, lateness_s: float, closed_at: float, *, read_late: bool = False
) -> Failure:
    """The row of an article dropped as late (counted as filtered: dropped by policy).
    ``closed_at``: the watermark that closed the window, or with ``read_late`` its expiry."""
    start, end = window_bounds(article.event_time.timestamp(), window_s)
    closed = (
        f"closed at {_ts(closed_at).isoformat()}" if read_late else f"closed at watermark {_ts(closed_at).isoformat()}"
    )
    read = f", before the article was read at {article.fetched_at.isoformat()}" if read_late else ""
    return Failure(
        url=article.url,
        stage=LATE_STAGE,
        reason=DROPPED_LATE,
        detail=(
            f"event time {article.event_time.isoformat()} in window {_ts(start).isoformat()}"
            f"..{_ts(end).isoformat()}, {closed} (allowed lateness {lateness_s / 3600:g} h){read}"
        ),
        at=article.fetched_at,
    )


def is_read_late(article: Article, window_s: float, lateness_s: float) -> bool:
    """Was the article read after its window stopped taking late articles? The watermark
    follows the poll ticks, i.e. the wall clock, so such an article (an old entry on a
    feed's first poll) is behind the watermark already: the grouping would drop it without
    a trace, before any timer of the gate has fired for its window."""
    return window_expiry(article.event_time.timestamp(), window_s, lateness_s) <= article.fetched_at.timestamp()


class _LateGateFn(beam.DoFn):
    """(topic, Article) in the global window -> the same, or a tagged late Failure.

    Beam drops data behind an expired window silently inside the grouping; this gate makes
    the decision first, in the open, with one event-time timer per key at the earliest
    pending window expiry. When it fires the watermark has passed that expiry, and every
    later article of that window (or an earlier one) is dropped_late. So is an article read
    after its window's expiry (``is_read_late``), which no timer of this key may cover yet."""

    CLOSED = ReadModifyWriteStateSpec("closed_before", PickleCoder())
    PENDING = ReadModifyWriteStateSpec("pending_expiries", PickleCoder())
    EXPIRY = TimerSpec("expiry", TimeDomain.WATERMARK)

    def __init__(self, window_s: float, lateness_s: float):
        self._window_s, self._lateness_s = window_s, lateness_s

    def process(
        self,
        element,
        closed=beam.DoFn.StateParam(CLOSED),
        pending=beam.DoFn.StateParam(PENDING),
        expiry_timer=beam.DoFn.TimerParam(EXPIRY),
    ):
        _, article = element
        expiry = window_expiry(article.event_time.timestamp(), self._window_s, self._lateness_s)
        closed_before = closed.read()
        late = None
        if is_read_late(article, self._window_s, self._lateness_s):
            late = late_failure(article, self._window_s, self._lateness_s, expiry, read_late=True)
        elif closed_before is not None and expiry <= closed_before:
            late = late_failure(article, self._window_s, self._lateness_s, closed_before)
        if late is not None:
            _counter(f"{LATE_STAGE}_{DROPPED_LATE}").inc()
            yield beam.pvalue.TaggedOutput(records.FAILED, late)
            return
        waiting = set(pending.read() or ())
        if expiry not in waiting:
            waiting.add(expiry)
            pending.write(sorted(waiting))
            expiry_timer.set(min(waiting))
        yield element

    @on_timer(EXPIRY)
    def expire(
        self,
        fired=beam.DoFn.TimestampParam,
        closed=beam.DoFn.StateParam(CLOSED),
        pending=beam.DoFn.StateParam(PENDING),
        expiry_timer=beam.DoFn.TimerParam(EXPIRY),
    ):
        now = float(fired)
        closed.write(max(closed.read() or now, now))
        rest = [e for e in (pending.read() or ()) if e > now]
        pending.write(rest)
        if rest:
            expiry_timer.set(min(rest))


class GateLateArticles(beam.PTransform):
    """PCollection[Article] -> ``.ok``: PCollection[(topic, Article)] stamped with the event
    time, ``.failed``: PCollection[Failure] (stage 'late', reason 'dropped_late')."""

    def __init__(self, stories: StorySettings, settings: StreamingSettings):
        super().__init__()
        self._window_s = stories.window_hours * 3600.0
        self._lateness_s = settings.allowed_lateness_hours * 3600.0

    def expand(self, articles):
        return (
            articles
            | "StampEventTime" >> beam.Map(lambda a: beam.window.TimestampedValue(a, a.event_time.timestamp()))
            | "KeyByTopic" >> beam.Map(lambda a: (a.topic, a)).with_output_types(KeyedAny)
            | "LateGate"
            >> beam.ParDo(_LateGateFn(self._window_s, self._lateness_s))
            .with_input_types(KeyedAny)
            .with_output_types(KeyedAny)
            .with_outputs(records.FAILED, main="ok")
        )


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class ClusterPane:
    """One firing of one (topic, window): the clusters of every article the window holds."""

    topic: str
    window_start: datetime
    window_end: datetime
    pane_index: int
    timing: str  # early, on_time, late
    clusters: tuple  # stories._WindowCluster


_TIMING = {0: "early", 1: "on_time", 2: "late"}


def story_windowing(stories: StorySettings, settings: StreamingSettings) -> beam.WindowInto:
    """FixedWindows(window_hours) with early panes, one late pane per late bundle and
    accumulation, so each pane sees the whole window. The grouping keeps one window more than
    the gate's allowed lateness: the gate decides what is late, the grouping never drops
    what the gate let through."""
    window_s = stories.window_hours * 3600
    early = (
        tr.AfterCount(1)
        if settings.early_firing_s == 0
        else tr.AfterProcessingTime(max(1, round(settings.early_firing_s)))
    )  # the runner API wants whole seconds
    return beam.WindowInto(
        beam.window.FixedWindows(window_s),
        trigger=tr.AfterWatermark(early=early, late=tr.AfterCount(1)),
        accumulation_mode=tr.AccumulationMode.ACCUMULATING,
        allowed_lateness=Duration(seconds=int(settings.allowed_lateness_hours * 3600 + window_s)),
    )


class _ClusterPaneFn(beam.DoFn):
    def __init__(self, stories: StorySettings, fingerprint: FingerprintSettings):
        self._stories, self._fingerprint = stories, fingerprint

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        topic, articles = element
        start, end = _ts(float(window.start)), _ts(float(window.end))
        timing = _TIMING.get(int(pane.timing), "unknown")
        _counter(f"stream_pane_{timing}").inc()
        languages = self._stories.languages
        articles = [with_detected_language(a, text_profile(a, languages)) for a in articles]
        clusters = cluster_window(topic, articles, start, end, self._stories, self._fingerprint)
        yield ClusterPane(topic, start, end, int(pane.index), timing, tuple(clusters))


class WindowStories(beam.PTransform):
    """PCollection[(topic, Article)] (event-time stamped) -> PCollection[ClusterPane] in the
    global window, one per firing of each (topic, window)."""

    def __init__(
        self,
        stories: StorySettings,
        fingerprint: FingerprintSettings,
        settings: StreamingSettings,
    ):
        super().__init__()
        self._stories, self._fingerprint, self._settings = (
            stories,
            fingerprint,
            settings,
        )

    def expand(self, keyed):
        return (
            keyed
            | "WindowByEventTime" >> story_windowing(self._stories, self._settings)
            | "GroupByTopic" >> beam.GroupByKey()
            | "ClusterWindow" >> beam.ParDo(_ClusterPaneFn(self._stories, self._fingerprint))
            | "GlobalWindow" >> beam.WindowInto(beam.window.GlobalWindows())
        )


# --------------------------------------------------------------------------- commit state


@dataclass
class StreamState:
    """What the committer remembers (Beam state; mirrored in ``_state/stream.json``)."""

    run_id: str = ""
    seq: int = 0
    stories: dict[str, StoryState] = field(default_factory=dict)
    written: dict[str, float] = field(default_factory=dict)  # article id -> when written
    accounted: dict[str, float] = field(default_factory=dict)  # input key -> when counted
    counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    story_ids: set[str] = field(default_factory=set)  # stories written by this run
    windows: dict[str, dict[str, Any]] = field(default_factory=dict)
    window_story_ids: dict[str, set[str]] = field(default_factory=dict)

    def to_json(self, pending: Sequence[tuple[str, str]]) -> dict:
        return {
            "version": 1,
            "run_id": self.run_id,
            "seq": self.seq,
            "stories": [json.loads(s.to_json()) for s in sorted(self.stories.values(), key=lambda s: s.story_id)],
            "written": self.written,
            "accounted": self.accounted,
            "pending": [list(p) for p in pending],
        }

    @classmethod
    def from_json(cls, data: dict, run_id: str) -> tuple[StreamState, list[tuple[str, str]]]:
        state = cls(run_id=run_id)
        if not isinstance(data, dict) or data.get("version") != 1:
            return state, []
        state.stories = {
            s.story_id: s
            for s in (
                StoryState.from_json(json.dumps(row, sort_keys=True, ensure_ascii=False))
                for row in data.get("stories", [])
            )
        }
        state.written = {str(k): float(v) for k, v in (data.get("written") or {}).items()}
        state.accounted = {str(k): float(v) for k, v in (data.get("accounted") or {}).items()}
        if data.get("run_id") == run_id:  # a retried or resumed commit of this very run
            state.seq = int(data.get("seq", 0))
        return state, [(str(a), str(b)) for a, b in data.get("pending", [])]

    def forget_before(self, horizon: float) -> None:
        self.written = {k: t for k, t in self.written.items() if t >= horizon}
        self.accounted = {k: t for k, t in self.accounted.items() if t >= horizon}


def input_key(article: Article) -> str:
    """One read of one document: the same page read twice has two keys, one pane repeating
    an earlier pane's articles does not."""
    return f"{article.url}\x1f{article.fetched_at.isoformat()}"


def _duplicate(article: Article, detail: str) -> Failure:
    _counter("filter_duplicate_url").inc()
    return Failure(article.url, FILTER_STAGE, "duplicate_url", detail, article.fetched_at)


@dataclass
class PanePlan:
    articles: list[Article]
    stories: list[Story]
    failures: list[Failure]


def plan_pane(
    state: StreamState,
    pane: ClusterPane,
    stories: StorySettings,
    now: float,
    fingerprint: FingerprintSettings | None = None,
) -> PanePlan:
    """The pure core of a pane commit: link the pane's clusters to the known stories (near
    copies of articles of earlier panes are found there), pick the articles not written
    before (each input is accounted for once, whatever the number of panes that repeat it)
    and the story rows that changed. Updates ``state``."""
    summaries = [c.summary for c in pane.clusters]
    assignment, touched, kept, near = link_clusters(
        summaries, list(state.stories.values()), stories, fingerprint=fingerprint
    )
    state.stories = {s.story_id: s for s in kept}
    out = PanePlan([], [s.to_story() for s in touched], [])
    for cluster in pane.clusters:
        story_id = assignment[cluster.summary.key]
        for article in (*cluster.articles, *cluster.dropped):
            key = input_key(article)
            if key in state.accounted:
                continue
            state.accounted[key] = now
            if article.article_id in state.written:
                out.failures.append(_duplicate(article, f"article {article.article_id} was already written"))
            else:
                state.written[article.article_id] = now
                out.articles.append(records.replace(with_near_copy(article, near), story_id=story_id))
    return out


def count_rows(state: StreamState, plan: PanePlan, pane: ClusterPane | None) -> None:
    counts = state.counts
    for article in plan.articles:
        counts["articles"] = counts.get("articles", 0) + 1
        if article.duplicate_of:
            counts["duplicates"] = counts.get("duplicates", 0) + 1
    for failure in plan.failures:
        # a late article is dropped by policy, not failed: it does not count toward
        # run.max_failure_ratio (a first poll of feeds with old entries is not an error)
        kind = "filtered" if failure.stage in (FILTER_STAGE, LATE_STAGE) else "failed"
        counts[kind] = counts.get(kind, 0) + 1
        reason = f"{failure.stage}/{failure.reason}"
        state.reasons[reason] = state.reasons.get(reason, 0) + 1
    state.story_ids.update(s.story_id for s in plan.stories)
    counts["stories"] = len(state.story_ids)
    if pane is not None:
        key = pane.window_start.isoformat()
        window = state.windows.setdefault(
            key,
            {
                "window_end": pane.window_end.isoformat(),
                "topics": [],
                "articles": 0,
                "late_articles": 0,
                "panes": 0,
            },
        )
        window["panes"] += 1
        window["articles"] += len(plan.articles)
        if pane.timing == "late":
            window["late_articles"] += len(plan.articles)
        window["last_timing"] = pane.timing
        window["topics"] = sorted(set(window["topics"]) | {pane.topic})
        seen = state.window_story_ids.setdefault(key, set())
        seen.update(s.story_id for s in plan.stories)
        window["stories"] = len(seen)


def summary_of(state: StreamState, inputs: int, keep_windows: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        k: state.counts.get(k, 0) for k in ("articles", "duplicates", "stories", "filtered", "failed")
    }
    summary["inputs"] = inputs
    summary["unaccounted"] = inputs - summary["articles"] - summary["filtered"] - summary["failed"]  # still in flight
    summary["failures_by_reason"] = dict(sorted(state.reasons.items()))
    summary["run_id"] = state.run_id
    summary["mode"] = "streaming"
    summary["commits"] = state.seq
    recent = sorted(state.windows)[-keep_windows:]
    state.windows = {k: state.windows[k] for k in recent}
    state.window_story_ids = {k: v for k, v in state.window_story_ids.items() if k in state.windows}
    summary["windows"] = {k: state.windows[k] for k in recent}
    return summary


# --------------------------------------------------------------------------- files


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M")


class StreamFiles:
    """The file side of the commit protocol, on any fsspec filesystem."""

    def __init__(self, root: str, run_id: str, sink: SinkSettings):
        self.root, self.run_id, self.sink = root, run_id, sink
        self.fs, self.base = fsspec.core.url_to_fs(root)
        self.base = self.base.rstrip("/")

    def path(self, *parts: str) -> str:
        return posixpath.join(self.base, *[p for p in parts if p])

    def load_checkpoint(self) -> dict | None:
        path = self.path(CHECKPOINT)
        if not self.fs.exists(path):
            return None
        try:
            with self.fs.open(path, "r", encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as err:
            LOG.warning("stream checkpoint %s unreadable (%s); starting afresh", path, err)
            return None

    def roll_forward(self, pending: Iterable[tuple[str, str]]) -> int:
        """Finish the renames of a commit whose checkpoint was written (restart recovery)."""
        done = 0
        for tmp, final in pending:
            if self.fs.exists(tmp):
                self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                move(self.fs, tmp, final)
                done += 1
        return done

    def _write(self, path: str, kind: str, rows: list[Any]) -> None:
        write_table(self.fs, path, kind, rows, self.sink.compression)

    def stage(self, seq: int, plan: PanePlan, pane: ClusterPane | None) -> list[tuple[str, str]]:
        """Write this commit's files under _tmp -> [(tmp, final)]."""
        tmp_root = self.path("_tmp", self.run_id, f"{seq:06d}")
        groups: dict[tuple[str, str, int], list[Any]] = defaultdict(list)
        for kind, rows in (("articles", plan.articles), ("failures", plan.failures)):
            partitions = [partition_of(kind, row, self.sink) for row in rows]
            sizes = Counter(partitions)
            for row, partition in zip(rows, partitions, strict=True):
                groups[kind, partition, shard_of(kind, row, self.sink, sizes[partition])].append(row)
        moves = []
        window = _stamp(pane.window_start) if pane is not None else "nowindow"
        for (kind, partition, shard), rows in sorted(groups.items()):
            prefix = f"part-{window}-" if kind == "articles" else "part-"
            name = f"{prefix}{self.run_id}-{seq:06d}-{shard:05d}.parquet"
            tmp = posixpath.join(tmp_root, kind, partition, name)
            self._write(tmp, kind, rows)
            moves.append((tmp, self.path(kind, partition, name)))
        by_shard: dict[int, list[Story]] = defaultdict(list)
        for story in plan.stories:
            by_shard[shard_of("stories", story, self.sink)].append(story)
        for shard, updated in sorted(by_shard.items()):
            name = f"part-{shard:05d}.parquet"
            final = self.path("stories", name)
            rows = {s.story_id: s for s in self._read_stories(final)}
            rows.update({s.story_id: s for s in updated})
            tmp = posixpath.join(tmp_root, "stories", name)
            self._write(tmp, "stories", list(rows.values()))
            moves.append((tmp, final))
        return moves

    def _read_stories(self, path: str) -> list[Story]:
        if not self.fs.exists(path):
            return []
        with self.fs.open(path, "rb") as handle:
            table = pq.read_table(handle, schema=SCHEMAS["stories"])
        out = []
        for row in table.to_pylist():
            row["article_ids"] = tuple(row["article_ids"] or ())
            out.append(Story(**row))
        return out

    def save_checkpoint(self, data: dict) -> None:
        final = self.path(CHECKPOINT)
        tmp = self.path("_state", f"_stream-{self.run_id}.json.tmp")
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        with self.fs.open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        move(self.fs, tmp, final)

    def publish(self, moves: Sequence[tuple[str, str]]) -> None:
        for tmp, final in moves:
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
            move(self.fs, tmp, final)
        leftover = self.path("_tmp", self.run_id)
        if self.fs.exists(leftover) and not self.fs.find(leftover):
            self.fs.rm(leftover, recursive=True)

    def ensure_tables(self) -> None:
        """An empty file for a table with no rows yet, so every table is readable at once."""
        for kind in KINDS:
            folder = self.path(kind)
            if self.fs.exists(folder) and any(p.endswith(".parquet") for p in self.fs.find(folder)):
                continue
            name = f"part-{self.run_id}-empty.parquet" if kind != "stories" else "part-00000.parquet"
            tmp = self.path("_tmp", self.run_id, "empty", kind, name)
            self._write(tmp, kind, [])
            self.publish([(tmp, self.path(kind, name))])

    def write_summary(self, summary: dict) -> None:
        tmp = self.path("_tmp", f"summary-{self.run_id}.json")
        self.fs.makedirs(posixpath.dirname(tmp), exist_ok=True)
        with self.fs.open(tmp, "w") as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)
        move(self.fs, tmp, self.path("summary.json"))


# --------------------------------------------------------------------------- committer


class _CommitFn(beam.DoFn):
    """("stream", (kind, value)) -> summary dict after each commit. One key: commits are
    serial, like the batch CommitOutputs, so story rows and the checkpoint never race."""

    STATE = ReadModifyWriteStateSpec("stream", PickleCoder())
    INPUTS = CombiningValueStateSpec("inputs", VarIntCoder(), CountCombineFn())
    FAILURES = BagStateSpec("failures", PickleCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(
        self,
        root: str,
        run_id: str,
        sink: SinkSettings,
        stories: StorySettings,
        settings: StreamingSettings,
        fingerprint: FingerprintSettings | None = None,
        feed_state: tuple[str, float] | None = None,
    ):
        self._root, self._run_id, self._sink = root, run_id, sink
        self._stories, self._settings, self._fingerprint = stories, settings, fingerprint
        self._feed_state = feed_state

    def setup(self):
        self._files = StreamFiles(self._root, self._run_id, self._sink)

    def _save_feed_state(self, plan: PanePlan, now: float) -> None:
        """Entries whose rows this commit published are seen for later runs too (the feeds'
        ``_state/feeds.json``, shared with batch runs): saved after the files are in place,
        so an entry is never marked seen before its row is committed."""
        from transforms.feeds import load_state, merge_state, save_state, seen_keys_of_rows

        keys = seen_keys_of_rows([*plan.articles, *plan.failures])
        if self._feed_state is None or not keys:
            return
        path, max_age_s = self._feed_state
        save_state(path, merge_state(load_state(path), keys, {}, [], now=now, max_age_s=max_age_s))

    def _state(self, cell) -> StreamState:
        state = cell.read()
        if state is None:  # first element of this job: recover from the checkpoint
            state, pending = StreamState.from_json(self._files.load_checkpoint() or {}, self._run_id)
            rolled = self._files.roll_forward(pending)
            if rolled:
                LOG.info("finished %d renames of an interrupted commit", rolled)
            self._files.ensure_tables()
        return state

    def process(
        self,
        element,
        ts=beam.DoFn.TimestampParam,
        cell=beam.DoFn.StateParam(STATE),
        inputs=beam.DoFn.StateParam(INPUTS),
        failures=beam.DoFn.StateParam(FAILURES),
        flush=beam.DoFn.TimerParam(FLUSH),
        end=beam.DoFn.TimerParam(END),
    ) -> Iterator[dict]:
        _, (kind, value) = element
        end.set(GlobalWindow().max_timestamp())
        if kind == "tick":  # a poll: a run that finds nothing new still ends with a summary
            return
        if kind == "input":
            inputs.add(1)
            return
        if kind == "failure":
            failures.add(value)
            flush.set(ts + Duration(seconds=self._settings.failure_flush_s))
            return
        state = self._state(cell)
        yield self._commit(state, cell, inputs, failures, value)

    @on_timer(FLUSH)
    def flush_failures(
        self,
        cell=beam.DoFn.StateParam(STATE),
        inputs=beam.DoFn.StateParam(INPUTS),
        failures=beam.DoFn.StateParam(FAILURES),
    ):
        if list(failures.read()):
            yield self._commit(self._state(cell), cell, inputs, failures, None)

    @on_timer(END)
    def finish(
        self,
        cell=beam.DoFn.StateParam(STATE),
        inputs=beam.DoFn.StateParam(INPUTS),
        failures=beam.DoFn.StateParam(FAILURES),
    ):
        yield self._commit(self._state(cell), cell, inputs, failures, None)

    def _commit(self, state: StreamState, cell, inputs, failures, pane: ClusterPane | None) -> dict:
        now = time.time()
        state.forget_before(now - self._settings.written_ttl_days * 86_400)
        plan = (
            plan_pane(state, pane, self._stories, now, self._fingerprint) if pane is not None else PanePlan([], [], [])
        )
        plan.failures.extend(failures.read())
        failures.clear()
        count_rows(state, plan, pane)
        state.seq += 1
        moves = self._files.stage(state.seq, plan, pane)
        self._files.save_checkpoint(state.to_json(moves))
        self._files.publish(moves)
        self._save_feed_state(plan, now)
        summary = summary_of(state, inputs.read() or 0, self._settings.window_summaries)
        self._files.write_summary(summary)
        cell.write(state)
        _counter("stream_commits").inc()
        _counter("stream_files_written").inc(len(moves))
        _counter("stream_articles_written").inc(len(plan.articles))
        if pane is not None:
            LOG.info(
                "commit %d: %s window %s pane %d (%s): %d new articles, %d stories updated, %d failures",
                state.seq,
                pane.topic,
                pane.window_start.isoformat(),
                pane.pane_index,
                pane.timing,
                len(plan.articles),
                len(plan.stories),
                len(plan.failures),
            )
        return summary


class CommitStream(beam.PTransform):
    """{'panes': PCollection[ClusterPane], 'failures': PCollection[Failure], 'inputs':
    PCollection[Any], optional 'ticks': PCollection[Tick]} (global window) -> PCollection[dict]:
    the summary after each commit (also written to ``summary.json``; with ticks, a bounded
    run that read nothing new writes one too). ``feed_state``: (path of the feeds' seen
    state, max age in seconds) to add the URLs of each commit's rows to."""

    def __init__(
        self,
        root: str,
        run_id: str,
        sink: SinkSettings,
        stories: StorySettings,
        settings: StreamingSettings,
        fingerprint: FingerprintSettings | None = None,
        feed_state: tuple[str, float] | None = None,
    ):
        super().__init__()
        self._args = (root, run_id, sink, stories, settings, fingerprint, feed_state)

    def expand(self, pcolls: dict[str, beam.PCollection]):
        tagged = (
            pcolls["panes"] | "TagPanes" >> beam.Map(lambda v: (_COMMIT_KEY, ("pane", v))).with_output_types(KeyedAny),
            pcolls["failures"]
            | "TagFailures" >> beam.Map(lambda v: (_COMMIT_KEY, ("failure", v))).with_output_types(KeyedAny),
            pcolls["inputs"]
            | "TagInputs" >> beam.Map(lambda _: (_COMMIT_KEY, ("input", None))).with_output_types(KeyedAny),
        )
        if "ticks" in pcolls:
            tagged += (
                pcolls["ticks"]
                | "TagTicks" >> beam.Map(lambda _: (_COMMIT_KEY, ("tick", None))).with_output_types(KeyedAny),
            )
        return (
            tagged
            | "ToCommit" >> beam.Flatten()
            | "CommitFiles" >> beam.ParDo(_CommitFn(*self._args)).with_input_types(KeyedAny)
        )


# --------------------------------------------------------------------------- polling


@dataclass(frozen=True)
class Tick:
    """One poll: its number and the wall-clock time it is due (epoch seconds)."""

    index: int
    due: float


def tick_times(start: float, interval_s: float, polls: int) -> list[float]:
    """Due times of the polls, to the millisecond (Beam watermarks have ms precision)."""
    return [round(start + i * interval_s, 3) for i in range(polls)]


class _WaitForTick(beam.DoFn):
    """Scripted ticks arrive at once; each poll waits for its wall-clock time."""

    def __init__(self, sleep=time.sleep, clock=time.time):
        self._sleep, self._clock = sleep, clock

    def process(self, tick: Tick):
        delay = tick.due - self._clock()
        if delay > 0:
            self._sleep(delay)
        yield tick


class PollTicks(beam.PTransform):
    """PBegin -> PCollection[Tick], one per poll, stamped and watermarked with its due time.

    On distributed runners this is ``PeriodicImpulse`` (unbounded; ``stop_after`` bounds it).
    The Python direct runner cannot run PeriodicImpulse (its splittable DoFns have no
    deferred remainders), so locally the ticks are a scripted stream (``TestStream``: the
    watermark advances to each tick's time) and each poll waits for its wall-clock time. The
    local runner starts the next tick only when the previous poll's work is committed."""

    def __init__(
        self,
        interval_s: float,
        stop_after: int | None,
        *,
        local: bool,
        start: float,
        max_polls: int,
    ):
        super().__init__()
        self._interval, self._stop_after, self._local = interval_s, stop_after, local
        self._start, self._max_polls = start, max_polls

    def expand(self, pbegin):
        if self._local:
            from apache_beam.testing.test_stream import TestStream

            stream = TestStream()
            polls = self._stop_after or self._max_polls
            for i, due in enumerate(tick_times(self._start, self._interval, polls)):
                stream = stream.advance_watermark_to(due).add_elements(
                    [beam.window.TimestampedValue(Tick(i, due), due)]
                )
                stream = stream.advance_processing_time(self._interval)
            stream = stream.advance_watermark_to_infinity()
            return pbegin | "ScriptedTicks" >> stream | "WaitForTick" >> beam.ParDo(_WaitForTick())
        from apache_beam.transforms.periodicsequence import PeriodicImpulse

        stop = self._start + (self._stop_after - 1) * self._interval + self._interval / 2 if self._stop_after else None
        kwargs = {"stop_timestamp": stop} if stop is not None else {}
        return (
            pbegin
            | "PeriodicImpulse" >> PeriodicImpulse(start_timestamp=self._start, fire_interval=self._interval, **kwargs)
            | "ToTick" >> beam.Map(lambda t, s=self._start, i=self._interval: Tick(round((float(t) - s) / i), float(t)))
        )


class _PollFeedFn(beam.DoFn):
    """(feed url, (Tick, FeedSpec)) -> FeedItem | tagged Failure. One key per feed: its seen
    entries live in Beam state and are forgotten after ``feeds.state_max_age_days``; the
    entries earlier runs saw (``state_path``, read once per worker) count as seen too."""

    SEEN = ReadModifyWriteStateSpec("feed_state", PickleCoder())

    def __init__(self, fetch, feeds, state_path: str | None = None):
        self._fetch_settings, self._settings, self._state_path = fetch, feeds, state_path

    def setup(self):
        from transforms.feeds import load_state, shared_fetcher

        self._fetcher = shared_fetcher(self._fetch_settings)
        # read-only: never copied into Beam state, which holds what this job saw
        self._saved_seen = load_state(self._state_path).seen

    def process(self, element, cell=beam.DoFn.StateParam(SEEN)):
        from transforms.feeds import FeedState

        _, (_tick, spec) = element
        saved = cell.read() or {"state": FeedState(), "reported": set(), "last": None}
        now = time.time()
        # a feed may ask to be polled less often than the ticks come
        due = not spec.poll_interval_s or saved["last"] is None or now - saved["last"] + 0.5 >= spec.poll_interval_s
        yield from self._poll(spec, saved, now, cell) if due else ()

    def _poll(self, spec, saved, now, cell):
        from collections import ChainMap

        from transforms.feeds import FeedState, poll_feeds

        state = saved["state"]
        max_age = self._settings.state_max_age_days * 86_400
        state.seen = {k: t for k, t in state.seen.items() if now - t <= max_age}
        # new marks go to the first map (this job's state); lookups also see earlier runs'
        working = FeedState(seen=ChainMap(state.seen, self._saved_seen), feeds=state.feeds)
        out = poll_feeds(
            [spec],
            self._fetcher.fetch,
            working,
            self._settings,
            now=_ts(now),
            reported=saved["reported"],
        )
        for name, value in out.stats.items():
            _counter(name).inc(value)
        saved["last"] = now
        cell.write(saved)
        for failure in out.failures:
            _counter(f"{failure.stage}_{failure.reason}").inc()
            yield beam.pvalue.TaggedOutput(records.FAILED, failure)
        yield from out.items


class _FetchPageFn(beam.DoFn):
    def __init__(self, fetch, feeds):
        self._fetch_settings, self._settings = fetch, feeds

    def setup(self):
        from transforms.feeds import shared_fetcher

        self._fetcher = shared_fetcher(self._fetch_settings)

    def process(self, item):
        from transforms.feeds import fetch_page

        result = fetch_page(item, self._fetcher.fetch, self._settings)
        if isinstance(result, Failure):
            _counter(f"{result.stage}_{result.reason}").inc()
            yield beam.pvalue.TaggedOutput(records.FAILED, result)
        else:
            _counter("feeds_pages_fetched").inc()
            yield result


class PollFeedsStream(beam.PTransform):
    """PCollection[Tick] -> ``.ok``: PCollection[Document], ``.failed``: PCollection[Failure].

    Every tick polls every feed (``transforms.feeds.poll_feeds``, the batch per-poll logic)
    and fetches the pages of entries it has not seen (in this job, or by the runs that saved
    ``state_path``); politeness per host is the fetcher's (per worker process)."""

    def __init__(self, specs: Sequence[Any], fetch, feeds, state_path: str | None = None):
        super().__init__()
        self._specs, self._fetch, self._feeds = tuple(specs), fetch, feeds
        self._state_path = state_path

    def expand(self, ticks):
        items = (
            ticks
            | "PerFeed"
            >> beam.FlatMap(lambda t, specs=self._specs: [(s.url, (t, s)) for s in specs]).with_output_types(KeyedAny)
            | "PollFeed"
            >> beam.ParDo(_PollFeedFn(self._fetch, self._feeds, self._state_path))
            .with_input_types(KeyedAny)
            .with_outputs(records.FAILED, main="items")
        )
        pages = items.items | "FetchPages" >> beam.ParDo(_FetchPageFn(self._fetch, self._feeds)).with_outputs(
            records.FAILED, main="ok"
        )
        failed = (
            items[records.FAILED],
            pages[records.FAILED],
        ) | "PollFailures" >> beam.Flatten()
        return _Outputs(pages.ok, failed, ticks)


@dataclass
class _Outputs:
    """``.ok`` / ``.failed``, like the result of ``ParDo(...).with_outputs``; ``.ticks``: the
    polls."""

    ok: Any
    failed: Any
    ticks: Any = None


__all__ = [
    "ClusterPane",
    "CommitStream",
    "GateLateArticles",
    "PollFeedsStream",
    "PollTicks",
    "StreamFiles",
    "StreamState",
    "StreamingSettings",
    "Tick",
    "WindowStories",
    "is_read_late",
    "late_failure",
    "plan_pane",
    "story_windowing",
    "window_bounds",
    "window_expiry",
]
