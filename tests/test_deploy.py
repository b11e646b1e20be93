"""Deployment path without a cloud account: the Dataflow job graph is built offline.

``--dry_run=True`` makes Beam's DataflowRunner translate the pipeline, stage nothing and submit
nothing; ``--no_auth`` skips credentials. The worker package is still built from setup.py
(``--setup_file``), so packaging is checked too. conftest.py keeps google-auth away from the
metadata server.
"""

from __future__ import annotations

import pytest

pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")

DRY_RUN = [
    "--runner", "DataflowRunner", "--project", "storybeam-dry-run", "--region", "europe-west1",
    "--temp_location", "gs://storybeam-dry/tmp", "--staging_location", "gs://storybeam-dry/staging",
    "--dry_run=True", "--no_auth", "--sdk_location=container",
]  # fmt: skip

STREAMING_STAGES = [
    "PollTicks", "ReadFeeds", "ExtractMainText", "CleanText", "Fingerprint", "AssignTopics",
    "GateLateArticles", "WindowStories", "CommitStream",
]  # fmt: skip
BATCH_STAGES = [
    "ReadDocuments",
    "ExtractMainText",
    "CleanText",
    "Fingerprint",
    "AssignTopics",
    "GroupStories",
    "WriteOutputs",
]


def dry_run(argv: list[str], streaming: bool):
    """Plan like ``python -m pipeline.main`` would, build the graph, 'submit' it -> (runner, result)."""
    import apache_beam as beam
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner

    from pipeline.build import build_pipeline
    from pipeline.main import plan_run
    from pipeline.streaming import build_streaming_pipeline

    plan, options, standard = plan_run(argv + DRY_RUN)
    runner = DataflowRunner()
    pipeline = beam.Pipeline(runner=runner, options=options)
    if streaming:
        build_streaming_pipeline(pipeline, plan, local=False)
    else:
        build_pipeline(pipeline, plan)
    result = pipeline.run()
    result.wait_until_finish()
    return runner, result


def top_level(runner) -> set[str]:
    return {t.unique_name for t in runner.proto_pipeline.components.transforms.values() if "/" not in t.unique_name}


def all_names(runner) -> set[str]:
    return {t.unique_name for t in runner.proto_pipeline.components.transforms.values()}


def test_streaming_dataflow_job_graph_builds_offline(repo_root):
    runner, result = dry_run(
        ["--config", str(repo_root / "configs" / "dataflow.yaml"), "--streaming", "--poll-interval", "300"]
        + ["--input", "https://news.example/feed.xml", "--output", "gs://storybeam-dry/news"]
        + ["--setup_file", str(repo_root / "setup.py")],
        streaming=True,
    )
    assert result.state == "DONE"
    assert set(STREAMING_STAGES) <= top_level(runner)
    names = all_names(runner)
    # unbounded ticks from PeriodicImpulse (the scripted local ticks are for the direct runner only)
    assert any(n.startswith("PollTicks/PeriodicImpulse") for n in names)
    assert not any("ScriptedTicks" in n for n in names)
    for stage in (
        "GateLateArticles/LateGate",
        "WindowStories/GroupByTopic",
        "CommitStream/CommitFiles",
        "ReadFeeds/PollFeed",
    ):
        assert any(n.startswith(stage) for n in names), stage
    assert result.job.proto.type.name == "JOB_TYPE_STREAMING"
    staged = {
        dep.role_payload for env in runner.proto_pipeline.components.environments.values() for dep in env.dependencies
    }
    assert any(b"workflow.tar.gz" in payload for payload in staged)  # setup.py packaged for the workers


def test_batch_dataflow_job_graph_builds_offline(repo_root):
    sample = repo_root / "configs" / "sample" / "sample.warc.gz"
    runner, result = dry_run(
        ["--source", "warc", "--input", str(sample), "--output", "gs://storybeam-dry/news"], streaming=False
    )
    assert result.state == "DONE"
    assert set(BATCH_STAGES) <= top_level(runner)
    assert result.job.proto.type.name == "JOB_TYPE_BATCH"


def test_dataflow_config_loads(repo_root):
    from pipeline.config import load_config

    cfg = load_config(repo_root / "configs" / "dataflow.yaml")
    assert cfg.run.source == "feeds" and cfg.fetch.allow_hosts == ()
