"""gs:// and s3:// input and output through fsspec, against local emulators."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fsspec
import pyarrow.dataset as ds
import pytest

from pipeline.main import EXIT_USAGE, run
from tests.cloud import gcs_emulator, s3_server
from transforms.fsutil import OutputError, check_output
from transforms.sources import SourceSettings, _split_file, read_warc_file, write_warc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sample_pages():
    sys.path.insert(0, str(REPO / "configs" / "sample"))
    from make_sample import pages

    return pages()


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_warc_in_and_parquet_out_on_object_storage(scheme, sample_pages, tmp_path):
    server = gcs_emulator if scheme == "gs" else s3_server
    with server("storybeam-test"):
        root = f"{scheme}://storybeam-test"
        local = tmp_path / "a.warc.gz"
        write_warc(str(local), sample_pages)
        fs = fsspec.filesystem(scheme)
        fs.put(str(local), "storybeam-test/in/a.warc.gz")
        # byte ranges through the remote filesystem: sizes, seeks, one read per record
        remote = f"{root}/in/a.warc.gz"
        units = _split_file(remote, "warc", 2000)
        assert len(units) >= 4
        ranged = [d.url for u in units for d in read_warc_file(*u[:1], SourceSettings(), None, *u[1:])]
        assert ranged == [d.url for d in read_warc_file(remote, SourceSettings())] and len(ranged) == 9
        assert run(["--source", "warc", "--input", f"{root}/in/*.warc.gz", "--output", f"{root}/out"]) == 0

        summary = json.loads(fs.cat("storybeam-test/out/summary.json"))
        assert summary["inputs"] == 9 and summary["articles"] == 7 and summary["unaccounted"] == 0
        articles = ds.dataset(
            "storybeam-test/out/articles", format="parquet", partitioning="hive", filesystem=fs
        ).to_table()
        assert articles.num_rows == 7
        assert all(url.startswith("https://") for url in articles.column("url").to_pylist())
        assert not fs.exists("storybeam-test/out/_tmp/" + summary["run_id"])

        # an appending run there: what the output holds is stored beside the run, on the
        # bucket, and read back by the stages (knownindex.store)
        bridge = sample_pages[0]
        reprint = (bridge[0].replace("harbourgazette", "reprints"), *bridge[1:])
        write_warc(str(tmp_path / "b.warc.gz"), [bridge, reprint])
        fs.put(str(tmp_path / "b.warc.gz"), "storybeam-test/in/b.warc.gz")
        assert run(["--source", "warc", "--input", f"{root}/in/*.warc.gz", "--output", f"{root}/out", "--resume"]) == 0
        later = json.loads(fs.cat("storybeam-test/out/summary.json"))
        assert (later["inputs"], later["articles"], later["failures_by_reason"]) == (
            2,
            1,
            {"filter/already_ingested": 1},
        )
        rows = ds.dataset("storybeam-test/out/articles", format="parquet", partitioning="hive", filesystem=fs)
        by_url = {r["url"]: r for r in rows.to_table().to_pylist()}
        assert by_url[reprint[0]]["duplicate_of"] == by_url[bridge[0]]["article_id"]
        assert by_url[reprint[0]]["story_id"] == by_url[bridge[0]]["story_id"]
        assert not fs.exists("storybeam-test/out/_tmp/" + later["run_id"])


def test_an_output_bucket_out_of_reach_is_refused_before_any_work(tmp_path, capsys):
    with s3_server("storybeam-probe"):
        check_output("s3://storybeam-probe/out")  # writable: the probe leaves nothing behind
        assert fsspec.filesystem("s3").ls("storybeam-probe") == []
        with pytest.raises(OutputError, match="output s3://no-such-bucket/out: cannot write there"):
            check_output("s3://no-such-bucket/out")
        sample = str(REPO / "configs" / "sample" / "sample.warc.gz")
        assert run(["--source", "warc", "--input", sample, "--output", "s3://no-such-bucket/out"]) == EXIT_USAGE
        err = capsys.readouterr().err.strip()
        assert err.startswith("storybeam: error: output s3://no-such-bucket/out") and "\n" not in err
