"""End to end: the CONTRACT commands on the bundled sample, the seeds and real pages.

Each pipeline run costs seconds, so runs are shared between tests through module fixtures.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipeline.main import EXIT_USAGE, run

BOILERPLATE = [
    "Previous Post",
    "Next Post",
    "Comments (0)",
    "Add Comment",
    "Share this article",
    "Sign up for our newsletter",
]


def read(out: Path, kind: str) -> list[dict]:
    return ds.dataset(str(out / kind), format="parquet", partitioning="hive").to_table().to_pylist()


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, repo_root):
    out = tmp_path_factory.mktemp("sample") / "out"
    assert run(["--config", str(repo_root / "configs" / "local.yaml"), "--output", str(out)]) == 0
    return out


def test_sample_accounts_for_every_record(sample_run):
    s = summary(sample_run)
    assert s["inputs"] == 9
    assert s["inputs"] == s["articles"] + s["filtered"] + s["failed"]
    failures = {(f["url"].rsplit("/", 1)[-1], f["reason"]) for f in read(sample_run, "failures")}
    assert ("bridge.png", "not_html") in failures
    assert any(url == "empty" for url, _ in failures)


def test_sample_groups_the_bridge_coverage_into_one_story(sample_run):
    articles = read(sample_run, "articles")
    by_host = {a["source"]: a for a in articles}
    bridge = [
        by_host[h]
        for h in (
            "harbourgazette.example",
            "velmoradaily.example",
            "coastlinetimes.example",
            "northbaypost.example",
            "regionalwire.example",
        )
    ]
    assert len({a["story_id"] for a in bridge}) == 1
    others = {by_host["brenholtherald.example"]["story_id"], by_host["portaldinesport.example"]["story_id"]}
    assert bridge[0]["story_id"] not in others and len(others) == 2
    # the agency copy is a near-duplicate of the original
    wire = by_host["regionalwire.example"]
    assert wire["duplicate_of"] == by_host["harbourgazette.example"]["article_id"]
    stories = read(sample_run, "stories")
    story = next(s for s in stories if s["story_id"] == bridge[0]["story_id"])
    assert story["size"] == 5 and sorted(story["article_ids"]) == sorted(a["article_id"] for a in bridge)


def test_sample_text_is_clean(sample_run):
    for a in read(sample_run, "articles"):
        for phrase in BOILERPLATE:
            assert phrase not in a["text"], (a["url"], phrase)
        paragraphs = a["text"].split("\n")
        assert len(paragraphs) == len(set(paragraphs)), a["url"]
        if a["title"]:
            assert paragraphs[0].strip() != a["title"].strip()
        assert a["canonical_url"] and "utm_source" not in a["canonical_url"]
        assert a["published_at"] is not None and a["published_at"].tzinfo is not None


def test_rerun_with_two_workers_gives_the_same_output(sample_run, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    shutil.copytree(sample_run, out)
    before = {(a["article_id"], a["story_id"], a["duplicate_of"]) for a in read(out, "articles")}
    old_files = sorted(p.name for p in out.rglob("*.parquet"))
    config = tmp_path / "ranges.yaml"  # the 9.4 KB sample cut into 2 KB byte ranges
    config.write_text("sources:\n  warc_range_mb: 0.002\n")
    code = run(
        [
            "--config",
            str(config),
            "--source",
            "warc",
            "--input",
            str(Path(__file__).resolve().parents[1] / "configs/sample/sample.warc.gz"),
            "--output",
            str(out),
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
        ]
    )
    assert code == 0
    after = {(a["article_id"], a["story_id"], a["duplicate_of"]) for a in read(out, "articles")}
    assert after == before
    assert summary(out)["inputs"] == 9
    new_files = sorted(p.name for p in out.rglob("*.parquet"))
    assert len(new_files) == len(old_files) and not set(new_files) & set(old_files)
    assert not list(out.glob("_tmp/*"))
    # the workers' own progress lines reach the runner's log as text, Beam's start-up notice not
    worker_lines = [r.getMessage() for r in caplog.records if r.name == "storybeam.worker"]
    assert any(line.startswith("progress: documents read") for line in worker_lines)
    assert not any("semi_persistent_directory" in r.getMessage() for r in caplog.records)


def test_seeds_are_cleaned_and_form_one_story(seeds_dir, tmp_path):
    out = tmp_path / "out"
    assert run(["--source", "text", "--input", str(seeds_dir / "*.txt"), "--output", str(out)]) == 0
    articles = read(out, "articles")
    assert len(articles) == 5
    assert len({a["story_id"] for a in articles}) == 1
    for a in articles:
        text = a["text"]
        for phrase in ("Previous Post Next Post", "Comments (0)", "Add Comment", "Marco RubioPakistan"):
            assert phrase not in text
        assert not text.lstrip().startswith("date 2025-10-26")
        if a["title"]:
            assert text.split("\n")[0].strip() != a["title"].strip()
        paragraphs = [p for p in text.split("\n") if p.strip()]
        assert len(paragraphs) == len(set(paragraphs))
    islamabad = [a for a in articles if "ISLAMABAD:" in a["text"]]
    assert islamabad and islamabad[0]["text"].startswith("ISLAMABAD:")


def test_real_pages_from_a_warc(shared_dir, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.corpus import build_warc

    paths = build_warc(str(tmp_path / "real"), 40, files=2)
    out = tmp_path / "out"
    assert run(["--source", "warc", "--input", str(tmp_path / "real-*.warc.gz"), "--output", str(out)]) == 0
    s = summary(out)
    assert len(paths) == 2 and s["inputs"] == 40
    assert s["articles"] + s["filtered"] + s["failed"] == 40
    articles = read(out, "articles")
    assert len(articles) >= 30 and all(a["text"].strip() for a in articles)


def test_missing_input_exits_2(tmp_path, capsys):
    assert (
        run(["--source", "warc", "--input", str(tmp_path / "none-*.warc.gz"), "--output", str(tmp_path / "o")])
        == EXIT_USAGE
    )
    assert "matches no file" in capsys.readouterr().err


def test_bad_config_exits_2_naming_the_key(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("sink:\n  shards: -1\n")
    assert run(["--config", str(cfg), "--input", "x", "--output", str(tmp_path / "o")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "sink.shards" in err and "Traceback" not in err


def test_bad_flag_exits_2(capsys):
    assert run(["--source", "carrier-pigeon"]) == EXIT_USAGE


def test_a_replacing_rerun_leaves_no_link_to_the_articles_it_removed(sample_run, tmp_path):
    """A re-run in the default replace mode removes the earlier run's articles, so its own
    rows must not point at them: no duplicate_of, no story row listing an article that is gone."""
    out = tmp_path / "out"
    shutil.copytree(sample_run, out)
    original = next(a for a in read(out, "articles") if a["source"] == "harbourgazette.example")
    copy = {"url": "https://mirror.example/bridge", "text": original["text"], "title": original["title"]}
    copy["published"] = original["published_at"].isoformat()
    (tmp_path / "copy.jsonl").write_text(json.dumps(copy) + "\n")
    assert run(["--source", "jsonl", "--input", str(tmp_path / "copy.jsonl"), "--output", str(out)]) == 0

    articles = read(out, "articles")
    assert [a["url"] for a in articles] == ["https://mirror.example/bridge"]
    assert articles[0]["duplicate_of"] is None
    (story,) = read(out, "stories")
    assert story["story_id"] == articles[0]["story_id"]
    assert story["article_ids"] == [articles[0]["article_id"]] and story["size"] == 1
    s = summary(out)
    assert s["articles"] == 1 and s["duplicates"] == 0 and s["stories"] == 1
