"""Tests of the fingerprint stage: URL variants fold to one id, copies share a hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from transforms import fingerprint
from transforms.fingerprint import (
    FingerprintSettings,
    UnionFind,
    article_id_for,
    canonicalize_url,
    content_hash,
    find_duplicates,
    fingerprint_article,
    signature,
)
from transforms.records import Article


@pytest.mark.parametrize(
    "variant",
    [
        "https://www.example.com/news/2024/story-1",
        "HTTPS://WWW.Example.COM/news/2024/story-1/",
        "https://example.com:443/news/2024/story-1#comments",
        "https://www.example.com/news/2024/story-1?utm_source=rss&utm_medium=feed",
        "https://www.example.com/news/2024/story-1?fbclid=abc&gclid=def",
        "https://m.example.com/news/2024/story-1",
        "https://amp.example.com/news/2024/story-1",
        "https://www.example.com/news/2024/story-1/amp",
        "https://www.example.com/news/2024/story-1/amp/",
        "https://www.example.com/news/2024/story-1?amp=1",
        "https://www.example.com/news/./2024/story-1",
        "https://www.example.com/news/2024/story-1?srsltid=AfmBOor&guccounter=1",
        "https://www.example.com/news/2024/story-1?usqp=mq331AQ&amp_js_v=0.1&ttclid=x",
    ],
)
def test_url_variants_of_one_page_share_an_article_id(variant: str) -> None:
    base = "https://example.com/news/2024/story-1"
    assert canonicalize_url(variant) == base
    assert article_id_for(canonicalize_url(variant)) == article_id_for(base)


def test_canonical_url_keeps_what_selects_content() -> None:
    assert canonicalize_url("http://example.com/a?id=2&page=1") == ("http://example.com/a?id=2&page=1")
    # query parameters are sorted, content parameters kept, tracking ones dropped
    assert canonicalize_url("https://example.com/a?page=1&utm_campaign=x&id=2") == ("https://example.com/a?id=2&page=1")
    assert canonicalize_url("https://example.com:8080/a") == "https://example.com:8080/a"
    assert canonicalize_url("https://example.com/") == "https://example.com/"
    assert canonicalize_url("https://example.com/story.amp.html") == ("https://example.com/story.html")
    # different articles stay different
    assert canonicalize_url("https://example.com/a/1") != canonicalize_url("https://example.com/a/2")


def test_an_internationalised_host_is_one_host_in_unicode_and_punycode() -> None:
    unicode, puny = "https://www.bücher.example/neu/1", "https://xn--bcher-kva.example/neu/1"
    assert canonicalize_url(unicode) == canonicalize_url(puny) == puny
    assert canonicalize_url("https://Bücher.example/a") == "https://xn--bcher-kva.example/a"
    # a name the IDNA codec refuses (an empty label) is kept as it is, not dropped
    assert canonicalize_url("https://ü..example/a").startswith("https://ü..example")


def test_non_http_strings_pass_through() -> None:
    assert canonicalize_url("  urn:uuid:1234 ") == "urn:uuid:1234"
    assert canonicalize_url("not a url") == "not a url"
    assert canonicalize_url("http://[::1") == "http://[::1"


def test_article_id_is_stable_hex() -> None:
    article_id = article_id_for("https://example.com/a")
    assert len(article_id) == 16 and int(article_id, 16) >= 0
    # pinned: ids must not change between releases, or re-ingest would mint new ids
    assert article_id == article_id_for("https://example.com/a")


def test_content_hash_ignores_case_whitespace_and_punctuation() -> None:
    a = "Rubio says:  the US seeks\nstronger ties with Pakistan."
    b = "RUBIO SAYS the U.S seeks stronger ties — with Pakistan"
    assert content_hash(a) != content_hash("Rubio says the US seeks weaker ties with Pakistan.")
    assert content_hash(a) == content_hash(a.upper().replace(" ", "\t"))
    assert content_hash("Hello, world!") == content_hash("hello world")
    assert content_hash(a) != content_hash(b)  # "U.S" vs "US" are different words


# --- near duplicates ------------------------------------------------------------------------

WIRE = (
    "The regional water authority said on Monday that reservoir levels had fallen to their "
    "lowest point in twelve years after a dry winter and an early heatwave. Officials asked "
    "households in the eastern valley to cut garden watering by half and warned that "
    "restrictions on filling swimming pools could follow within a fortnight. Farmers' groups "
    "said the cuts to irrigation quotas announced last month had already reduced the "
    "expected harvest of vegetables and fruit, and asked for emergency support. The "
    "authority plans to bring a mothballed desalination plant back into service by August "
    "and to repair leaking mains that lose about a fifth of the treated water supply."
)
T0 = datetime(2024, 6, 3, 8, tzinfo=UTC)


def _article(url: str, text: str, hours: float = 0.0) -> Article:
    article = Article(url=url, fetched_at=T0 + timedelta(hours=hours), text=text)
    return fingerprint_article(article, FingerprintSettings())


def test_settings_validate_band_maths() -> None:
    settings = FingerprintSettings()
    assert settings.bands * settings.rows == settings.num_perm
    assert 0.40 < settings.lsh_threshold < settings.near_dup_jaccard
    with pytest.raises(ValueError, match="^num_perm:"):
        FingerprintSettings(num_perm=100)
    with pytest.raises(ValueError, match="^near_dup_jaccard:"):
        FingerprintSettings(near_dup_jaccard=1.5)


def test_signature_is_deterministic_and_tracks_similarity() -> None:
    settings = FingerprintSettings()
    a = signature(WIRE, settings)
    assert len(a) == settings.num_perm and a == signature(WIRE, settings)
    edited = signature(WIRE.replace("twelve years", "a decade"), settings)
    other = signature("A completely different text about football and the league table.", settings)
    agree = sum(x == y for x, y in zip(a, edited, strict=True)) / len(a)
    assert agree > 0.7
    assert sum(x == y for x, y in zip(a, other, strict=True)) / len(a) < 0.1
    assert signature("", settings) == ()


def test_signature_values_stay_those_of_earlier_runs(monkeypatch) -> None:
    # pinned: signatures are written to the output and compared with those of earlier runs
    settings = FingerprintSettings()
    first = signature(WIRE, settings)
    assert first[:6] == (2334014, 4790443, 34896625, 30320081, 30544873, 7234212)
    assert first[-2:] == (2915903, 38704161)
    assert content_hash(WIRE) == "a27df55565fb3508"
    # nor do they depend on which words the worker's digest cache holds
    monkeypatch.setattr(fingerprint, "DIGEST_CACHE_TOKENS", 10)
    fingerprint._digests.clear()
    assert signature(WIRE, settings) == first


def test_exact_and_near_copies_point_to_the_earliest_article() -> None:
    original = _article("https://paper-a.example/water", WIRE, hours=2)
    retyped = _article("https://paper-b.example/water", WIRE.upper().replace(". ", ".\n"), 5)
    edited = _article(
        "https://paper-c.example/water",
        "By our correspondent. " + WIRE.replace("twelve years", "a decade") + " More soon.",
        hours=1,
    )
    teaser = _article("https://paper-d.example/water", WIRE[: len(WIRE) * 2 // 3], hours=3)
    unrelated = _article(
        "https://paper-e.example/match",
        "The home side won the cup final after a late penalty, ending a run of defeats.",
    )
    articles = [original, retyped, edited, teaser, unrelated]
    groups = find_duplicates(articles, FingerprintSettings())
    # the earliest published article represents the group, whatever the input order
    assert groups == {
        original.article_id: edited.article_id,
        retyped.article_id: edited.article_id,
        teaser.article_id: edited.article_id,
    }
    assert find_duplicates(articles[::-1], FingerprintSettings()) == groups


def test_copies_published_at_the_same_time_are_represented_by_the_first_fetched() -> None:
    """A tie on the published time goes to the first fetched copy, then to the smaller id: the
    same choice a backfill in batches makes, where the copy an earlier batch wrote stays."""
    import dataclasses

    published = T0 - timedelta(days=1)
    copies = [
        dataclasses.replace(_article(f"https://paper-{c}.example/water", WIRE, hours=h), published_at=published)
        for c, h in (("a", 3), ("b", 1), ("c", 2))
    ]
    first = copies[1]
    groups = find_duplicates(copies, FingerprintSettings())
    assert groups == {c.article_id: first.article_id for c in copies if c is not first}
    same_fetch = [dataclasses.replace(c, fetched_at=T0) for c in copies]
    smallest = min(c.article_id for c in same_fetch)
    assert set(find_duplicates(same_fetch, FingerprintSettings()).values()) == {smallest}


def test_union_find_root_is_the_first_item_by_key_in_any_join_order() -> None:
    import itertools

    rank = {"c": 3, "a": 1, "d": 4, "b": 2, "x": 0}
    pairs = [("c", "d"), ("d", "b"), ("b", "a")]  # one chain; "x" joins nothing
    for order in itertools.permutations(pairs):
        groups = UnionFind(key=rank.__getitem__)
        for a, b in order:
            groups.union(b, a)
        assert {item: groups.find(item) for item in rank} == {"a": "a", "b": "a", "c": "a", "d": "a", "x": "x"}
    numbers = UnionFind()  # no key: the smallest item
    numbers.union(5, 2)
    numbers.union(9, 5)
    numbers.union(7, 8)
    assert [numbers.find(i) for i in (2, 5, 9, 7, 8)] == [2, 2, 2, 7, 7]


def test_rewritten_coverage_is_not_a_duplicate() -> None:
    rewrite = _article(
        "https://paper-f.example/drought",
        "Households in the eastern valley are being told to water their gardens half as "
        "often. The water authority blames a dry winter for reservoirs at a twelve-year low "
        "and is reopening a desalination plant. Farmers want emergency help.",
    )
    original = _article("https://paper-a.example/water", WIRE)
    assert find_duplicates([original, rewrite], FingerprintSettings()) == {}


def test_signatures_judge_near_copies_as_the_shingles_do() -> None:
    """Across windows and runs only signatures are at hand: they must reach the decisions of
    the exact shingle check on clear cases (copies, an edited copy, a teaser; other texts)."""
    from transforms.fingerprint import _similar, pack_signature, shingles, signatures_match, unpack_signature

    settings = FingerprintSettings()
    texts = {
        "wire": WIRE,
        "edited": "By our correspondent. " + WIRE.replace("twelve years", "a decade") + " More soon.",
        "teaser": WIRE[: len(WIRE) * 2 // 3],
        "retyped": WIRE.upper().replace(". ", ".\n"),
        "rewrite": (
            "Households in the eastern valley are being told to water their gardens half as "
            "often. The water authority blames a dry winter for reservoirs at a twelve-year low "
            "and is reopening a desalination plant. Farmers want emergency help."
        ),
        "other": "The home side won the cup final after a late penalty, ending a run of defeats.",
    }
    printed = {k: _article(f"https://x.example/{k}", t) for k, t in texts.items()}
    for a in printed.values():  # the count is of distinct shingles (hashes), as the sets have
        assert a.shingle_count == len(shingles(a.text, settings.shingle_size))
    for x in texts:
        for y in texts:
            a, b = printed[x], printed[y]
            packed = unpack_signature(pack_signature(a.signature))
            assert tuple(packed.tolist()) == a.signature
            by_signature = signatures_match(
                packed, a.shingle_count, unpack_signature(pack_signature(b.signature)), b.shingle_count, settings
            )
            exact = x == y or _similar(shingles(a.text, 5), shingles(b.text, 5), settings)
            assert by_signature == exact, (x, y)
    assert not signatures_match(
        unpack_signature(pack_signature(())), 0, unpack_signature(pack_signature(())), 0, settings
    )
    # one signature against many at once: the same answers; rows of another length never match
    from transforms.fingerprint import signature_matches

    rows = np.vstack([np.asarray(printed[k].signature, dtype="<u4") for k in texts])
    counts = np.array([printed[k].shingle_count for k in texts])
    wire = printed["wire"]
    at_once = signature_matches(np.asarray(wire.signature, dtype="<u4"), wire.shingle_count, rows, counts, settings)
    assert at_once.tolist() == [
        signatures_match(np.asarray(wire.signature), wire.shingle_count, row, c, settings)
        for row, c in zip(rows, counts, strict=True)
    ]
    assert at_once.tolist() == [True, True, True, True, False, False]
    assert not signature_matches(np.asarray(wire.signature), wire.shingle_count, rows[:, :64], counts, settings).any()


def test_distinct_count_counts_each_value_once() -> None:
    rng = np.random.default_rng(3)
    for size in (0, 1, 2, 7, 500):
        items = rng.integers(0, 40, size=size, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        assert fingerprint._distinct_count(items) == len(np.unique(items)) == len(set(items.tolist()))
