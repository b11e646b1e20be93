"""Progress on long runs: pass-through steps that log counts and rates every few seconds.

The local runners execute the whole graph inside ``pipeline.run()``, so progress cannot be read
from the driver while the run goes on; each worker process logs its own counts instead
(``progress: <label> <n> (<rate>/s)``), and the Beam counters give the totals at the end.
"""

from __future__ import annotations

import logging
import time

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.records import METRICS_NAMESPACE

LOG = logging.getLogger("storybeam.progress")


class _Progress(beam.DoFn):
    def __init__(self, label: str, interval_s: float):
        self._label, self._interval = label, interval_s
        self._counter = Metrics.counter(METRICS_NAMESPACE, f"progress_{label}")

    def setup(self):
        self._n = 0
        self._started = self._last = time.monotonic()

    def process(self, element):
        self._n += 1
        self._counter.inc()
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            LOG.info("progress: %s %d (%.1f/s in this worker)", self._label, self._n, self._n / (now - self._started))
        yield element

    def teardown(self):
        if getattr(self, "_n", 0):
            elapsed = max(time.monotonic() - self._started, 1e-9)
            LOG.info("progress: %s %d in total in this worker (%.1f/s)", self._label, self._n, self._n / elapsed)


class LogProgress(beam.PTransform):
    """PCollection[T] -> the same PCollection[T], logging counts every ``interval_s``."""

    def __init__(self, label: str, interval_s: float = 30.0):
        super().__init__()
        self._label, self._interval = label, interval_s

    def expand(self, pcoll):
        return pcoll | beam.ParDo(_Progress(self._label, self._interval))
