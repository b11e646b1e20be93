"""transforms.knownindex: the known articles of an appending run, kept as sorted integers,
behave as the set and dicts of strings they replace, and pickle small once stored."""

import hashlib
import pickle
import random

import pyarrow as pa
import pytest

from transforms import knownindex
from transforms.knownindex import HexMap, HexSet, known_from_table


def hex16(seed: object) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()[:16]


def test_hexset_is_the_set_it_was_built_from():
    values = [hex16(i) for i in range(500)] + ["not-hex", "ABCDEF0123456789", "00", hex16(3)]
    index = HexSet.of(values)
    assert len(index) == len(set(values))
    assert set(index) == set(values)
    for probe in [*values, hex16("absent"), "ffffffffffffffff", "0000000000000000", "", "x" * 16]:
        assert (probe in index) == (probe in set(values)), probe
    assert "abcdef0123456789" not in index  # upper-case hex is another string
    assert 5 not in index and None not in index


def test_hexset_union_and_empty():
    a, b = HexSet.of([hex16(1), "odd"]), HexSet.of([hex16(2), hex16(1), "odd2"])
    assert set(a | b) == {hex16(1), hex16(2), "odd", "odd2"}
    assert len(HexSet()) == 0 and hex16(1) not in HexSet()
    assert set(HexSet() | a) == set(a)


def test_hexmap_keeps_the_first_value_as_dict_building_would():
    rng = random.Random(7)
    pairs = [(hex16(rng.randrange(300)), hex16(rng.randrange(10**6))) for _ in range(1000)]
    pairs += [("odd-key", hex16(1)), (hex16(2), "odd-value"), ("odd-key", hex16(9))]
    expected: dict[str, str] = {}
    for key, value in pairs:
        expected.setdefault(key, value)
    index = HexMap.of(pairs)
    assert dict(index) == expected
    assert len(index) == len(expected)
    assert index.get(hex16("absent")) is None and index.get("odd-key") == hex16(1)
    with pytest.raises(KeyError):
        index[hex16("absent")]


def test_first_wins_is_a_merge_where_the_earlier_mapping_stays():
    older = HexMap.of([(hex16(1), hex16(10)), (hex16(2), hex16(20)), ("odd", hex16(30)), (hex16(5), "v-old")])
    newer = HexMap.of([(hex16(2), hex16(21)), (hex16(3), hex16(31)), ("odd", hex16(99)), (hex16(5), hex16(50))])
    newer2 = HexMap.of([(hex16(1), "v-new"), (hex16(6), hex16(60))])
    merged = older.first_wins(newer).first_wins(newer2)
    assert dict(merged) == {**dict(newer2), **dict(newer), **dict(older)}
    assert merged[hex16(5)] == "v-old" and merged[hex16(1)] == hex16(10)
    assert len(merged) == len({**dict(newer2), **dict(newer), **dict(older)})


def test_pickles_whole_until_stored_then_as_its_url(tmp_path):
    index = HexMap.of((hex16(i), hex16(-i)) for i in range(20_000))
    ids = HexSet.of(hex16(i) for i in range(20_000))
    assert dict(pickle.loads(pickle.dumps(index))) == dict(index)
    assert set(pickle.loads(pickle.dumps(ids))) == set(ids)
    inline = len(pickle.dumps(index))
    assert inline > 20_000 * 16
    url = str(tmp_path / "known" / "hashes.npz")
    knownindex.store(url, index)
    knownindex.store(str(tmp_path / "known" / "ids.npz"), ids)
    assert len(pickle.dumps(index)) < 1_000  # the URL only
    knownindex._LOADED.clear()  # as a worker process that has not read it yet
    again = pickle.loads(pickle.dumps(index))
    assert again is not index and again == index and dict(again) == dict(index)
    assert pickle.loads(pickle.dumps(index)) is again  # read once per process
    ids_again = pickle.loads(pickle.dumps(ids))
    assert set(ids_again) == set(ids) and hex16(7) in ids_again


def test_stored_keeps_entries_that_are_not_hex(tmp_path):
    index = HexMap.of([(hex16(1), hex16(2)), ("odd", "value"), (hex16(3), "x")])
    knownindex.store(f"file://{tmp_path}/m.npz", index)
    knownindex._LOADED.clear()
    assert dict(pickle.loads(pickle.dumps(index))) == dict(index)


