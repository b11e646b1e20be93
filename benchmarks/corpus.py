"""Build benchmark WARC corpora from ../shared/data/trafilatura_eval (never committed).

Pages are repeated under distinct URLs when more are asked for than exist, so a corpus of any
size has the page mix of the evaluation set.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
EVAL = SHARED / "data" / "trafilatura_eval"


def eval_pages() -> list[tuple[str, bytes]]:
    """(url, raw html bytes) of every page in trafilatura_eval's annotations, sorted by URL."""
    data = json.loads((EVAL / "evaldata.json").read_text(encoding="utf-8"))
    pages = []
    for url, item in sorted(data.items()):
        for folder in ("eval", "cache"):
            path = EVAL / folder / (item["file"] + ".gz")
            if path.exists():
                pages.append((url, gzip.decompress(path.read_bytes())))
                break
    return pages


def build_warc(path: str, size: int, *, files: int = 1) -> list[str]:
    """Write ``size`` pages as ``files`` WARC.gz files named ``<path>-NNN.warc.gz``."""
    from transforms.sources import write_warc

    pages = eval_pages()
    if not pages:
        raise SystemExit(f"no pages under {EVAL}")
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    out = []
    per_file = -(-size // files)
    for f in range(files):
        chunk = []
        for i in range(f * per_file, min(size, (f + 1) * per_file)):
            url, html = pages[i % len(pages)]
            copy = i // len(pages)
            if copy:
                url = f"{url}{'&' if '?' in url else '?'}copy={copy}"
            chunk.append((url, html, start + timedelta(minutes=i), "text/html"))
        target = f"{path}-{f:03d}.warc.gz"
        write_warc(target, chunk)
        out.append(target)
    return out
