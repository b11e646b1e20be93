"""Per-host boilerplate learned in one run is removed in the next (state under the output)."""

from __future__ import annotations

import json

import pyarrow.dataset as ds

from pipeline.main import run

TEMPLATE = "Velmora Gazette is published by the Harbour Trust cooperative since 1911"
TOPICS = [
    ("tram", "The city council approved a new tram line along the eastern waterfront after a long debate"),
    ("library", "The central library extended its opening hours on weekends for students preparing exams"),
    ("market", "Farmers at the Saturday market reported strong sales of early spring vegetables this week"),
    ("ferry", "A second ferry will serve the island route during the summer season, the operator said"),
    ("park", "Volunteers planted two hundred trees in the northern park on Sunday morning"),
]


def page(slug: str, sentence: str) -> dict:
    body = f"{sentence}. " * 3 + "Officials said more details would follow next month."
    return {"url": f"https://gazette.example/{slug}", "text": f"{slug.title()} news\n\n{body}\n\n{TEMPLATE}"}


def test_learned_host_lines_are_removed_in_the_next_run(tmp_path):
    out = tmp_path / "out"
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps(page(s, t)) for s, t in TOPICS[:4]) + "\n")
    assert run(["--source", "jsonl", "--input", str(first), "--output", str(out)]) == 0
    articles = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert len(articles) == 4
    assert all(TEMPLATE not in a["text"] and "host_boilerplate" in a["rules_fired"] for a in articles)
    assert all(any(TEMPLATE in r for r in a["removed"]) for a in articles)  # kept for audit
    assert (out / "_state" / "hosts.json").exists()

    second = tmp_path / "second.jsonl"
    second.write_text(json.dumps(page(*TOPICS[4])) + "\n")  # one article: nothing to learn from
    assert run(["--source", "jsonl", "--input", str(second), "--output", str(out)]) == 0
    (article,) = ds.dataset(str(out / "articles"), format="parquet", partitioning="hive").to_table().to_pylist()
    assert TEMPLATE not in article["text"] and "host_boilerplate" in article["rules_fired"]
