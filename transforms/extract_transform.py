"""The Beam side of the extract stage: ``ExtractMainText`` around
:func:`transforms.extract.extract_document`.

Kept apart from ``transforms/extract.py`` so that the extraction child process (which imports
that module) never imports Beam; import it as ``transforms.extract.ExtractMainText``.
"""

from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from transforms import records
from transforms.extract import ExtractSettings, ProcessExtractor, extract_document, freeze_startup_heap
from transforms.records import Document, Failure


class _ExtractDoFn(beam.DoFn):
    def __init__(self, settings: ExtractSettings) -> None:
        self._settings = settings
        self._process: ProcessExtractor | None = None

    def setup(self) -> None:
        # The extraction libraries are imported where pages are extracted: here on the first
        # page extracted in this process (extract._run_guarded), else only in the child.
        freeze_startup_heap(libraries=False)
        if self._settings.isolation in ("auto", "process"):
            self._process = ProcessExtractor(self._settings.max_memory_mb)

    def process(self, doc: Document):
        result = extract_document(doc, self._settings, process=self._process)
        if isinstance(result, Failure):
            Metrics.counter(records.METRICS_NAMESPACE, f"{result.stage}_{result.reason}").inc()
            yield TaggedOutput(records.FAILED, result)
        else:
            yield result

    def teardown(self) -> None:
        if self._process is not None:
            self._process.close()


class ExtractMainText(beam.PTransform):
    """PCollection[Document] -> outputs ``ok``: PCollection[Article] (main text + metadata)
    and ``failed``: PCollection[Failure] (stage 'extract': not_html, empty_page, too_large,
    timeout, extract_error, no_text)."""

    def __init__(self, settings: ExtractSettings) -> None:
        super().__init__()
        self._settings = settings

    def expand(self, documents):
        return documents | "Extract" >> beam.ParDo(_ExtractDoFn(self._settings)).with_outputs(records.FAILED, main="ok")
