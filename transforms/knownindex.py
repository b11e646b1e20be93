"""What an output already holds, kept as sorted 64-bit integers instead of Python strings.

An appending run (a later batch of a backfill, ``--resume``, ``sink.mode: append``) is given
the article ids, content hashes and story ids of the articles the output holds
(``sinks.existing_articles``), and three DoFns carry them: ``SkipKnownArticles``,
the exact-copy marks of ``GroupStories`` and ``LinkStories``. As a frozenset and dicts of
strings, 300,000 known articles took ~120 MB in each process and ~40 MB pickled, and since the
local runner's workers unpickle a DoFn for every bundle, a 200-page batch appended to them ran
3.4x as long as into an empty output (11.4 -> 39.2 s, peak RSS 0.4 -> 1.2 GB).

Every id the pipeline makes is 16 lower-case hex digits (``article_id_for``, ``content_hash``,
``story_id_for``), i.e. one unsigned 64-bit integer, and string order equals integer order.
``HexSet`` and ``HexMap`` keep such keys (and values) in sorted numpy arrays: 8 bytes per key,
pickled as one buffer, looked up by binary search. Keys or values of any other form (written by
hand or by other tools) are kept in a small dict beside the arrays, so nothing is lost.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Set

import numpy as np

_HEX16 = re.compile(r"[0-9a-f]{16}")
_EMPTY = np.zeros(0, dtype=np.uint64)


def _is_hex16(value: object) -> bool:
    return type(value) is str and len(value) == 16 and _HEX16.fullmatch(value) is not None


def hex_to_u64(values: list[str]) -> np.ndarray:
    """16-hex-digit strings (all of them ``_is_hex16``) as unsigned 64-bit integers."""
    if not values:
        return _EMPTY
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64)


def _u64_to_hex(value: np.uint64) -> str:
    return f"{int(value):016x}"


def _find(keys: np.ndarray, key: object) -> int:
    """Index of ``key`` in the sorted array ``keys``, or -1 (also for anything that is not a
    16-hex-digit string)."""
    if not len(keys) or not _is_hex16(key):
        return -1
    number = np.uint64(int(key, 16))
    at = int(np.searchsorted(keys, number))
    return at if at < len(keys) and keys[at] == number else -1


def column_u64(column) -> np.ndarray | None:
    """A pyarrow string column as uint64 when every value is 16 lower-case hex digits (no
    nulls), else None; ~0.16 s per million values."""
    import pyarrow.compute as pc

    if column.null_count or not len(column):
        return None if column.null_count else _EMPTY
    lengths = pc.min_max(pc.utf8_length(column))
    if lengths["min"].as_py() != 16 or lengths["max"].as_py() != 16:
        return None
    joined = "".join(column.to_pylist())
    if joined != joined.lower():
        return None
    try:
        raw = bytes.fromhex(joined)
    except ValueError:
        return None
    if len(raw) != 8 * len(column):  # fromhex skips white space
        return None
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64)


class _HexKeys:
    """Keys in a sorted uint64 array (``_keys``) and, when not 16 hex digits, in ``_others``."""

    _keys: np.ndarray
    _others: frozenset[str] | dict[str, str]

    def _position(self, key: object) -> int:
        return _find(self._keys, key)

    def __contains__(self, key: object) -> bool:
        return key in self._others or self._position(key) >= 0

    def __len__(self) -> int:
        return len(self._keys) + len(self._others)

    def __iter__(self) -> Iterator[str]:
        yield from map(_u64_to_hex, self._keys)
        yield from self._others


class HexSet(_HexKeys, Set[str]):
    """A read-only set of strings; 16-hex-digit strings are kept as one sorted uint64 array."""

    def __init__(self, keys: np.ndarray = _EMPTY, others: Iterable[str] = ()) -> None:
        self._keys = keys  # sorted, unique
        self._others = frozenset(others)
        self._url = ""  # where ``store`` wrote it: then it pickles as this URL

    @classmethod
    def of(cls, values: Iterable[str]) -> HexSet:
        values = list(values)
        keys = np.unique(hex_to_u64([v for v in values if _is_hex16(v)]))
        return cls(keys, (v for v in values if not _is_hex16(v)))

    def __reduce__(self):
        return (_stored, (self._url,)) if self._url else (HexSet, (self._keys, tuple(self._others)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HexSet):  # Beam's type inference compares the constants a lambda holds
            return np.array_equal(self._keys, other._keys) and self._others == other._others
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __or__(self, other: HexSet) -> HexSet:  # type: ignore[override]
        keys = np.union1d(self._keys, other._keys).astype(np.uint64)
        return HexSet(keys, self._others | other._others)

    def __repr__(self) -> str:
        return f"HexSet({len(self)} keys)"


class HexMap(_HexKeys, Mapping[str, str]):
    """A read-only mapping of strings; entries whose key and value are both 16 hex digits are
    kept as two uint64 arrays sorted by key, the others in a dict."""

    def __init__(self, keys: np.ndarray = _EMPTY, values: np.ndarray = _EMPTY, others: Mapping[str, str] | None = None):
        self._keys = keys  # sorted, unique
        self._values = values
        self._others = dict(others or {})
        self._url = ""  # where ``store`` wrote it: then it pickles as this URL

    def __reduce__(self):
        return (_stored, (self._url,)) if self._url else (HexMap, (self._keys, self._values, self._others))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HexMap):  # Beam's type inference compares the constants a lambda holds
            return (
                np.array_equal(self._keys, other._keys)
                and np.array_equal(self._values, other._values)
                and self._others == other._others
            )
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, str]]) -> HexMap:
        """The mapping of ``pairs``; when a key comes several times, its first value stays."""
        seen: set[str] = set()
        hex_keys: list[str] = []
        hex_values: list[str] = []
        others: dict[str, str] = {}
        for key, value in pairs:
            if key in seen:
                continue
            seen.add(key)
            if _is_hex16(key) and _is_hex16(value):
                hex_keys.append(key)
                hex_values.append(value)
            else:
                others[key] = value
        keys, values = hex_to_u64(hex_keys), hex_to_u64(hex_values)
        order = np.argsort(keys, kind="stable")
        return cls(keys[order], values[order], others)

    def _drop_shadowed(self) -> None:
        """Keep a key in one place only: an entry of ``_others`` (which ``get`` asks first)
        removes the same key from the arrays."""
        shadowed = [k for k in self._others if _is_hex16(k)]
        if shadowed and len(self._keys):
            keep = ~np.isin(self._keys, hex_to_u64(shadowed))
            self._keys, self._values = self._keys[keep], self._values[keep]

    def __getitem__(self, key: str) -> str:
        if key in self._others:
            return self._others[key]
        at = self._position(key)
        if at < 0:
            raise KeyError(key)
        return _u64_to_hex(self._values[at])

    def first_wins(self, later: HexMap) -> HexMap:
        """This mapping with the entries of ``later`` whose keys it does not have."""
        keys = np.concatenate([self._keys, later._keys])
        values = np.concatenate([self._values, later._values])
        keys, first = np.unique(keys, return_index=True)  # the first occurrence: ours
        merged = HexMap(keys, values[first], {})
        mine = set(self._others)
        merged._others = dict(self._others)
        for key, value in later._others.items():
            if key not in mine and self._position(key) < 0:
                merged._others[key] = value
        if merged._others:  # a later hex entry under a key our others hold loses to it
            merged._drop_shadowed()
        return merged

    def __repr__(self) -> str:
        return f"HexMap({len(self)} entries)"


#: stored indexes this process has read (``_stored``), the latest few: each batch of a
#: backfill stores its own
_LOADED: dict[str, HexSet | HexMap] = {}
_LOADED_KEPT = 6


def store(url: str, index: HexSet | HexMap) -> HexSet | HexMap:
    """Write ``index`` to ``url`` (any fsspec URL the workers can read; an ``.npz`` file) and
    return it marked as stored there: pickled, it is then just the URL, and each process reads
    the file once (``_stored``). Beam's pickler bz2-compresses every DoFn and a worker unpickles
    the DoFns of a stage for every bundle: 12 MB of arrays in three DoFns (300,000 known
    articles) cost ~0.3 s per bundle and ~10 s per 200-page run."""
    import fsspec

    others = sorted(index._others.items()) if isinstance(index, HexMap) else sorted((k, "") for k in index._others)
    arrays = {"keys": index._keys, "others": np.array(json.dumps(others))}
    if isinstance(index, HexMap):
        arrays["values"] = index._values
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with fsspec.open(url, "wb", auto_mkdir=True) as handle:
        handle.write(buffer.getvalue())
    index._url = url
    _remember(url, index)
    return index


def _remember(url: str, index: HexSet | HexMap) -> None:
    while len(_LOADED) >= _LOADED_KEPT:  # the oldest goes: earlier batches' indexes are done
        del _LOADED[next(iter(_LOADED))]
    _LOADED[url] = index


def _stored(url: str) -> HexSet | HexMap:
    """The index ``store`` wrote to ``url``, read once per process."""
    found = _LOADED.get(url)
    if found is None:
        import fsspec

        with fsspec.open(url, "rb") as handle:
            arrays = np.load(io.BytesIO(handle.read()))
        others = json.loads(str(arrays["others"]))
        if "values" in arrays:
            found = HexMap(arrays["keys"], arrays["values"], dict(others))
        else:
            found = HexSet(arrays["keys"], (key for key, _ in others))
        found._url = url
        _remember(url, found)
    return found


def known_from_table(table) -> tuple[HexSet, HexMap, HexMap]:
    """(every article id; content_hash -> the smallest id of the articles holding it that are
    no duplicate; that id -> its story_id, when it has one) of a pyarrow table with the
    columns article_id, content_hash, duplicate_of and story_id (``sinks.existing_articles``).
    In numpy when every id is 16 hex digits, as storybeam writes them; else in Python."""
    return known_from_batches([table], lambda: table)


def known_from_batches(batches: Iterable, whole) -> tuple[HexSet, HexMap, HexMap]:
    """``known_from_table`` of the rows of ``batches`` (pyarrow tables or record batches, in
    row order), holding only one batch's strings at a time; ``whole()`` gives all rows as one
    table when some id is not hex (the Python rules then need them together)."""
    found: list[tuple[np.ndarray, ...]] = []
    for batch in batches:
        arrays = _hex_columns(batch)
        if arrays is None:
            return _known_in_python(whole().to_pydict())
        found.append(arrays)
    if not found:
        return HexSet(), HexMap(), HexMap()
    ids, original_ids, original_hashes, placed_ids, placed_stories = (
        np.concatenate([arrays[k] for arrays in found]) for k in range(5)
    )
    order = np.lexsort((original_ids, original_hashes))  # by hash, then id: the smallest first
    hash_keys, first = np.unique(original_hashes[order], return_index=True)
    hash_values = original_ids[order][first]
    # article id -> story: the last row of an id wins (as a dict built in row order would)
    chosen = np.isin(placed_ids, hash_values)
    story_keys, last = np.unique(placed_ids[chosen][::-1], return_index=True)
    story_values = placed_stories[chosen][::-1][last]
    return HexSet(np.unique(ids)), HexMap(hash_keys, hash_values), HexMap(story_keys, story_values)


def _hex_columns(batch) -> tuple[np.ndarray, ...] | None:
    """(article ids; ids and hashes of the rows that are no duplicate and have a hash; ids and
    stories of the rows with a story) of one batch as uint64, or None when one is not hex."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = (pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch).combine_chunks()
    has_hash = pc.and_(pc.is_valid(table["content_hash"]), pc.not_equal(table["content_hash"], ""))
    originals = table.filter(pc.and_(pc.is_null(table["duplicate_of"]), pc.fill_null(has_hash, False)))
    placed = table.filter(pc.fill_null(pc.not_equal(table["story_id"], ""), False))
    arrays = (
        column_u64(table["article_id"]),
        column_u64(originals["article_id"]),
        column_u64(originals["content_hash"]),
        column_u64(placed["article_id"]),
        column_u64(placed["story_id"]),
    )
    return None if any(a is None for a in arrays) else arrays


def _known_in_python(table: Mapping[str, list]) -> tuple[HexSet, HexMap, HexMap]:
    hashes: dict[str, str] = {}
    for article_id, content_hash, duplicate_of in zip(
        table["article_id"], table["content_hash"], table["duplicate_of"], strict=True
    ):
        if content_hash and duplicate_of is None and article_id < hashes.get(content_hash, "\uffff"):
            hashes[content_hash] = article_id
    story_of = dict(zip(table["article_id"], table["story_id"], strict=True))
    stories = ((a, story_of[a]) for a in hashes.values() if story_of[a])
    return HexSet.of(table["article_id"]), HexMap.of(hashes.items()), HexMap.of(stories)
