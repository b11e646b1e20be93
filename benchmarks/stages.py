"""Where a pipeline run's time goes, stage by stage, as the local runner executes it.

    python -m benchmarks.stages --source warc --input 'corpus-*.warc.gz' --output out/x \
        [--direct_num_workers=2 --direct_running_mode=multi_processing] [any pipeline.main flag]

Runs ``pipeline.main`` in this process and prints, for each fused stage of the FnApiRunner
(the transforms it fused, shortened), its wall seconds, the CPU seconds of this process (the
runner; the only process with one worker) and of the worker processes (with 2 or more
workers), and how many bundles it ran. A stage's wall time includes the data it receives
from the runner and sends back, so a GroupByKey or a Flatten shows up in the stage after it.

It times ``FnApiRunner._execute_bundle``, a private method of Beam's local runner: with a
Beam release that renames it, the script says so and stops.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.throughput import descendants  # noqa: E402 - after the path is set

_TICK = os.sysconf("SC_CLK_TCK")


def descendants_cpu() -> float:
    """User + system CPU seconds of the running descendants of this process (/proc)."""
    total = 0.0
    for pid in descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def short_name(stage: str, limit: int = 3) -> str:
    """The first ``limit`` transforms a fused stage name lists ("((A)+(B))+(C)"), without
    Beam's prefixes and the runner's numeric suffixes."""
    names: list[str] = []
    for part in re.split(r"\)+\+\(+", stage.strip()):
        part = re.sub(r"^\(+|(?<!\w\))\)+$", "", part.strip())
        part = re.sub(r"^ref_(AppliedPTransform|PCollection_PCollection)_", "", part)
        part = re.sub(r"_\d+$", "", part)
        if part and part not in names:
            names.append(part)
    more = f" +{len(names) - limit}" if len(names) > limit else ""
    return " + ".join(names[:limit]) + more


def main(argv: list[str]) -> int:
    from pipeline import main as pipeline_main
    from pipeline import workerpool

    # As the command line does, before Beam is imported here: leave out Beam's optional parts
    # and fork the worker pool (multi_processing runs), so that the stages are timed as a
    # run of ``pipeline.main`` runs them; ``run`` then finds the pool started.
    workerpool.skip_optional_beam(argv)
    workerpool.start(argv)
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    execute = getattr(fn_runner.FnApiRunner, "_execute_bundle", None)
    if execute is None:
        print("this Beam release has no FnApiRunner._execute_bundle to time", file=sys.stderr)
        return 2
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    order: list[str] = []

    def timed(self, context, bundle_manager, bundle_input):
        wall, cpu, workers = time.perf_counter(), time.process_time(), descendants_cpu()
        try:
            return execute(self, context, bundle_manager, bundle_input)
        finally:
            name = bundle_manager.stage.name
            if name not in spent:
                order.append(name)
            row = spent[name]
            row[0] += time.perf_counter() - wall
            row[1] += time.process_time() - cpu
            row[2] += descendants_cpu() - workers
            row[3] += 1

    fn_runner.FnApiRunner._execute_bundle = timed
    start = time.perf_counter()
    code = pipeline_main.run(argv)
    total = time.perf_counter() - start
    print(f"\n{'wall s':>7} {'runner':>7} {'workers':>7} {'bundles':>7}  stage (transforms fused into it)")
    for name in order:
        wall, cpu, workers, bundles = spent[name]
        print(f"{wall:7.2f} {cpu:7.2f} {workers:7.2f} {bundles:7d}  {short_name(name)}")
    staged = sum(row[0] for row in spent.values())
    print(f"run {total:.2f} s, of which in stages {staged:.2f} s (the rest: planning, graph, commit)")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
