"""Command-line flags of ``python -m pipeline.main`` / ``storybeam`` (see CONTRACT.md).

Our own flags are parsed here; everything else is handed to Beam's ``PipelineOptions``
(``--runner``, ``--direct_num_workers``, ``--project``, ``--streaming`` ...).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class CliArgs:
    config: str | None
    source: str | None
    inputs: tuple[str, ...]
    output: str | None
    allow_hosts: tuple[str, ...]
    poll_interval: float | None
    stop_after: int | None
    resume: bool
    beam_args: tuple[str, ...]


class UsageError(ValueError):
    """Bad command-line usage (exit 2, no traceback)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would sys.exit(2) itself; keep control in main
        raise UsageError(message)


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="storybeam",
        description="Ingest news (feeds, WARC archives, JSON lines, text) into clean articles and stories (Parquet).",
        epilog="Any other flag is passed to Apache Beam (e.g. --runner, --direct_num_workers, --streaming).",
    )
    parser.add_argument("--config", help="YAML config (default configs/local.yaml)")
    parser.add_argument("--source", choices=("feeds", "warc", "jsonl", "text"), help="where documents come from")
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        dest="inputs",
        metavar="X",
        help="repeatable: feed URLs or a YAML/OPML feed list (feeds), fsspec globs (warc, jsonl, text)",
    )
    parser.add_argument("--output", help="output root: local path or fsspec URL (gs://, s3://, memory://)")
    parser.add_argument(
        "--allow-hosts",
        default="",
        metavar="H[:P],...",
        help="hosts that may be fetched although they resolve to private/loopback addresses (test servers)",
    )
    parser.add_argument("--poll-interval", type=float, metavar="SECONDS", help="feeds: seconds between polls")
    parser.add_argument("--stop-after", type=int, metavar="N", help="feeds: stop after N polls")
    parser.add_argument(
        "--resume", action="store_true", help="skip inputs a previous run fully processed; keep its output"
    )
    return parser


def parse_args(argv: list[str]) -> CliArgs:
    ns, rest = make_parser().parse_known_args(argv)
    if ns.poll_interval is not None and ns.poll_interval <= 0:
        raise UsageError("--poll-interval must be positive")
    if ns.stop_after is not None and ns.stop_after < 1:
        raise UsageError("--stop-after must be at least 1")
    hosts = tuple(h.strip() for h in ns.allow_hosts.split(",") if h.strip())
    return CliArgs(
        config=ns.config,
        source=ns.source,
        inputs=tuple(ns.inputs),
        output=ns.output,
        allow_hosts=hosts,
        poll_interval=ns.poll_interval,
        stop_after=ns.stop_after,
        resume=ns.resume,
        beam_args=tuple(rest),
    )
