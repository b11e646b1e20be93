"""Streaming: late data, story updates, the streaming sink and a bounded polling run.

Pipeline runs are few (each costs seconds): one TestStream run for windows and late data, one
bounded feed-polling run against a local server, one run writing to a local GCS emulator.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipeline.build import RunPlan
from pipeline.config import default_config
from transforms.records import Article
from transforms.streaming import (
    ClusterPane,
    StreamFiles,
    StreamingSettings,
    StreamState,
    late_failure,
    plan_pane,
    window_bounds,
    window_expiry,
)

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # window A = [10:00, 11:00), window B = [11:00, 12:00)

BRIDGE = (
    "The Velmora harbour bridge partly collapsed on Monday morning after a cargo ship struck "
    "one of its pillars, Velmora port authority officials said. Rescue teams from Velmora and "
    "Harbourton searched the water below the bridge span. Mayor Ilse Brandt closed the bridge "
    "and the harbour ferry route while engineers inspect the damaged pillar. "
)
FESTIVAL = (
    "The Brenholt jazz festival opened its tenth season with a record crowd in the old Brenholt "
    "market square. Saxophonist Marta Quill headlined the opening night and the festival "
    "organisers announced a new stage for young Brenholt musicians next summer. "
)


def article(n: int, minutes: int, body: str, title: str, host: str) -> Article:
    published = T0 + timedelta(minutes=minutes)
    text = f"{body}\nReport number {n} from {host} with its own closing line about item {n}."
    return Article(
        url=f"https://{host}/news/{n}",
        fetched_at=published + timedelta(minutes=1),
        text=text,
        source=host,
        title=title,
        published_at=published,
    )


def read(out: Path, kind: str) -> list[dict]:
    return ds.dataset(str(out / kind), format="parquet", partitioning="hive").to_table().to_pylist()


# --------------------------------------------------------------------------- pure functions


def test_window_arithmetic_and_late_failure():
    assert window_bounds(T0.timestamp() + 59 * 60, 3600) == (
        T0.timestamp(),
        T0.timestamp() + 3600,
    )
    assert window_expiry(T0.timestamp() + 60, 3600, 1800) == T0.timestamp() + 3600 + 1800
    failure = late_failure(article(1, 5, BRIDGE, "t", "a.example"), 3600, 3600, T0.timestamp() + 3 * 3600)
    assert (failure.stage, failure.reason) == ("late", "dropped_late")
    assert "allowed lateness 1 h" in failure.detail


@pytest.mark.parametrize("weights_from", ["run", "past"])
def test_plan_pane_writes_each_input_once_and_updates_the_story(weights_from):
    from transforms.fingerprint import FingerprintSettings, fingerprint_article
    from transforms.stories import StorySettings, cluster_window

    stories, fp = StorySettings(window_hours=1, link_weights_from=weights_from), FingerprintSettings()
    arts = [
        dataclasses.replace(
            fingerprint_article(
                article(i, 5 * i, BRIDGE, "Velmora bridge collapse", f"h{i}.example"),
                fp,
            ),
            topic="general",
        )
        for i in range(3)
    ]
    end = T0 + timedelta(hours=1)

    def pane(items, index, timing):
        return ClusterPane(
            "general",
            T0,
            end,
            index,
            timing,
            tuple(cluster_window("general", items, T0, end, stories, fp)),
        )

    state = StreamState(run_id="r")
    first = plan_pane(state, pane(arts[:2], 0, "on_time"), stories, now=1.0)
    assert len(first.articles) == 2 and len(first.stories) == 1
    again = plan_pane(state, pane(arts, 1, "late"), stories, now=2.0)  # accumulating: repeats arts[:2]
    assert [a.url for a in again.articles] == [arts[2].url]
    assert again.stories[0].story_id == first.stories[0].story_id and again.stories[0].size == 3
    reread = dataclasses.replace(arts[0], fetched_at=arts[0].fetched_at + timedelta(hours=1))
    third = plan_pane(state, pane([*arts, reread], 2, "late"), stories, now=3.0)
    assert not third.articles and [f.reason for f in third.failures] == ["duplicate_url"]


@pytest.mark.parametrize("weights_from", ["run", "past"])
def test_a_near_copy_in_a_later_pane_points_to_the_written_article(weights_from):
    from transforms.fingerprint import FingerprintSettings, fingerprint_article
    from transforms.stories import StorySettings, cluster_window

    stories, fp = StorySettings(window_hours=1, link_weights_from=weights_from), FingerprintSettings()

    def printed(n, minutes, host):
        return dataclasses.replace(
            fingerprint_article(article(n, minutes, BRIDGE * 3, "Velmora bridge collapse", host), fp), topic="general"
        )

    def pane(items, start, index):
        end = start + timedelta(hours=1)
        return ClusterPane(
            "general", start, end, index, "on_time", tuple(cluster_window("general", items, start, end, stories, fp))
        )

    first, later = printed(1, 5, "a.example"), printed(2, 75, "b.example")  # windows A and B
    assert first.content_hash != later.content_hash  # own closing lines: near copies, not exact
    state = StreamState(run_id="r")
    written = plan_pane(state, pane([first], T0, 0), stories, now=1.0, fingerprint=fp)
    assert [a.duplicate_of for a in written.articles] == [None]
    copy = plan_pane(state, pane([later], T0 + timedelta(hours=1), 1), stories, now=2.0, fingerprint=fp)
    assert [(a.duplicate_of, a.story_id) for a in copy.articles] == [(first.article_id, written.articles[0].story_id)]


def test_restart_finishes_pending_renames(tmp_path):
    from transforms.sinks import SinkSettings, write_table

    files = StreamFiles(str(tmp_path), "run1", SinkSettings())
    tmp = files.path("_tmp", "run1", "000001", "failures", "part-x.parquet")
    write_table(files.fs, tmp, "failures", [], "zstd")
    final = files.path("failures", "part-x.parquet")
    files.save_checkpoint(StreamState(run_id="run1", seq=1).to_json([(tmp, final)]))
    # a new job: reads the checkpoint, finishes the rename, continues numbering afresh
    data = StreamFiles(str(tmp_path), "run2", SinkSettings()).load_checkpoint()
    state, pending = StreamState.from_json(data, "run2")
    assert state.seq == 0 and pending == [(tmp, final)]
    assert files.roll_forward(pending) == 1
    assert pq.read_table(final).num_rows == 0 and not Path(tmp).exists()


# --------------------------------------------------------------------------- TestStream


def _plan(out: Path, **stories) -> RunPlan:
    cfg = default_config()
    cfg = dataclasses.replace(cfg, stories=dataclasses.replace(cfg.stories, **stories))
    cfg = cfg.replace("sink", shards=2)
    return RunPlan(
        config=cfg,
        files=(),
        output=str(out),
        run_id="20260302T120000-test",
        fetched_at=T0,
    )


@pytest.fixture(scope="module")
def late_run(tmp_path_factory):
    """Window A [10:00, 11:00), window B [11:00, 12:00), allowed lateness 1 h."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.runners.direct.direct_runner import BundleBasedDirectRunner
    from apache_beam.testing.test_stream import TestStream

    from pipeline.streaming import stories_and_sink
    from transforms.fingerprint import Fingerprint
    from transforms.stories import AssignTopics, load_topics

    out = tmp_path_factory.mktemp("late") / "out"
    plan = _plan(out, window_hours=1)
    hosts = [
        "harbourgazette.example",
        "velmoradaily.example",
        "coastlinetimes.example",
        "northbaypost.example",
        "islandpost.example",
    ]
    a = [
        article(
            i,
            m,
            BRIDGE,
            f"Velmora harbour bridge collapses after ship strike ({i})",
            hosts[i],
        )
        for i, m in enumerate((10, 20, 40, 50, 55))
    ]
    festival = article(
        9,
        75,
        FESTIVAL,
        "Brenholt jazz festival opens with record crowd",
        "brenholtherald.example",
    )
    # an old entry on a feed's first poll: read at 11:25, its window [07:00, 08:00) stopped
    # taking late articles at 09:00, and the watermark (11:30) is past it already
    backlog = dataclasses.replace(
        article(8, -170, FESTIVAL, "Brenholt festival programme announced", "brenholtherald.example"),
        fetched_at=T0 + timedelta(minutes=85),
    )

    def at(x: Article):
        return beam.window.TimestampedValue(x, x.event_time.timestamp())

    def ts(minutes):
        return (T0 + timedelta(minutes=minutes)).timestamp()

    stream = (
        TestStream()
        .add_elements([at(a[0]), at(a[1])])
        .advance_watermark_to(ts(30))
        .add_elements([at(festival)])  # window B, before A is complete
        .add_elements([at(a[2])])  # out of order: 10:40 after 11:15
        .advance_watermark_to(ts(90))  # A fires on time
        .add_elements([at(a[3])])  # late, within the allowed lateness (A expires at 12:00)
        .add_elements([at(backlog)])  # read after its window expired: dropped_late, not lost
        .advance_watermark_to(ts(150))  # A is past its allowed lateness
        .add_elements([at(a[4])])  # too late: dropped_late
        .advance_watermark_to_infinity()
    )
    options = PipelineOptions([])
    options.view_as(StandardOptions).streaming = True
    cfg = plan.config
    started = time.monotonic()
    with beam.Pipeline(runner=BundleBasedDirectRunner(), options=options) as p:
        raw = p | stream
        articles = raw | Fingerprint(cfg.fingerprint) | AssignTopics(load_topics(cfg.stories.topics_file))
        stories_and_sink(articles, [], raw, plan, StreamingSettings(allowed_lateness_hours=1))
    return {
        "out": out,
        "bridge": a,
        "festival": festival,
        "backlog": backlog,
        "seconds": time.monotonic() - started,
    }


