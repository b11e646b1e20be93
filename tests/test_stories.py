"""Tests of topics and stories: the seed articles form one story, ids survive windows and runs."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from transforms import stories
from transforms.fingerprint import FingerprintSettings, fingerprint_article
from transforms.records import Article
from transforms.stories import (
    _ENTITY,
    StorySettings,
    assign_topic,
    cluster_stories,
    cluster_window,
    compute_text_profile,
    link_clusters,
    load_topics,
    mark_exact_copies,
    profile_key,
    read_state,
    story_id_for,
    write_state,
)

T0 = datetime(2025, 10, 25, 6, tzinfo=UTC)

BIKE_LANES = (
    "City council approves budget for new bike lanes",
    (
        "The city council voted on Tuesday to approve a budget that funds forty kilometres of "
        "protected bike lanes across the northern districts. The mayor said construction would "
        "begin in the spring and that the plan would make streets safer for children cycling to "
        "school. Opponents on the council argued that the money should go to road repairs."
    ),
)
TOKYO_VISIT = (
    "Secretary of State meets Japanese foreign minister on trade",
    (
        "The US Secretary of State met Japan's foreign minister in Tokyo on Monday to discuss "
        "trade and security in the Pacific. Both sides said they would deepen their strategic "
        "partnership and expand cooperation on semiconductors and shipping. The minister said "
        "Japan values its long alliance with Washington."
    ),
)


def make(url: str, title: str, text: str, hours: float = 0.0, **fields) -> Article:
    article = Article(url=url, fetched_at=T0 + timedelta(hours=hours), text=text, title=title)
    article = fingerprint_article(article, FingerprintSettings())
    return article.__class__(**{**_fields(article), **fields}) if fields else article


def _fields(article: Article) -> dict:
    return {name: getattr(article, name) for name in article.__slots__}


def read_text_article(path: Path, hours: float) -> Article:
    """Like the text source: the first line is the title when short and without a full stop."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line]
    first = lines[0]
    has_title = len(first) < 150 and not first.endswith(".")
    body = "\n".join(lines[1:] if has_title else lines)
    return make(f"https://seed.example/{path.stem}", first if has_title else "", body, hours)


@pytest.fixture(scope="module")
def seeds(seeds_dir: Path) -> list[Article]:
    return [read_text_article(p, i * 3) for i, p in enumerate(sorted(seeds_dir.glob("*.txt")))]


@pytest.fixture(scope="module")
def topics(repo_root: Path):
    return load_topics(repo_root / "configs" / "topics.yaml")


# --- settings and topics ------------------------------------------------------------------


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="^window_hours:"):
        StorySettings(window_hours=0)
    with pytest.raises(ValueError, match="^cluster_threshold:"):
        StorySettings(cluster_threshold=1.5)
    with pytest.raises(ValueError, match="^term_weight:"):
        StorySettings(term_weight=0, entity_weight=0, title_weight=0, number_weight=0)
    with pytest.raises(ValueError, match="^number_weight:"):
        StorySettings(number_weight=-1)


def test_topic_is_explained_by_matched_terms(topics) -> None:
    topic, terms = assign_topic(make("https://a.example/1", *TOKYO_VISIT), topics)
    assert topic == "politics"
    assert "secretary of state" in terms and "foreign minister" in terms


def test_feed_category_counts_and_fallback_is_general(topics) -> None:
    bland = make("https://a.example/2", "A quiet afternoon", "Nothing much happened here.")
    assert assign_topic(bland, topics) == ("general", ())
    hinted = make("https://a.example/3", "A quiet afternoon", "Nothing.", categories=("Sport",))
    assert assign_topic(hinted, topics) == ("sports", ("category:sport",))


