"""Re-ingesting a real feed (../shared/data/real_feeds, CNN, 69 items) through the CONTRACT
command adds no new article id and no new story (served from 127.0.0.1; entry summaries stand in
for the pages, so nothing leaves this machine)."""

from __future__ import annotations

import json

import pyarrow.dataset as ds

from pipeline.main import run
from tests.servers import HostileServer, feed_run_args


def test_cnn_feed_twice_gives_the_same_articles_and_stories(shared_dir, tmp_path):
    feed = (shared_dir / "data" / "real_feeds" / "mediacloud_rss_fetcher" / "real-cnn.rss").read_bytes()
    config = tmp_path / "c.yaml"
    config.write_text(
        "feeds:\n  fetch_articles: false\n"  # summaries only: no request to the publisher
        "extract:\n  min_text_chars: 1\n"
        "clean:\n  min_text_chars: 1\n"
        "run:\n  max_failure_ratio: 1.0\n"
    )
    out = tmp_path / "out"

    def snapshot():
        articles = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()
        stories = ds.dataset(str(out / "stories"), format="parquet").to_table().to_pylist()
        return articles, stories

    with HostileServer() as server:
        server.routes["/cnn.rss"] = lambda h: h.send(200, feed, {"Content-Type": "application/rss+xml"})
        args = feed_run_args(config, server.url("/cnn.rss"), out, server)
        assert run(args) == 0
        first = json.loads((out / "summary.json").read_text())
        articles1, stories1 = snapshot()
        assert run(args) == 0
        second = json.loads((out / "summary.json").read_text())
        articles2, stories2 = snapshot()

    assert first["inputs"] == 69
    assert first["inputs"] == first["articles"] + first["filtered"] + first["failed"]
    assert len(articles1) == first["articles"] >= 50  # entries without a summary are filtered (empty_text)
    assert second["inputs"] == 0 and second["articles"] == 0  # every entry recognised as seen
    assert sorted(a["article_id"] for a in articles2) == sorted(a["article_id"] for a in articles1)
    assert len({a["article_id"] for a in articles2}) == len(articles2)
    assert {s["story_id"] for s in stories2} == {s["story_id"] for s in stories1}