def test_out_of_order_and_late_articles_join_their_story(late_run):
    out = late_run["out"]
    rows = read(out, "articles")
    urls = sorted(r["url"] for r in rows)
    bridge = late_run["bridge"]
    expected = sorted([x.url for x in bridge[:4]] + [late_run["festival"].url])
    assert urls == expected  # each written exactly once, the dropped one not at all
    story_of = {r["url"]: r["story_id"] for r in rows}
    assert len({story_of[x.url] for x in bridge[:4]}) == 1
    assert story_of[late_run["festival"].url] != story_of[bridge[0].url]
    stories = read(out, "stories")
    assert len(stories) == len({s["story_id"] for s in stories}) == 2  # updated, not duplicated
    story = next(s for s in stories if s["story_id"] == story_of[bridge[0].url])
    assert story["size"] == 4
    assert story["window_start"] == T0 and story["window_end"] == T0 + timedelta(hours=1)


def test_articles_past_allowed_lateness_are_counted_as_dropped_late(late_run):
    out = late_run["out"]
    failures = read(out, "failures")
    assert sorted((f["url"], f["stage"], f["reason"]) for f in failures) == sorted(
        [
            (late_run["bridge"][4].url, "late", "dropped_late"),
            (late_run["backlog"].url, "late", "dropped_late"),  # the grouping would drop it unseen
        ]
    )
    backlog = next(f for f in failures if f["url"] == late_run["backlog"].url)
    assert "before the article was read at" in backlog["detail"]
    summary = json.loads((out / "summary.json").read_text())
    # late articles are dropped by policy: filtered, not failed (max_failure_ratio ignores them)
    assert summary["inputs"] == 7 and summary["articles"] == 5
    assert (summary["filtered"], summary["failed"], summary["unaccounted"]) == (2, 0, 0)
    assert summary["failures_by_reason"] == {"late/dropped_late": 2}
    window_a = summary["windows"][T0.isoformat()]
    assert window_a["late_articles"] == 1 and window_a["stories"] == 1
    assert not list((out / "_tmp").rglob("*.parquet")) if (out / "_tmp").exists() else True