def test_topic_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "topics.yaml"
    bad.write_text("topics:\n  politics:\n    keywordz: [vote]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="^topics.politics.keywordz:"):
        load_topics(bad)


def test_seed_topics_agree(seeds, topics) -> None:
    # one event must not be split across topic buckets
    assert {assign_topic(a, topics)[0] for a in seeds} == {"politics"}


# --- clustering ---------------------------------------------------------------------------


def test_seed_articles_form_one_story_and_unrelated_ones_stay_out(seeds) -> None:
    bikes = make("https://city.example/bikes", *BIKE_LANES, hours=4)
    tokyo = make("https://wire.example/tokyo", *TOKYO_VISIT, hours=5)
    clusters = cluster_stories([*seeds, bikes, tokyo], StorySettings())
    seed_ids = sorted(a.article_id for a in seeds)
    assert sorted(sorted(c) for c in clusters) == sorted([seed_ids, [bikes.article_id], [tokyo.article_id]])


def test_clustering_does_not_depend_on_input_order(seeds) -> None:
    articles = [*seeds, make("https://city.example/bikes", *BIKE_LANES)]
    expected = cluster_stories(articles, StorySettings())
    shuffled = articles[:]
    random.Random(7).shuffle(shuffled)
    assert cluster_stories(shuffled, StorySettings()) == expected


def test_profiles_made_before_grouping_give_the_same_clusters(seeds) -> None:
    # GroupStories makes the text profiles before its GroupByKey and hands them over; the
    # clusters and story vectors must be those made from the articles themselves.
    articles = [
        fingerprint_article(a, FingerprintSettings()) for a in [*seeds, make("https://city.example/bikes", *BIKE_LANES)]
    ]
    profiles = {profile_key(a): compute_text_profile(a) for a in articles}
    start, end = _window(0)
    given = cluster_window("politics", articles, start, end, StorySettings(), FingerprintSettings(), profiles)
    made = cluster_window("politics", articles, start, end, StorySettings(), FingerprintSettings())
    assert [c.summary for c in given] == [c.summary for c in made]
    assert len(given) == 2
    # ... and they are used: given a seed's profile, the bike-lane article joins the story
    swapped = {**profiles, profile_key(articles[-1]): profiles[profile_key(articles[0])]}
    assert len(cluster_window("politics", articles, start, end, StorySettings(), FingerprintSettings(), swapped)) == 1


def test_exact_copies_point_to_one_article_across_windows_and_runs() -> None:
    first = make("https://city.example/bikes", *BIKE_LANES)
    copy = make("https://reprints.example/bikes", *BIKE_LANES, hours=30)  # the next day's window
    other = make("https://wire.example/bikes", *BIKE_LANES, hours=31)
    assert first.content_hash == copy.content_hash == other.content_hash
    marked = mark_exact_copies([other, copy, first])
    assert {a.url: a.duplicate_of for a in marked} == {
        first.url: None,
        copy.url: first.article_id,
        other.url: first.article_id,
    }
    # in the later window, the copy stays a duplicate of the first article, and so does its
    # own duplicate there (not a chain through the copy)
    day1 = cluster_window("transport", marked[:2], *_window(1), StorySettings(), FingerprintSettings())
    assert {a.duplicate_of for c in day1 for a in c.articles} == {first.article_id}
    # an article an earlier run wrote with this text stays the representative
    earlier = mark_exact_copies([first, copy], {first.content_hash: "written-before"})
    assert {a.duplicate_of for a in earlier} == {"written-before"}
    alone = make("https://city.example/other", "Other", "Some other text about a bridge.")
    assert mark_exact_copies([alone]) == [alone]


# --- story ids across windows and runs ----------------------------------------------------


def _window(day: int) -> tuple[datetime, datetime]:
    start = datetime(2025, 10, 25, tzinfo=UTC) + timedelta(days=day)
    return start, start + timedelta(days=1)


def _clusters(articles: list[Article], day: int):
    found = cluster_window("politics", articles, *_window(day), StorySettings(), FingerprintSettings())
    return [c.summary for c in found]


def test_later_window_and_later_run_keep_the_story_id(seeds) -> None:
    settings = StorySettings()
    first_day = _clusters(seeds[:3], 0)
    # the same event, reported a day later
    late = [make(a.url, a.title or "", a.text, hours=30) for a in seeds[3:]]
    second_day = _clusters(late, 1)
    assignment, touched, state, _ = link_clusters(first_day + second_day, [], settings)
    ids = set(assignment.values())
    assert len(ids) == 1
    (story,) = touched
    assert story.story_id == story_id_for("politics", seeds[0].article_id)
    assert len(story.article_ids) == 5

    # a second run over the same input, with the state of the first: same id, no new story
    again, touched_again, state_again, _ = link_clusters(first_day + second_day, state, settings)
    assert set(again.values()) == ids
    assert [s.story_id for s in state_again] == [s.story_id for s in state]
    assert sorted(touched_again[0].article_ids) == sorted(story.article_ids)

    # a later run that only sees the late articles finds the story of an earlier run that
    # only saw the first three (no shared article id: the term profiles match)
    _, _, first_state, _ = link_clusters(first_day, [], settings)
    later, touched_later, _, _ = link_clusters(second_day, first_state, settings)
    assert set(later.values()) == ids
    assert len(touched_later[0].article_ids) == 5
    assert len(first_state[0].article_ids) == 3  # the input state is not modified


def test_a_copy_of_an_earlier_runs_article_joins_its_story_even_after_it_left_the_state() -> None:
    from transforms.records import replace

    settings = StorySettings()
    original = make("https://a.example/ferry", *FERRY_FIRST)
    copy = replace(
        make("https://b.example/ferry-reprint", *FERRY_FIRST, hours=24 * 60), duplicate_of=original.article_id
    )
    (cluster,) = _clusters([copy], 60)
    assert cluster.copies_of == (original.article_id,)
    # the earlier run wrote the original under this story; its state has forgotten it
    written = {original.article_id: "s-ferry"}
    assignment, touched, state, _ = link_clusters([cluster], [], settings, known_stories=written)
    assert assignment == {cluster.key: "s-ferry"}
    assert [(s.story_id, s.article_ids) for s in touched] == [("s-ferry", [copy.article_id])]
    # without that knowledge the copy founds a story of its own (the old behaviour)
    alone, _, _, _ = link_clusters([cluster], [], settings)
    assert alone[cluster.key] == story_id_for("politics", copy.article_id)
    # and when the story is still in the state, the copy continues it like a shared article
    _, _, kept, _ = link_clusters(_clusters([original], 0), [], settings)
    with_state, _, _, _ = link_clusters([cluster], kept, settings)
    assert with_state[cluster.key] == kept[0].story_id


def test_a_story_out_of_reach_is_continued_only_through_a_shared_article(seeds) -> None:
    settings = StorySettings()  # link_hours: 7 days
    _, _, state, _ = link_clusters(_clusters(seeds[:3], 0), [], settings)
    # ten days later: the same event told again, beyond link_hours: a story of its own
    late = [make(a.url, a.title or "", a.text, hours=24 * 10) for a in seeds[3:]]
    alone, _, _, _ = link_clusters(_clusters(late, 10), state, settings)
    assert set(alone.values()) != {state[0].story_id}
    # the same, with one of the story's articles read again: it continues the old story
    again, touched, _, _ = link_clusters(_clusters([*late, seeds[0]], 10), state, settings)
    assert set(again.values()) == {state[0].story_id}
    assert sorted(touched[0].article_ids) == sorted(a.article_id for a in seeds)
    # and a state of many stories out of reach links the same as the story alone
    far = [
        dataclasses.replace(s, story_id=f"old-{k}", article_ids=[f"{a}-{k}" for a in s.article_ids],
                            last_published=s.last_published - timedelta(days=k))
        for k in range(1, 4) for s in state
    ]  # fmt: skip
    assert link_clusters(_clusters([*late, seeds[0]], 10), [*state, *far], settings)[0] == again


def _edited(text: str) -> str:
    """A syndicated rewrite: new opening line, a few words changed, a closing line."""
    return "From our partners. " + text.replace(" the ", " a ", 3) + " Reporting by the wire desk."


def test_near_copies_in_later_windows_and_runs_point_to_the_first_article(seeds) -> None:
    first = seeds[0]
    rewrite = make("https://syndicator.example/rewrite", "A new headline", _edited(first.text), hours=30)
    reprint = make("https://reprints.example/rewrite", "A new headline", _edited(first.text), hours=31)
    assert rewrite.content_hash != first.content_hash and reprint.content_hash == rewrite.content_hash
    day0 = _clusters(seeds[:3], 0)
    # next day's window: the rewrite and its exact reprint; the clustering there cannot see
    # the first article
    (day1,) = cluster_window(
        "politics", mark_exact_copies([rewrite, reprint]), *_window(1), StorySettings(), FingerprintSettings()
    )
    assert {a.url: a.duplicate_of for a in day1.articles} == {rewrite.url: None, reprint.url: rewrite.article_id}
    assignment, touched, state, near = link_clusters(day0 + [day1.summary], [], StorySettings())
    assert near == {rewrite.article_id: first.article_id}
    assert len(set(assignment.values())) == 1
    # the reprint follows the rewrite to the first article; other articles stay as they were
    assert {stories.with_near_copy(a, near).duplicate_of for a in day1.articles} == {first.article_id}
    assert stories.with_near_copy(seeds[1], near) is seeds[1]
    # the state keeps what later runs compare with: the articles that are nobody's copy
    (story,) = state
    assert sorted(o[0] for o in story.originals) == sorted(a.article_id for a in seeds[:3])
    # a later run that only sees the rewrite finds the first article through the state
    _, _, first_state, _ = link_clusters(day0, [], StorySettings())
    _, _, _, later = link_clusters([day1.summary], first_state, StorySettings())
    assert later == {rewrite.article_id: first.article_id}
    # other coverage of the same event in the later window is not a copy
    other = make("https://wire.example/other", seeds[3].title or "", seeds[3].text, hours=30)
    _, _, _, none = link_clusters(day0 + _clusters([other], 1), [], StorySettings())
    assert none == {}


def test_a_near_copy_found_across_clusters_is_represented_by_the_earliest() -> None:
    from transforms.records import replace

    # The first cluster visited (politics, founded at hour 0) holds the later article of a
    # near-copy pair (hour 5); the earlier one (hour 1) is in another topic's cluster of the
    # same window, visited second. The group's representative is the earliest published.
    founder = make("https://a.example/ferry", *FERRY_FIRST, hours=0)
    later = make("https://b.example/ferry-steering", *FERRY_LATER, hours=5)
    earlier = make("https://c.example/ferry-steering", FERRY_LATER[0], "From our partners. " + FERRY_LATER[1], hours=1)
    earlier = replace(earlier, topic="transport")
    (politics,) = cluster_window("politics", [founder, later], *_window(0), StorySettings(), FingerprintSettings())
    (transport,) = cluster_window("transport", [earlier], *_window(0), StorySettings(), FingerprintSettings())
    assignment, _, _, near = link_clusters([transport.summary, politics.summary], [], StorySettings())
    assert len(set(assignment.values())) == 1
    assert near == {later.article_id: earlier.article_id}


def test_a_story_writes_the_line_its_fields_make_whether_founded_by_one_cluster_or_merged(seeds) -> None:
    # A story founded by one cluster writes that cluster's vector JSON into its state line
    # as it is; the line must be what encoding all its fields gives (and read back the same).
    tokyo = make("https://wire.example/tokyo", TOKYO_VISIT[0], TOKYO_VISIT[1] + " Délégués reçus à Kyōto.", hours=26)
    clusters = _clusters(seeds[:2], 0) + _clusters(seeds[2:], 1) + _clusters([tokyo], 1)
    _, _, state, _ = link_clusters(clusters, [], StorySettings())
    founded = [s for s in state if s._profile_line is not None]
    merged = [s for s in state if s._profile_line is None]
    assert founded and merged  # the seeds' second window joined the first's story
    for story in state:
        row = {k: v for k, v in vars(story).items() if not k.startswith("_")}
        for key in ("first_published", "last_published", "window_start", "window_end"):
            row[key] = row[key].isoformat()
        assert story.to_json() == json.dumps(row, sort_keys=True, ensure_ascii=False)
        again = stories.StoryState.from_json(story.to_json())
        assert (again.profile, again.article_ids) == (story.profile, story.article_ids)


def test_unrelated_cluster_in_a_later_window_gets_its_own_story(seeds) -> None:
    tokyo = make("https://wire.example/tokyo", *TOKYO_VISIT, hours=26)
    assignment, touched, _, _ = link_clusters(_clusters(seeds, 0) + _clusters([tokyo], 1), [], StorySettings())
    assert len(set(assignment.values())) == 2
    assert sorted(len(s.article_ids) for s in touched) == [1, 5]


FERRY_FIRST = (
    "Ferry runs aground off Harlow Island, 40 passengers rescued",
    (
        "A passenger ferry ran aground on rocks off Harlow Island late on Friday, and coast "
        "guard crews rescued all 40 passengers and six crew members. The Marenne Lines vessel "
        "was sailing from Port Ellis when it lost steering in high winds, the coast guard said. "
        "Two passengers were treated in hospital for minor injuries."
    ),
)
FERRY_LATER = (
    "Harlow Island ferry grounding: investigators examine steering failure",
    (
        "Investigators began examining the steering gear of the Marenne Lines ferry that ran "
        "aground off Harlow Island, a day after coast guard crews rescued its 40 passengers. "
        "The company said the vessel, which had left Port Ellis in high winds, had passed an "
        "inspection in March. Salvage teams hope to refloat the ferry at high tide."
    ),
)


def _vector(*articles: Article):
    from transforms.stories import story_vector

    return story_vector(list(articles))


def _unit_vector(feats) -> dict[str, float]:
    """The story vector of one article before trimming, by its definition: per channel the
    presence ``#c`` = 1 and the unit vector under the ``c:`` prefix."""
    out: dict[str, float] = {}
    for channel, unit in stories._unit_channels(feats):
        out["#" + channel] = 1.0
        out.update({f"{channel}:{t}": w for t, w in unit.items()})
    return out


def _trimmed_by_definition(vector: dict[str, float], keep: int) -> dict[str, float]:
    """Presence entries as they are; per channel all entries in order when there are at most
    ``keep``, else the ``keep`` heaviest, heaviest first (ties: the larger key first)."""
    out = {k: w for k, w in vector.items() if k[0] == "#"}
    for channel in dict.fromkeys(k[0] for k in vector if k[0] != "#"):
        entries = [(k, w) for k, w in vector.items() if k[0] == channel]
        if len(entries) > keep:
            entries = [(k, w) for w, k in sorted(((w, k) for k, w in entries), reverse=True)[:keep]]
        out.update(entries)
    return out


def test_story_vector_is_the_trimmed_mean_of_the_unit_vectors() -> None:
    # story_vector sums per channel and prefixes only the kept terms; the result must be the
    # definition's, value for value and in the same order (the state is written from it).
    rng = random.Random(3)
    vocab = [f"word{i}" for i in range(400)]
    texts = [" ".join(rng.choice(vocab) for _ in range(rng.randint(150, 400))) for _ in range(4)]
    articles = [make(f"https://n{i}.example/a", f"Headline {i} Harlow", t) for i, t in enumerate(texts)]
    articles.append(make("https://c.example/bikes", *BIKE_LANES))
    for group in ([articles[0]], articles[:2], articles):
        total: dict[str, float] = {}
        for article in group:
            for key, w in _unit_vector(compute_text_profile(article)).items():
                total[key] = total.get(key, 0.0) + w
        mean = {k: v / len(group) for k, v in total.items()}
        expected = stories._trimmed(mean)
        assert list(expected.items()) == list(_trimmed_by_definition(mean, stories.PROFILE_TERMS).items())
        got = stories.story_vector(group)
        assert list(got.items()) == list(expected.items())
        assert sum(k.startswith("t:") for k in got) == stories.PROFILE_TERMS  # trimmed
    assert stories.story_vector([]) == {}


def test_story_vectors_weigh_words_as_a_window_of_the_article_alone_does() -> None:
    # The idf of a story vector must not depend on the window, and must be on the scale of
    # the clustering's: the idf that _idf gives a one-article batch. The bare background idf
    # (-log share) gave rare words up to ~9 where a window gives at most ~log(21).
    for settings in (StorySettings(), StorySettings(background_docs=5.0)):
        for article in (make("https://a.example/ferry", *FERRY_FIRST), make("https://c.example/b", *BIKE_LANES)):
            feats = compute_text_profile(article)
            idf = stories._idf([feats], settings.background_docs)
            assert max(idf.values()) < math.log(1 + settings.background_docs) + 0.01
            want = stories._channel_vectors(feats, idf)
            got = stories.story_vector([article], background_docs=settings.background_docs)
            for (channel, _), vector in zip(stories._CHANNELS, want, strict=True):
                norm = math.sqrt(sum(w * w for w in vector.values()))
                assert {k[2:]: w for k, w in got.items() if k.startswith(channel + ":")} == pytest.approx(
                    {t: w / norm for t, w in vector.items()}
                )


def test_link_score_is_the_mean_pairwise_similarity() -> None:
    from transforms.stories import link_score

    terms_only = StorySettings(entity_weight=0, title_weight=0, number_weight=0)
    a = make("https://a.example/ferry", *FERRY_FIRST)
    b = make("https://b.example/ferry", *FERRY_LATER)
    c = make("https://city.example/bikes", *BIKE_LANES)
    pairwise = [link_score(_vector(x), _vector(c), terms_only) for x in (a, b)]
    assert link_score(_vector(a, b), _vector(c), terms_only) == pytest.approx(sum(pairwise) / 2)
    assert link_score(_vector(a), _vector(b), StorySettings()) > link_score(_vector(a), _vector(c), StorySettings())


def test_words_many_clusters_share_fade_when_linking() -> None:
    from transforms.stories import link_score, link_weights

    vectors = [{"#t": 1.0, "t:storm": 0.6, f"t:town{k}": 0.8} for k in range(10)]
    vectors += [{"#t": 1.0, "t:harlow": 0.8, "t:storm": 0.6}, {"#t": 1.0, "t:harlow": 0.8, "t:ferry": 0.6}]
    weights = link_weights(vectors, background_docs=20.0)
    assert weights["t:storm"] < weights["t:harlow"] < 1.0
    assert "t:town3" not in weights  # found once: full weight
    settings = StorySettings(entity_weight=0, title_weight=0, number_weight=0)
    # two towns hit by the same storm: shared only by the common word, they fall apart...
    assert link_score(vectors[0], vectors[1], settings, weights) < link_score(vectors[0], vectors[1], settings) / 4
    # ... while an identical pair stays identical (each vector keeps its length)
    assert link_score(vectors[0], vectors[0], settings, weights) == pytest.approx(1.0)


def test_the_story_index_scores_as_link_score_does() -> None:
    from transforms.stories import _StoryIndex, link_score, link_weights

    texts = [FERRY_FIRST, FERRY_LATER, BIKE_LANES, TOKYO_VISIT]
    vectors = [_vector(make(f"https://n{k}.example/a", *t)) for k, t in enumerate(texts)]
    vectors.append(_vector(*(make(f"https://m{k}.example/a", *t) for k, t in enumerate(texts[:2]))))
    weights = link_weights(vectors, background_docs=20.0)
    index = _StoryIndex(weights)
    for k, v in enumerate(vectors[1:]):
        index.put(f"s{k}", v)
    index.put("gone", vectors[0])
    index.remove("gone")
    got = index.scores(vectors[0], StorySettings(), keep=lambda sid: True)
    want = {f"s{k}": link_score(vectors[0], v, StorySettings(), weights) for k, v in enumerate(vectors[1:])}
    assert set(got) <= set(want) and "gone" not in got
    for sid, score in want.items():
        assert got.get(sid, 0.0) == pytest.approx(score)

    # the state's stories, indexed as one matrix: the same scores to the last bit, a story
    # put again (it took a cluster) scored from the postings, a dropped one not at all
    block = _StoryIndex(weights)
    block.put_state([(f"s{k}", v) for k, v in enumerate(vectors[1:])] + [("gone", vectors[0])])
    block.remove("gone")
    assert block.scores(vectors[0], StorySettings(), keep=lambda sid: True) == got
    block.put("s1", vectors[2])
    assert block.scores(vectors[0], StorySettings(), keep=lambda sid: True) == got
    assert block.scores(vectors[0], StorySettings(), keep=lambda sid: sid != "s0") == {
        sid: v for sid, v in got.items() if sid != "s0"
    }
    best = max(got.values())
    assert block.scores(vectors[0], StorySettings(), keep=lambda sid: True, at_least=best).keys() >= {
        sid for sid, v in got.items() if v == best and sid != "s1"
    }


def test_a_pair_gets_one_decision_in_one_window_or_in_two_and_across_topics() -> None:
    settings = StorySettings()
    first = make("https://a.example/ferry", *FERRY_FIRST)
    later = make("https://b.example/ferry", *FERRY_LATER, hours=30)
    bikes = make("https://city.example/bikes", *BIKE_LANES, hours=31)
    assert len(cluster_stories([first, later], settings)) == 1  # when they share a window
    day0 = cluster_window("general", [first], *_window(0), settings, FingerprintSettings())
    day1 = cluster_window("transport", [later], *_window(1), settings, FingerprintSettings())
    day1 += cluster_window("politics", [bikes], *_window(1), settings, FingerprintSettings())
    assignment, _, _, _ = link_clusters([c.summary for c in day0 + day1], [], settings)
    story = {a: assignment[c.summary.key] for c in day0 + day1 for a in c.summary.article_ids}
    assert story[first.article_id] == story[later.article_id]
    assert story[bikes.article_id] != story[first.article_id]


def test_state_written_before_story_vectors_is_still_linked(seeds) -> None:
    _, _, state, _ = link_clusters(_clusters(seeds[:3], 0), [], StorySettings())
    # the old state held one normalised term profile without channel prefixes
    old = [
        dataclasses.replace(s, profile={k[2:]: v for k, v in s.profile.items() if k.startswith("t:")}) for s in state
    ]
    late = [make(a.url, a.title or "", a.text, hours=30) for a in seeds[3:]]
    assignment, _, _, _ = link_clusters(_clusters(late, 1), old, StorySettings())
    assert set(assignment.values()) == {state[0].story_id}


def test_state_round_trips_through_fsspec(seeds) -> None:
    _, _, state, _ = link_clusters(_clusters(seeds, 0), [], StorySettings())
    url = "memory://storybeam-test/_state/stories"
    write_state(url, state, token="t1")
    assert read_state(url) == state
    assert read_state("memory://storybeam-test/nothing-here") == []


# --- the Beam transform (one small pipeline, offline runner) -------------------------------


_COLLECTED: dict[str, list] = {}  # FnApiRunner runs in this process


def _collect(items: list, kind: str) -> None:
    _COLLECTED[kind] = list(items)


def _run_group_stories(articles: list[Article], output_root: str, **options) -> dict[str, list]:
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from transforms.stories import GroupStories

    _COLLECTED.clear()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        grouped = (
            p
            | beam.Create(articles, reshuffle=False)
            | GroupStories(StorySettings(), output_root=output_root, **options)
        )
        for kind in ("articles", "stories", "failed"):
            _ = grouped[kind] | f"Collect{kind}" >> beam.combiners.ToList() | f"Keep{kind}" >> beam.Map(_collect, kind)
    return dict(_COLLECTED)


@pytest.mark.slow
def test_a_run_without_articles_still_links_and_writes_the_state(seeds, topics) -> None:
    # LinkStories runs once per run even with no cluster to link: a run that replaces the
    # output (continue_state false) leaves an empty state, not the stories it replaced.
    root = "memory://storybeam-empty-run"
    articles = [a.__class__(**{**_fields(a), "topic": assign_topic(a, topics)[0]}) for a in seeds[:2]]
    _run_group_stories(articles, root)
    assert len(read_state(root + "/_state/stories")) == 1
    out = _run_group_stories([], root, continue_state=False)
    assert out == {"articles": [], "stories": [], "failed": []}
    assert read_state(root + "/_state/stories") == []


@pytest.mark.slow
def test_group_stories_pipeline_is_stable_across_windows_runs_and_order(seeds, topics) -> None:
    late = [make(a.url, a.title or "", a.text, hours=30) for a in seeds[3:]]
    copy = make("https://mirror.example/copy", seeds[0].title or "", seeds[0].text, hours=1)
    bikes = make("https://city.example/bikes", *BIKE_LANES, hours=2)
    # a rewrite of the first seed in the next day's window: a near copy across windows
    rewrite = make("https://syndicator.example/rewrite", "A new headline", _edited(seeds[0].text), hours=30)
    # read again in a later window: the same text, and another text under the bikes URL
    # (a recrawl, a tracking-parameter variant): one row per article id all the same
    recrawl = make(seeds[2].url, seeds[2].title or "", seeds[2].text, hours=31)
    reused_url = make(bikes.url, *TOKYO_VISIT, hours=32)
    articles = [*seeds[:3], *late, copy, bikes, seeds[1], rewrite, recrawl, reused_url]  # seeds[1] read twice
    articles = [a.__class__(**{**_fields(a), "topic": assign_topic(a, topics)[0]}) for a in articles]
    root = "memory://storybeam-group-stories"

    first = _run_group_stories(articles, root)
    by_id = {a.article_id: a for a in first["articles"]}
    assert len(first["articles"]) == len(by_id) == 8  # each repeated URL counted once
    assert [f.reason for f in first["failed"]] == ["duplicate_url"] * 3
    assert by_id[bikes.article_id].title == BIKE_LANES[0]  # the first reading is kept
    assert by_id[copy.article_id].duplicate_of == seeds[0].article_id
    assert by_id[rewrite.article_id].duplicate_of == seeds[0].article_id
    seed_story = {by_id[a.article_id].story_id for a in [*seeds, copy, rewrite]}
    assert len(seed_story) == 1  # across the window boundary, duplicates included
    assert by_id[bikes.article_id].story_id not in seed_story
    stories = {s.story_id: s for s in first["stories"]}
    (story_id,) = seed_story
    assert stories[story_id].size == 7 and len(stories) == 2
    assert stories[story_id].window_end - stories[story_id].window_start == timedelta(days=2)

    # second run over the same input in another order: same ids, no new story
    shuffled = articles[:]
    random.Random(3).shuffle(shuffled)
    second = _run_group_stories(shuffled, root)
    assert {a.article_id: a.story_id for a in second["articles"]} == {a: s.story_id for a, s in by_id.items()}
    assert sorted(second["stories"], key=lambda s: s.story_id) == sorted(first["stories"], key=lambda s: s.story_id)


@pytest.mark.slow
def test_a_text_read_under_a_dropped_reading_of_a_url_is_nobodys_copy(topics) -> None:
    # One URL read twice with two texts: the later reading (a different article) is dropped as
    # duplicate_url. Articles with that reading's text must not point at the URL's article,
    # whose row holds the other text: neither within the window (near duplicates) nor
    # across windows (exact copies).
    first = make("https://city.example/bikes", *BIKE_LANES)
    reused = make(first.url, *TOKYO_VISIT, hours=30)
    same_window = make("https://wire.example/tokyo", *TOKYO_VISIT, hours=31)
    next_window = make("https://mirror.example/tokyo", *TOKYO_VISIT, hours=55)
    articles = [first, reused, same_window, next_window]
    articles = [a.__class__(**{**_fields(a), "topic": assign_topic(a, topics)[0]}) for a in articles]

    out = _run_group_stories(articles, "memory://storybeam-dropped-reading")
    by_id = {a.article_id: a for a in out["articles"]}
    assert [f.url for f in out["failed"]] == [reused.url]
    assert by_id[first.article_id].text == BIKE_LANES[1] and by_id[first.article_id].duplicate_of is None
    assert by_id[same_window.article_id].duplicate_of is None
    assert by_id[next_window.article_id].duplicate_of == same_window.article_id
    assert by_id[next_window.article_id].story_id == by_id[same_window.article_id].story_id
    story_of_first = next(s for s in out["stories"] if s.story_id == by_id[first.article_id].story_id)
    assert story_of_first.article_ids == (first.article_id,)


# --- similarity building blocks -----------------------------------------------------------


def test_blocked_linkage_equals_linkage_of_the_whole_matrix() -> None:
    import numpy as np
    from scipy import sparse

    from transforms.stories import _average_linkage, _blocked_average_linkage

    rng = np.random.default_rng(5)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        sim = rng.random((n, n)) ** 3
        sim[rng.random((n, n)) < 0.7] = 0.0
        sim = np.maximum(sim, sim.T)
        np.fill_diagonal(sim, 1.0)
        blocked = _blocked_average_linkage(sparse.coo_matrix(sim), 0.3)
        assert blocked == _average_linkage(sim, 0.3)


def test_topic_phrases_need_all_their_words(topics) -> None:
    text = "The prime minister spoke. Later a minister of state left the room."
    article = make("https://a.example/pm", "", text)
    _, terms = assign_topic(article, topics)
    assert "prime minister" in terms and "secretary of state" not in terms


def test_topic_terms_match_plural_forms_in_title_and_text(topics) -> None:
    article = make(
        "https://b.example/rates",
        "Central banks hold interest rates",
        "Economies across the region slowed as supply chains stayed tight. The central bank "
        "of Ruritania left its main rate unchanged.",
    )
    # headline terms first (they count twice), then the others, alphabetically
    assert assign_topic(article, topics) == (
        "business",
        ("bank", "central bank", "interest rate", "economy", "supply chain"),
    )


def test_entity_pattern_matches_capitalised_runs_as_defined() -> None:
    # the definition: a capital at a word start, then the longest run of word characters and
    # ’'&.- ending in a word character, or the capital alone
    defined = re.compile(r"\b[A-Z][\w’'&.-]*[\w]|\b[A-Z]\b")
    for text in (
        "AT&T and O'Brien met U.S. officials in São Paulo.",
        "McDonald’s-style A. B. Smith_Jones x-Ray aB Ab-",
        "İstanbul ÉCOLE e\u0301A 2B _C C_ C.. 'D' -E- F’",
        "",
    ):
        assert _ENTITY.findall(text) == defined.findall(text)


def test_cjk_span_holds_every_cjk_character() -> None:
    # _tokens skips the CJK bigrams for a text without a character of the span
    cjk = [c for c in map(chr, range(0x110000)) if stories._CJK.fullmatch(c)]
    assert len(cjk) > 39000
    assert all(stories._CJK_SPAN.fullmatch(c) for c in cjk)


def test_figure_pattern_matches_as_defined() -> None:
    # the definition: a digit not after a word character, "." or ",", then digits and
    # separators ending in a digit, not followed by a word character
    defined = re.compile(r"(?<![\w.,])\d(?:[\d.,]*\d)?(?![\w])")
    rng = random.Random(7)
    alphabet = "0123456789.,- aZé_٣\n"
    texts = [
        "In 2008 the 1,000-seat hall, MH370, 21st, 3.5. 4,,5 .7 ,8 9, 1.2.3 x1 1x 12_ ٣٤ 5",
        "",
        *("".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 40))) for _ in range(3000)),
    ]
    for text in texts:
        assert stories._NUMBER.findall(text) == defined.findall(text), text


