"""Feeds through the CONTRACT command: incremental runs add only new entries, and the seen-state
is saved only after the outputs are committed."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.main import run
from tests.servers import HostileServer, feed_run_args


def articles(out: Path) -> list[dict]:
    return ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()


def test_growing_feed_twice_adds_only_new_articles(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "feeds.yaml"
    config.write_text("fetch:\n  timeout_s: 5.0\n  connect_timeout_s: 2.0\n  per_host_min_delay_s: 0.0\n  retries: 0\n")
    with HostileServer() as server:
        # a feed that is gone: a failure in the first run, a feed_still_failing row in the next
        args = [*feed_run_args(config, server.url("/growing.xml"), out, server), "--input", server.url("/missing")]
        assert run(args) == 0
        first_summary = json.loads((out / "summary.json").read_text())
        first = articles(out)
        assert first and all(a["feed_url"] == server.url("/growing.xml") for a in first)
        assert (out / "_state" / "feeds.json").exists()
        assert run(args) == 0
        second = articles(out)
    ids_first = {a["article_id"] for a in first}
    ids_second = [a["article_id"] for a in second]
    assert len(ids_second) == len(set(ids_second))  # no article twice
    assert ids_first < set(ids_second)  # the first run's articles are kept, new ones added
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == summary["articles"] + summary["filtered"] + summary["failed"]
    assert summary["articles"] == len(ids_second) - len(ids_first)
    assert first_summary["failures_by_reason"] == {"fetch/http_404": 1}
    assert summary["failures_by_reason"] == {"filter/feed_still_failing": 1}
    assert (summary["failed"], summary["filtered"]) == (0, 1)


@pytest.mark.parametrize("listing", ["", "feeds: []\n", "# nothing yet\n"])
@pytest.mark.parametrize("polling", [[], ["--poll-interval", "1", "--stop-after", "2"]])
def test_empty_feed_list_is_a_usage_error(tmp_path, capsys, listing, polling):
    feeds = tmp_path / "feeds.yaml"
    feeds.write_text(listing)
    args = ["--source", "feeds", "--input", str(feeds), "--output", str(tmp_path / "out"), *polling]
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"storybeam: error: bad feed input: no feeds listed in {feeds}"