def test_streaming_files_are_per_window_and_complete(late_run):
    out = late_run["out"]
    names = [p.name for p in (out / "articles").rglob("*.parquet")]
    assert names and all(n.startswith(("part-20260302T1000-", "part-20260302T1100-", "part-")) for n in names)
    assert any(n.startswith("part-20260302T1000-") for n in names) and any(
        n.startswith("part-20260302T1100-") for n in names
    )
    for path in out.rglob("*.parquet"):
        if "_tmp" not in path.parts:
            pq.ParquetFile(path)  # a footer: every visible file is complete


# --------------------------------------------------------------------------- polling runs


def _live_feed(server, published: datetime, per_poll: int = 2) -> None:
    """/live.xml gains ``per_poll`` items on every request; /live/<n> are their pages."""
    from email.utils import format_datetime

    def feed(handler):
        count = per_poll * server.hits["/live.xml"]
        items = "".join(
            f"<item><title>Harbour council report {i}</title><link>{server.url(f'/live/{i}')}</link>"
            f"<guid>{server.url(f'/live/{i}')}</guid><pubDate>{format_datetime(published + timedelta(minutes=i))}</pubDate></item>"
            for i in range(count)
        )
        body = f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Live</title>{items}</channel></rss>'
        handler.send(200, body.encode(), {"Content-Type": "application/rss+xml"})

    def page(handler):
        n = handler.path.rsplit("/", 1)[-1]
        paragraphs = "".join(
            f"<p>Item {n}, paragraph {k}: the harbour council of Port Elsa met on {k} matters, "
            f"and report {n} records its {['budget', 'ferry', 'quay', 'school'][k % 4]} decision.</p>"
            for k in range(4)
        )
        html = f"<html><head><title>Harbour council report {n}</title></head><body><article><h1>Harbour council report {n}</h1>{paragraphs}</article></body></html>"
        handler.send(200, html.encode())

    server.routes["/live.xml"] = feed
    server.routes["/live/*"] = page