def test_profile_does_not_depend_on_what_the_worker_saw_before(monkeypatch) -> None:
    article = make("https://a.example/bikes", *BIKE_LANES)
    first = compute_text_profile(article)
    # a small word table, refilled many times by other articles
    monkeypatch.setattr(stories, "WORD_CACHE_WORDS", 20)
    for i, (title, text) in enumerate((TOKYO_VISIT, BIKE_LANES[::-1], ("", BIKE_LANES[1].upper()))):
        compute_text_profile(make(f"https://b.example/{i}", title, text))
    again = compute_text_profile(article)
    assert again == first
    # same order too: the similarity sums term weights in this order
    assert list(again.terms) == list(first.terms) and list(again.prior) == list(first.prior)


@pytest.mark.parametrize("background", [True, False])
def test_profile_is_the_same_whichever_of_its_words_the_worker_knew(monkeypatch, background) -> None:
    # the words learned for an article join those it found known (with or without wordfreq)
    if not background:
        monkeypatch.setattr(stories, "_frequencies", lambda language: None)
    monkeypatch.setattr(stories, "_word_facts", {})
    article = make("https://a.example/bikes", *BIKE_LANES)
    fresh = compute_text_profile(article)
    for known in ("", BIKE_LANES[1][: len(BIKE_LANES[1]) // 2], TOKYO_VISIT[1]):
        monkeypatch.setattr(stories, "_word_facts", {})
        if known:
            compute_text_profile(make("https://b.example/part", "", known))
        again = compute_text_profile(article)
        assert again == fresh
        assert list(again.terms) == list(fresh.terms) and list(again.prior) == list(fresh.prior)


def test_function_words_are_found_once_then_read_back_from_the_cache(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wordfreq")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stories._function_words.cache_clear()
    found = stories._function_words(("en", "de"))
    assert found["the"] == ("en",) and found["und"] == ("de",)
    cache = stories.function_words_cache()
    assert cache.is_file() and cache.is_relative_to(tmp_path)

    loaded: list[str] = []
    real = stories._frequencies
    monkeypatch.setattr(stories, "_frequencies", lambda language: loaded.append(language) or real(language))
    stories._function_words.cache_clear()
    assert stories._function_words(("en", "de")) == found and loaded == []  # no table loaded
    stories._function_words.cache_clear()
    both = stories._function_words(("en", "fr"))  # a language the cache lacks: only that one
    assert loaded == ["fr"] and both["le"] == ("fr",) and "und" not in both

    # tables other than those the cache was made from: found again, and the cache replaced
    stored = json.loads(cache.read_text(encoding="utf-8"))
    cache.write_text(json.dumps({"key": "other tables", "top": {**stored["top"], "en": ["zzz"]}}), encoding="utf-8")
    stories._function_words.cache_clear()
    assert "zzz" not in stories._function_words(("en",)) and loaded == ["fr", "en"]
    assert json.loads(cache.read_text(encoding="utf-8"))["key"] == stored["key"]

    # a cache that cannot be written is passed by
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))  # a file, not a folder
    stories._function_words.cache_clear()
    assert stories._function_words(("en", "de")) == found
    stories._function_words.cache_clear()


def test_inflected_german_reports_match_and_function_words_do_not() -> None:
    pytest.importorskip("wordfreq")
    pytest.importorskip("Stemmer")
    flood = make(
        "https://de.example/flut",
        "Hochwasser in Passau: Feuerwehr evakuiert Altstadt",
        "Die Feuerwehr hat in der Nacht die Altstadt von Passau evakuiert, nachdem "
        "die Donau über die Ufer getreten war. Der Pegel stieg auf zwölf Meter.",
    )
    follow_up = make(
        "https://de2.example/flut",
        "Passauer Altstadt nach Hochwasser der Donau evakuiert",
        "Wegen des Hochwassers der Donau wurden in Passau Teile der Altstadt "
        "evakuiert. Feuerwehren waren die ganze Nacht im Einsatz, der Pegel steigt.",
        hours=3,
    )
    other = make(
        "https://de3.example/bahn",
        "Bahn erhöht die Preise im Fernverkehr",
        "Die Deutsche Bahn hat angekündigt, dass die Preise für Fahrkarten im "
        "Fernverkehr im Dezember steigen werden. Die Kunden sind nicht erfreut.",
        hours=1,
    )
    clusters = cluster_stories([flood, follow_up, other], StorySettings())
    assert sorted(sorted(c) for c in clusters) == sorted(
        [sorted([flood.article_id, follow_up.article_id]), [other.article_id]]
    )


def test_benchmark_ceilings_count_gold_pairs_and_pick_the_best_threshold():
    from benchmarks import stories as bench

    day = datetime(2026, 3, 1, tzinfo=UTC)
    flood = "Flood waters rose in Dresden as the Elbe broke its banks; Dresden evacuated the old town."
    vote = "Parliament in Lisbon passed the budget vote; Lisbon ministers defended the budget."
    texts = [
        ("Elbe floods Dresden", flood),
        ("Dresden evacuates as Elbe rises", flood + " Firefighters worked through the night."),
        ("Elbe flood reaches Dresden old town", "Dresden old town flooded as the Elbe rose further."),
        ("Lisbon parliament passes budget", vote),
        ("Budget vote in Lisbon", vote + " The opposition walked out."),
    ]
    articles = [bench._article(f"a{i}", title, text, day) for i, (title, text) in enumerate(texts)]
    labels = [0, 0, 0, 1, 1]
    groups = [("toy", articles, {"gold1": labels, "gold2": [0, 1, 2, 3, 4]})]
    settings = StorySettings()
    seen = bench.gold_pair_similarity(groups, settings)
    assert seen["gold1"][0] == 3 + 1 and seen["gold1"][3] == 10 - 4  # same-story / other pairs
    assert seen["gold2"][:3] == (0, 0.0, 0.0) and seen["gold2"][3] == 10  # singletons only
    assert seen["gold1"][4] == 0.0  # no flood-vote pair reaches the cut
    oracle = bench.oracle_thresholds(groups, settings, [0.05, settings.cluster_threshold, 0.95])
    at_cut = bench.eval_news(groups, bench.ours(settings))
    assert oracle["gold1"] >= at_cut["gold1_f1"] and oracle["gold2"] == 1.0  # 0.95 leaves singletons
    # ranks: items 0-2 are the "first 2 results" or after them; the flood pairs share words
    by_rank = bench.gold_pairs_by_rank(groups, settings, top=2)
    assert by_rank["gold1"][0] == 1 and by_rank["gold1"][2] == 3  # (0, 1) | (0, 2), (1, 2), (3, 4)
    assert by_rank["gold1"][1] == 0.0 and by_rank["gold2"] == (0, 0.0, 0, 0.0)
    rows = bench.per_group(groups, bench.ours(settings))
    assert rows[0][0] == "toy" and rows[0][1] == at_cut["gold1_f1"] and rows[0][2] == at_cut["gold2_f1"]
    assert rows[0][3] == bench.bcubed(labels, [0, 1, 2, 3, 4])[2]


_SEED_PROBE = """
import json
from datetime import UTC, datetime
from transforms.records import Article
from transforms.stories import compute_text_profile, story_vector
names = "Alvarez Brennan Castellanos Dimitrova Eriksen Fontaine Gallagher Haddad Ivanova Jankowski"
text = ". ".join(f"{a} met {b} in Lisbon on Tuesday" for a, b in zip(names.split(), reversed(names.split())))
arts = [
    Article(url=f"https://example.org/{i}", fetched_at=datetime(2024, 5, 1, tzinfo=UTC), text=text + f" Item {i}.",
            title="Talks between Alvarez, Brennan and Castellanos in Lisbon", article_id=str(i))
    for i in range(3)
]
print(json.dumps(story_vector(arts)))
"""


def test_story_vectors_do_not_depend_on_the_hash_seed():
    # Beam workers are separate interpreters with their own hash seeds: the vectors stored in
    # the story state (and the float sums behind them) must come out the same in each
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    outs = {
        subprocess.run(
            [sys.executable, "-c", _SEED_PROBE],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outs) == 1 and '"e:' in next(iter(outs))


def test_the_lead_weighs_more_than_the_rest() -> None:
    filler = " ".join(["the committee met again and talked at length"] * 20)
    text = f"Volcano ash closed the airport. {filler} Harbour cranes stood still."
    terms = stories.compute_text_profile(make("https://a.example/ash", "Flights halted", text)).terms
    # each word once, but "volcano" in the lead (first LEAD_WORDS words) and "harbour" after it
    assert terms["volcano"] > terms["harbour"]


def test_figures_are_read_as_reports_quote_them() -> None:
    found = stories._numbers(
        "In 2008 the 1,000-seat hall, flight MH370 and 21st place: 3 of 12 seats, $1.5 bn, 1000 more."
    )
    # thousands commas dropped ("1,000" is "1000"); years, single digits and digits glued to a
    # word left out; a decimal stays whole
    assert found.keys() == {"1000", "12", "1.5"}
    assert stories._numbers("No figures here, nor in 1999.") == {}
    assert stories._numbers("1,5 Millionen, 12,000,000 and 3,14").keys() == {"1,5", "12000000", "3,14"}
    # a figure the report repeats weighs more, as a repeated word does
    repeated = stories._numbers("14 dead. Of the 14, nine were children; 37 were hurt.")
    assert repeated["14"] > repeated["37"] == 1.0


def test_shared_figures_bring_reports_of_one_event_closer() -> None:
    # Same vocabulary, two events: the report that repeats the first's figures is the closer.
    text = "A bus crash on the coast road killed {} people and injured {} on {}, police said."
    first = make("https://a.example/crash", "Bus crash on coast road", text.format(14, 37, "Monday"))
    same = make(
        "https://b.example/crash", "Coast road bus crash", text.format(14, 37, "Monday").replace("police", "officials")
    )
    other = make(
        "https://c.example/crash", "Coast road bus crash", text.format(23, 58, "Monday").replace("police", "officials")
    )
    with_figures, without = StorySettings(), StorySettings(number_weight=0)
    assert without.number_weight == 0 and with_figures.number_weight > 0

    def sim(a: Article, b: Article, settings: StorySettings) -> float:
        return float(stories.similarity_matrix([a, b], settings)[0, 1])

    assert sim(first, same, without) == pytest.approx(sim(first, other, without))  # words alone: a tie
    assert sim(first, same, with_figures) > sim(first, same, without)
    assert sim(first, other, with_figures) < sim(first, other, without)
    # a story vector made before the figures channel (no "#n") still links on the others
    old = {k: v for k, v in stories.story_vector([same]).items() if not k.startswith(("n:", "#n"))}
    assert stories.link_score(stories.story_vector([first]), old, with_figures) == pytest.approx(
        stories.link_score(stories.story_vector([first]), stories.story_vector([same]), without)
    )


def test_language_of_an_article_that_states_none_is_detected_only_when_clear() -> None:
    from transforms.stories import compute_text_profile, with_detected_language

    english = make("https://a.example/en", *BIKE_LANES)
    german = make(
        "https://b.example/de",
        "Stadtrat beschließt neue Radwege",
        "Der Stadtrat hat am Dienstag beschlossen, dass die Stadt in diesem Jahr vierzig Kilometer "
        "neue Radwege baut. Die Bürgermeisterin sagte, die Arbeiten würden im Frühjahr beginnen und "
        "die Straßen für die Kinder auf dem Weg zur Schule sicherer machen.",
    )
    # Czech has no word list here: the nearest language must not be written into the column
    czech = make(
        "https://c.example/cs",
        "Zastupitelstvo schválilo nové cyklostezky",
        "Městské zastupitelstvo v úterý schválilo rozpočet na čtyřicet kilometrů chráněných "
        "cyklostezek v severních čtvrtích. Primátorka řekla, že stavba začne na jaře.",
    )
    stated = make("https://d.example/x", *BIKE_LANES, language="fr")  # stated: never replaced
    found = {
        a.url: with_detected_language(a, compute_text_profile(a)).language for a in (english, german, czech, stated)
    }
    assert found == {english.url: "en", german.url: "de", czech.url: None, stated.url: "fr"}


def test_a_window_too_large_to_cluster_cheaply_is_named_with_what_keeps_windows_small():
    from transforms.stories import LARGE_WINDOW, large_window_warning

    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert large_window_warning("general", start, LARGE_WINDOW) is None
    warning = large_window_warning("general", start, LARGE_WINDOW + 1)
    assert warning.startswith(f"window general 2026-03-01 00:00 holds {LARGE_WINDOW + 1} articles")
    assert "only pairs that share one of their heaviest words" in warning
    assert "run.batch_mb" in warning and "stories.window_hours" in warning


def _window_of_variants(seed: int = 4) -> list[Article]:
    """Three events, five outlets each (sentences dropped, reordered, one of their own
    added), and thirty unrelated texts of invented words, in one day."""
    import random

    rng = random.Random(seed)
    harbour = (
        "Harbour bridge closes for repairs after ferry strike",
        "The harbour bridge closed on Tuesday after a ferry struck one of its piers. Engineers from "
        "the port authority inspected the damage overnight. The mayor said the bridge would stay "
        "closed for two weeks. Commuters were told to use the northern tunnel and extra buses.",
    )
    invented = [f"{rng.choice('bdfgklmnprstvz')}{rng.choice('aeiou')}{rng.choice('lmnrst')}o{i}" for i in range(300)]
    articles = []
    for e, (title, text) in enumerate((BIKE_LANES, TOKYO_VISIT, harbour)):
        sentences = [s.strip() + "." for s in text.split(".") if s.strip()]
        for outlet in range(5):
            kept = [s for s in sentences if rng.random() > 0.25] or sentences[:1]
            rng.shuffle(kept)
            kept.append(" ".join(rng.sample(invented, 8)).capitalize() + ".")
            articles.append(make(f"https://o{outlet}.example/{e}", title, " ".join(kept), hours=rng.random() * 20))
    for k in range(30):
        words = " ".join(rng.choice(invented) for _ in range(60))
        articles.append(make(f"https://noise.example/{k}", " ".join(rng.sample(invented, 5)), words, hours=k / 2))
    return articles


def test_a_large_window_compares_candidate_pairs_with_the_same_scores_and_clusters(monkeypatch) -> None:
    from transforms import stories

    articles = _window_of_variants()
    settings = StorySettings()
    every = stories.sparse_similarity(articles, settings, candidates=False).tocsr()
    some = stories.sparse_similarity(articles, settings, candidates=True).tocoo()
    assert 0 < some.nnz < every.nnz  # fewer pairs compared...
    assert np.allclose(some.data, np.asarray(every[some.row, some.col]).ravel())  # ...each scored the same
    strong = every.tocoo()
    compared = set(zip(some.row.tolist(), some.col.tolist(), strict=True))
    for i, j, value in zip(strong.row, strong.col, strong.data, strict=True):
        if value >= settings.cluster_threshold:
            assert (i, j) in compared  # no pair that reaches the cut is left out
    exact = cluster_stories(articles, settings)
    monkeypatch.setattr(stories, "LARGE_WINDOW", 10)  # windows above 10 articles: candidate pairs
    assert cluster_stories(articles, settings) == exact
    assert sum(len(c) == 5 for c in exact) == 3  # the three events, five outlets each


def test_heaviest_keys_keeps_the_k_largest_of_each_row() -> None:
    from scipy import sparse

    from transforms.stories import _heaviest_keys

    unit = sparse.csr_matrix(np.array([[0.1, 0.5, 0.0, 0.3, 0.2], [0.0, 0.0, 0.9, 0.0, 0.0], [0.0] * 5]))
    kept = _heaviest_keys(unit, 2).toarray()
    assert kept.tolist() == [[0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [0] * 5]


FERRY_SALVAGE = (
    "Marenne Lines ferry refloated at Harlow Island",
    (
        "Salvage teams refloated the Marenne Lines ferry that ran aground off Harlow Island, "
        "towing it back to Port Ellis on the morning tide. The coast guard said the hull was "
        "sound and that the 40 passengers rescued on Friday had all gone home. Investigators "
        "are still examining the steering gear."
    ),
)


def test_a_bridge_from_another_topic_joins_clusters_a_window_kept_apart() -> None:
    """Two reports that one (topic, window) clustered apart stay apart when nothing else
    links them; once a cluster of another topic has joined one of them, the other may join
    the story too, as average linkage in one window would merge it with the bridged group."""
    apart = StorySettings(cluster_threshold=0.95)  # the window keeps every report alone
    bridge = make("https://a.example/ferry", *FERRY_FIRST)
    first = make("https://b.example/ferry-steering", *FERRY_LATER, hours=2)
    second = make("https://c.example/ferry-refloated", *FERRY_SALVAGE, hours=3)
    in_transport = [
        c.summary for c in cluster_window("transport", [first, second], *_window(0), apart, FingerprintSettings())
    ]
    assert len(in_transport) == 2
    alone, _, _, _ = link_clusters(in_transport, [], apart)
    assert len(set(alone.values())) == 2  # the window's decision stands
    (in_world,) = [c.summary for c in cluster_window("world", [bridge], *_window(0), apart, FingerprintSettings())]
    bridged, touched, _, _ = link_clusters([in_world, *in_transport], [], apart)
    assert len(set(bridged.values())) == 1
    assert sorted(touched[0].article_ids) == sorted(a.article_id for a in (bridge, first, second))
    # a story of an earlier run is open to every cluster of the window that continues it
    _, _, state, _ = link_clusters([in_world], [], apart)
    later, _, _, _ = link_clusters(in_transport, state, apart)
    assert set(later.values()) == {state[0].story_id}


def test_link_weights_from_past_decides_the_same_in_one_run_and_in_batches():
    # Two reports of one dam repair (a day apart) and four later, unrelated reports from the
    # same town. With ``run`` weights the later reports make the town's name fade for the
    # whole run, so cutting the input into two runs changes what the name links; with
    # ``past`` weights each window only knows its own clusters and the stories in reach.
    from benchmarks.stories import batch_agreement

    dam = [
        make(
            "https://a.example/1",
            "Kestrova dam inspection finds cracks in spillway",
            "Engineers inspecting the Kestrova dam found cracks in the concrete spillway on Monday, the "
            "regional water authority said. Repairs to the spillway will start next month.",
            0,
        ),
        make(
            "https://b.example/2",
            "Kestrova dam reservoir drained after spillway cracks",
            "The regional water authority began draining the reservoir behind the Kestrova dam after "
            "inspectors reported cracks in the concrete spillway. Residents downstream were told the work "
            "could take weeks.",
            30,
        ),
    ]
    later = [
        ("Kestrova festival opens with record crowds", "Thousands of visitors queued for the opening concert in the old market hall, and organisers sold out the weekend passes within hours of the gates opening."),
        ("Council elects new mayor in Kestrova", "After a tight vote the council chose a former history teacher, who promised cheaper housing, more parks and a new library for the eastern suburbs."),
        ("Kestrova football club wins the regional cup", "A late penalty decided the final against the league leaders, and supporters celebrated in the main square with flares and songs until midnight."),
        ("Bakery chain opens third shop in Kestrova", "The family business hired twelve bakers and sales staff and plans a fourth branch near the railway station early next year."),
    ]  # fmt: skip
    articles = dam + [make(f"https://c{i}.example/{i}", t, x, 80 + 30 * i) for i, (t, x) in enumerate(later)]
    past = dataclasses.replace(StorySettings(), link_weights_from="past")
    same, joined_one, joined_parts, joined_both = batch_agreement(articles, past, batches=2)
    assert same == 1.0 and joined_one == joined_parts == joined_both > 0
    same, joined_one, joined_parts, _ = batch_agreement(articles, StorySettings(), batches=2)
    assert same < 1.0 and joined_one != joined_parts
    with pytest.raises(ValueError, match="link_weights_from"):
        StorySettings(link_weights_from="future")