def _table(rows):
    names = ["article_id", "content_hash", "duplicate_of", "story_id"]
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


def _as_python(found):
    ids, hashes, stories = found
    return set(ids), dict(hashes), dict(stories)


@pytest.mark.parametrize("odd", [False, True])
def test_known_from_table_in_numpy_equals_the_python_rules(odd):
    rng = random.Random(3)
    rows = []
    for i in range(3000):
        content = hex16(f"h{rng.randrange(800)}") if rng.random() > 0.05 else rng.choice(["", None])
        duplicate = None if rng.random() > 0.2 else hex16(rng.randrange(3000))
        story = hex16(f"s{rng.randrange(900)}") if rng.random() > 0.1 else rng.choice(["", None])
        rows.append((hex16(i), content, duplicate, story))
    rows.append((hex16(5), hex16("h1"), None, hex16("s-again")))  # an id read twice: the last row's story
    if odd:  # a hand-written output: other ids take the Python path, same rules
        rows.append(("hand-made", hex16("h1"), None, "story-x"))
    table = _table(rows)
    assert _as_python(known_from_table(table)) == _as_python(knownindex._known_in_python(table.to_pydict()))
    ids, hashes, stories = _as_python(known_from_table(table))
    assert ids == {r[0] for r in rows}
    for content_hash, article_id in hashes.items():
        holders = [r[0] for r in rows if r[1] == content_hash and r[2] is None]
        assert article_id == min(holders)


def test_column_u64_refuses_what_is_not_sixteen_lower_hex_digits():
    assert knownindex.column_u64(pa.array(["0123456789abcdef"])).tolist() == [0x0123456789ABCDEF]
    for values in (["0123456789ABCDEF"], ["0123456789abcde", "0123456789abcdef0"], ["0123456789abcde "], [None]):
        assert knownindex.column_u64(pa.array(values, pa.string())) is None, values
    assert len(knownindex.column_u64(pa.array([], pa.string()))) == 0


def test_growth_benchmark_outputs_are_what_an_appending_run_reads(tmp_path):
    from benchmarks.growth import fill_output, merge_seconds
    from transforms.sinks import existing_articles

    fill_output(tmp_path / "out", 30)
    ids, hashes, stories = existing_articles(str(tmp_path / "out"))
    assert len(ids) == 30 and len(hashes) == 30 and len(stories) == 30
    assert len(set(dict(stories).values())) == 10  # three articles per story
    assert merge_seconds(30) >= 0


def test_a_process_keeps_only_the_latest_stored_indexes(tmp_path):
    # a backfill stores three indexes per batch in the process that plans the batches
    for i in range(3 * knownindex._LOADED_KEPT):
        knownindex.store(str(tmp_path / f"b{i}.npz"), HexSet.of([hex16(i)]))
    assert len(knownindex._LOADED) == knownindex._LOADED_KEPT
    assert str(tmp_path / f"b{3 * knownindex._LOADED_KEPT - 1}.npz") in knownindex._LOADED


@pytest.mark.parametrize("odd", [False, True])
def test_known_from_batches_equals_the_whole_table(odd):
    rng = random.Random(11)
    rows = [
        (hex16(i), hex16(f"h{rng.randrange(50)}"), None if rng.random() > 0.2 else hex16(0), hex16(f"s{i % 40}"))
        for i in range(400)
    ]
    rows.append((hex16(3), hex16("h-late"), None, hex16("s-late")))  # id 3 again, later: its story wins
    if odd:
        rows.append(("hand-made", hex16("h1"), None, "story-x"))  # the last batch is not all hex
    table = _table(rows)
    batches = table.to_batches(max_chunksize=37)
    assert len(batches) > 5
    whole = _as_python(known_from_table(table))
    assert _as_python(knownindex.known_from_batches(batches, lambda: table)) == whole
    assert whole == _as_python(knownindex._known_in_python(table.to_pydict()))
    assert _as_python(knownindex.known_from_batches([], lambda: table[:0])) == (set(), {}, {})