def _watch(out_articles: str, stop: threading.Event, seen: list, errors: list, summary_url: str) -> None:
    """Read the output while the job runs: after every new commit, the whole articles table."""
    import fsspec

    last = None
    while True:
        # one last look after the job returned: its final commit may land within the 0.1 s
        # between two looks, just before the run ends
        final = stop.is_set()
        try:
            with fsspec.open(summary_url, "r") as handle:
                commits = json.load(handle)["commits"]
        except (OSError, ValueError, KeyError):
            commits = None
        if commits is not None and commits != last:
            try:
                fs, path = fsspec.core.url_to_fs(out_articles)
                table = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive").to_table()
                seen.append((commits, sorted(table.column("url").to_pylist())))
                last = commits
            except Exception as err:  # noqa: BLE001 - any read failure is the finding
                errors.append(repr(err))
        if final:
            return
        stop.wait(0.1)


def _polled_run(output: str, *, interval: str, polls: str, server=None) -> dict:
    from contextlib import nullcontext

    from pipeline.main import run
    from tests.servers import HostileServer

    with nullcontext(server) if server is not None else HostileServer() as server:
        if "/live.xml" not in server.routes:
            _live_feed(server, datetime.now(UTC) - timedelta(minutes=30))
        seen: list = []
        errors: list = []
        stop = threading.Event()
        root = output.rstrip("/")
        watcher = threading.Thread(
            target=_watch,
            args=(root + "/articles", stop, seen, errors, root + "/summary.json"),
        )
        watcher.start()
        started = time.monotonic()
        try:
            code = run(
                [
                    "--source",
                    "feeds",
                    "--input",
                    server.url("/live.xml"),
                    "--output",
                    output,
                    "--allow-hosts",
                    server.allow[0],
                ]
                + ["--poll-interval", interval, "--stop-after", polls]
            )
        finally:
            stop.set()
            watcher.join()
        return {
            "code": code,
            "seen": seen,
            "errors": errors,
            "seconds": time.monotonic() - started,
            "feed_hits": server.hits["/live.xml"],
        }


