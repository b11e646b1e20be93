"""Command-line flags of ``python -m pipeline.main`` / ``storybeam`` (see CONTRACT.md).

Our own flags are parsed here; everything else is handed to Beam's ``PipelineOptions``
(``--runner``, ``--direct_num_workers``, ``--project``, ``--streaming`` ...). A flag that neither
we nor any of Beam's options classes know stops the run (``check_beam_flags``): Beam itself only
warns and drops it, so ``--ouput X`` ran on and wrote to the default output.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
from collections.abc import Sequence
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
    parser.add_argument("--version", action="store_true", help="print the versions of storybeam and its libraries")
    return parser


def versions() -> str:
    """One line: storybeam's version and those of the libraries whose behaviour shapes the
    output (for bug reports and for comparing runs)."""
    import platform
    from importlib import metadata

    def of(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    libraries = ("apache-beam", "trafilatura", "feedparser", "fastwarc", "pyarrow", "fsspec")
    found = ", ".join(f"{name} {of(name)}" for name in libraries)
    return f"storybeam {of('storybeam')} ({found}; Python {platform.python_version()})"


def _beam_parser() -> argparse.ArgumentParser:
    """A parser of every flag Beam knows, built as ``PipelineOptions.get_all_options`` builds
    it: each ``PipelineOptions`` subclass adds its own (``_add_argparse_args``). Errors are
    UsageErrors (Beam's parser would exit)."""
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    class Parser(_BeamArgumentParser):  # the subclass for add_value_provider_argument
        def error(self, message: str):
            raise UsageError(message)

    parser = Parser(allow_abbrev=False, add_help=False)
    classes: dict[str, type] = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)  # Beam's own de-duplication
    for cls in classes.values():
        cls._add_argparse_args(parser)
    return parser


def _import_runner(flags: Sequence[str]) -> None:
    """Import the module of the runner named by --runner, as Beam does when it creates the
    runner: a runner's own options class (e.g. ``DaskOptions``) is known only from then on."""
    from apache_beam.runners.runner import _RUNNER_MAP

    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--runner")
    name = (pre.parse_known_args(list(flags))[0].runner or "").strip()
    path = _RUNNER_MAP.get(name.lower(), _RUNNER_MAP.get(name.lower() + "runner", name))
    if "." in path:
        try:
            importlib.import_module(path.rsplit(".", 1)[0])
        except ImportError:  # Beam reports a runner it cannot load when it creates it
            pass


def check_beam_flags(flags: Sequence[str]) -> None:
    """Raise UsageError naming the first of ``flags`` (what our parser left) that no Beam
    options class knows, with the closest known flag as a suggestion, or a bad value of a
    known one. Beam would drop an unknown flag with a warning and run without it."""
    _import_runner(flags)
    parser = _beam_parser()
    _, unknown = parser.parse_known_args(list(flags))
    if not unknown:
        return
    first = next((arg for arg in unknown if arg.startswith("-")), None)
    if first is None:
        raise UsageError(f"unexpected argument {unknown[0]!r} (every value follows its flag, e.g. --input X)")
    name = first.split("=", 1)[0]
    known = [
        option[2:]
        for p in (make_parser(), parser)
        for action in p._actions
        for option in action.option_strings
        if option.startswith("--")
    ]
    # compared without the dashes, which every flag shares and which would make any two look alike
    close = difflib.get_close_matches(name.lstrip("-"), known, n=1, cutoff=0.7)
    if close:
        raise UsageError(f"unknown flag {name} (did you mean --{close[0]}?)")
    raise UsageError(f"unknown flag {name}: neither a storybeam flag nor a Beam pipeline option (see --help)")


def parse_args(argv: list[str]) -> CliArgs:
    ns, rest = make_parser().parse_known_args(argv)
    if rest:
        check_beam_flags(rest)
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