def test_bounded_polling_run_writes_each_new_article_once_after_every_poll(tmp_path):
    from tests.servers import HostileServer, rss

    out = tmp_path / "out"
    with HostileServer() as server:
        result = _polled_run(str(out), interval="2", polls="3", server=server)
        assert result["code"] == 0 and result["feed_hits"] == 3
        assert not result["errors"], result["errors"]
        rows = read(out, "articles")
        urls = [r["url"] for r in rows]
        assert len(urls) == len(set(urls)) == 6  # two new entries per poll, each written once
        # the output was readable and growing while the job ran: 2, then 4, then 6 articles
        counts = sorted({len(urls) for _, urls in result["seen"]})
        assert {2, 4, 6} <= set(counts), result["seen"]
        for _, seen_urls in result["seen"]:
            assert len(seen_urls) == len(set(seen_urls))
        summary = json.loads((out / "summary.json").read_text())
        assert summary["inputs"] == 6 == summary["articles"] + summary["filtered"] + summary["failed"]
        assert summary["mode"] == "streaming" and summary["unaccounted"] == 0
        stories = read(out, "stories")
        assert len(stories) == len({s["story_id"] for s in stories}) >= 1
        # a second run into the same output starts from the entries the first one saw
        # (<output>/_state/feeds.json): only the feed's two new entries are fetched
        pages_before = server.requested("/live/")
        again = _polled_run(str(out), interval="1", polls="1", server=server)
        assert again["code"] == 0
        assert server.requested("/live/") - pages_before == 2
        assert json.loads((out / "summary.json").read_text())["inputs"] == 2
        assert len(read(out, "articles")) == 8
        # and a run that finds nothing new fetches nothing, and says so in its own summary
        server.routes["/live.xml"] = lambda h: h.send(200, rss([(server.url("/live/0"), "Old")]))
        quiet = _polled_run(str(out), interval="1", polls="1", server=server)
        assert quiet["code"] == 0 and server.requested("/live/") - pages_before == 2
        summary = json.loads((out / "summary.json").read_text())
        assert (summary["inputs"], summary["articles"], summary["commits"]) == (0, 0, 1)


def test_streaming_output_on_gcs_is_readable(tmp_path):
    pytest.importorskip("gcsfs")
    pytest.importorskip("gcp_storage_emulator")
    import fsspec

    from tests.cloud import gcs_emulator

    with gcs_emulator("storybeam-stream"):
        result = _polled_run("gs://storybeam-stream/news", interval="1", polls="2")
        assert result["code"] == 0 and not result["errors"], result
        fs = fsspec.filesystem("gs")
        articles = ds.dataset(
            "storybeam-stream/news/articles",
            filesystem=fs,
            format="parquet",
            partitioning="hive",
        ).to_table()
        assert articles.num_rows == 4 and len(set(articles.column("url").to_pylist())) == 4
        stories = ds.dataset("storybeam-stream/news/stories", filesystem=fs, format="parquet").to_table()
        assert stories.num_rows >= 1
        assert not [p for p in fs.find("storybeam-stream/news") if "/_tmp/" in p and p.endswith(".parquet")]
        summary = json.loads(fs.cat("storybeam-stream/news/summary.json"))
        assert summary["articles"] == 4 and summary["mode"] == "streaming"
