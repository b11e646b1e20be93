"""Behaviour of the clean stage: boilerplate lines go, prose stays, every removal is audited."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest

try:  # the regex parser, to enumerate what a phrase pattern can match
    from re import _parser as sre_parse  # Python >= 3.11
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse

from transforms import clean, fingerprint, records
from transforms.clean import (
    Cleaned,
    CleanRules,
    clean_article,
    clean_text,
    learn_host_boilerplate,
    line_key,
    line_rule,
)
from transforms.records import Article, Failure

SHARED = Path(__file__).resolve().parents[2] / "shared"
SEEDS = SHARED / "seeds"
RULES = CleanRules()
T0 = datetime(2025, 10, 26, tzinfo=UTC)

# Boilerplate lines of the kind news text extraction leaves behind (written for these tests).
OWN_TEXT = """\
Ferry Link to Reopen After Storm Repairs

Ferry Link to Reopen After Storm Repairs

 date 2025-10-26 The island ferry will run again from Monday, the harbour authority said, after three weeks of repairs to the landing stage.

PORTWELL: Engineers replaced two damaged pontoons and a section of the ramp that was lifted by the storm surge.

"We expect the first sailing at seven in the morning," a spokeswoman said.

The operator said tickets bought for cancelled crossings remain valid until the end of the year.

The operator said tickets bought for cancelled crossings remain valid until the end of the year.

Share on Facebook
Previous Post Next Post
Harbour NewsPortwell - IslandsFerry Services
Comments (3)
Add Comment
"""
OWN_BOILERPLATE = [
    "Share on Facebook",
    "Previous Post Next Post",
    "Harbour NewsPortwell",
    "Comments (3)",
    "Add Comment",
    "date 2025-10-26",
]
OWN_PROSE = [
    (
        "The island ferry will run again from Monday, the harbour authority said, after three "
        "weeks of repairs to the landing stage."
    ),
    "PORTWELL: Engineers replaced two damaged pontoons",
    '"We expect the first sailing at seven in the morning," a spokeswoman said.',
    "The operator said tickets bought for cancelled crossings remain valid",
]


def split_title(raw: str) -> tuple[str | None, str]:
    """The text source's convention: the first non-empty line is the title when it reads like
    one (short, no closing full stop); otherwise there is no title."""
    stripped = raw.lstrip()
    first, _, rest = stripped.partition("\n")
    first = first.strip()
    if first and len(first) <= 150 and not first.endswith((".", "。")):
        return first, rest
    return None, raw


def paragraphs(text: str) -> list[str]:
    return [" ".join(p.split()) for p in text.splitlines() if p.strip()]


def test_own_text_loses_boilerplate_and_keeps_prose():
    title, body = split_title(OWN_TEXT)
    cleaned = clean_text(body, title, RULES)

    for line in OWN_BOILERPLATE:
        assert line not in cleaned.text
    for sentence in OWN_PROSE:
        assert sentence in cleaned.text
    out = paragraphs(cleaned.text)
    assert title not in out, "title repeated as the first body line"
    assert out[0].startswith("The island ferry"), "leading dateline metadata stripped"
    assert len(out) == len(set(out)), "repeated paragraph kept once"
    assert out[1].startswith("PORTWELL:"), "a dateline opening a sentence is prose"
    assert cleaned.title == title


def test_every_removal_is_named_and_audited():
    title, body = split_title(OWN_TEXT)
    cleaned = clean_text(body, title, RULES)

    assert set(cleaned.rules_fired) >= {
        "share",
        "nav",
        "tags",
        "comments",
        "dateline_meta",
        "repeated_title",
        "repeated_paragraph",
    }
    # Nothing is lost silently: kept + removed text covers every word of the input.
    all_words = set(re.findall(r"\w+", body))
    kept_or_removed = set(re.findall(r"\w+", cleaned.text + " " + " ".join(cleaned.removed)))
    assert all_words <= kept_or_removed


def test_cleaned_text_hands_on_the_words_fingerprint_reads():
    # clean_article lets the next stages read the cleaned text's words from its lines' keys;
    # they must be what they would read from the text, and a text that NFKC changes
    # (fullwidth letters) must not be read so
    texts = [
        OWN_TEXT,
        "Ferry link reopens\n* * *\nThe ΟΔΟΣ ΣΟΦΟΚΛΗΣ ferry, İstanbul's, reopened; straße 3,5 km.\n* * *",
        "The ＡＢＣ ferry (ﬁnal run) left at 10:30.\nIt carried 300 passengers and their cars.",
    ]
    for text in texts:
        for rules in (RULES, CleanRules(disabled=("no_letters", "repeated_paragraph"))):
            cleaned = clean_text(text, "Ferry link reopens", rules)
            if unicodedata.is_normalized("NFKC", cleaned.text):
                assert cleaned.keys.split() == fingerprint.words(cleaned.text)
            article = clean_article(Article(url="https://x.example/a", fetched_at=T0, text=text), rules)
            fingerprint._recent.clear()
            expected = fingerprint.recent_normalised(article.text)
            assert expected == (unicodedata.normalize("NFKC", article.text), tuple(fingerprint.words(article.text)))
            fingerprint._recent.clear()
            assert clean_article(Article(url="https://x.example/a", fetched_at=T0, text=text), rules) == article
            assert fingerprint.recent_normalised(article.text) == expected
    assert not unicodedata.is_normalized("NFKC", clean_text(texts[2], None, RULES).text)


def test_related_list_after_its_header_goes_and_prose_after_it_stays():
    prose = "The harbour barrier closed for the first time on Tuesday as the storm surge rose."
    later = "Engineers will inspect the gates next week, the port authority said."
    text = "\n".join(
        [
            prose,
            "Related Articles",
            "Ferry services resume after the storm",
            "Dock workers vote on new contract, results expected...",
            "Harbour museum reopens!",
            later,
            "Weather warnings: what the colours mean",
        ]
    )
    cleaned = clean_text(text, None, RULES)
    assert cleaned.text.splitlines() == [prose, later, "Weather warnings: what the colours mean"]
    assert cleaned.rules_fired == ("related",)
    assert "Dock workers vote on new contract, results expected..." in cleaned.removed
    # A related lead-in before any text opens no list: the next heading is the article's.
    opening = clean_text("Related\nStorm surge closes the barrier\n" + prose, None, RULES)
    assert opening.text.splitlines() == ["Storm surge closes the barrier", prose]
    # Without the related group, neither the header nor its list goes.
    kept = clean_text(text, None, CleanRules(("related",)))
    assert kept.text == text


def test_disabled_rule_group_keeps_its_lines():
    cleaned = clean_text("Some prose sentence here.\nComments (3)", None, CleanRules(("comments",)))
    assert "Comments (3)" in cleaned.text
    assert "comments" not in cleaned.rules_fired


@pytest.mark.parametrize(
    "line",
    [
        "« Vorheriger Artikel",
        "Nächster Beitrag »",
        "Article précédent",
        "0 Kommentare",
        "Kommentar schreiben",
        "Laisser un commentaire",
        "Teilen auf Facebook",
        "Facebook Twitter WhatsApp E-Mail",
        "Suivez-nous sur Twitter",
        "Siguenos en Telegram, Instagram, Facebook y Twitter",
        "Follow The Harbour Post on Twitter and Instagram @harbourpost. Send us a tip on WhatsApp.",
        "Teilen mit:",
        "Like this:",
        "Loading...",
        "Listen to this article",
        "(AP Photo/Jane Roe)",
        "Image source, Getty Images",
        "Media caption, Watch: the harbour barrier closes",
        "Have a news tip? Email us at tips@harbour.example",
        "Read the full story here",
        "Back to top",
        "Story continues below advertisement",
        "Skip to main content",
        "toggle caption",
        "Menu",
        "Published 3 hours ago",
        "vor 2 Stunden",
        "Watch: the moment the harbour barrier closed",
        "We use cookies to improve your experience.",
        "Enjoy unlimited access to all of our journalism",
        "To view the full story, please subscribe to The Harbour Post.",
        "Lesen Sie auch: Neue Brücke eröffnet",
        "Czytaj także: Nowy most otwarty",
        "Lee también: El puente abre en mayo",
        "Lea: El puente abre en mayo",
        "Previous: Harbour barrier opens",
        "Schon gelesen?",
        "Most viewed",
        "| Weitere Artikel zum Thema |",
        "| | Share on Facebook | |",
        "Foto: dpa",
        "(Photo by Jane Roe/Getty Images)",
        "Anzeige",
        "Advertisement",
        "Tags: Hafen, Fähre, Sturm",
        "Veröffentlicht am 26.10.2025, 14:30 Uhr",
        "Updated: October 26, 2025 10:30 am",
        "5 min read",
        "Sign up for our daily newsletter",
        "Sign Up Now",
        "Download the Portwell Gazette app for the latest news",
        "© 2025 Example Media. All rights reserved.",
        "Copyright 2025 Example Media",
        "This material may not be published, broadcast, rewritten or redistributed.",
        "Our site uses cookies so that we and our partners can show you relevant ads.",
        "Auf unserer Website werden Cookies gemäß unserer Datenschutzerklärung verwendet.",
        "Foto de Ana Ruiz",
        "Next: Ferry strike ends after three days",
        # current templates (held-out review, stop 34; lines written for these tests)
        "Portwell Reviews is reader-supported: we may earn an affiliate commission when you buy.",
        "Got a news tip? Email newsdesk@portwell.example or message us on WhatsApp.",
        "Please turn on JavaScript to use the ferry map",
        "Originally Published: March 3, 2026 at 9:15 AM EST",
        "___",
        "Déjà abonné ? Se connecter",
        "Schrijf je in voor de nieuwsbrief van de Portwell Courant",
        "dpa-infocom, dpa:260303-99-123456/2",
        "Jetzt kommentieren",
        "We pay for your stories!",
        "Table of Contents",
        "Check price at Harbourmart",
        "Republish our articles for free under a Creative Commons licence.",
        "The Gazette is not responsible for the content of external sites.",
        "Siga a Gazeta do Porto no Instagram e no Facebook",
        "Receba as notícias da Gazeta do Porto no WhatsApp",
        "* * *",
    ],
)
def test_multilingual_boilerplate_lines(line):
    assert line_rule(line, RULES) is not None


@pytest.mark.parametrize(
    "line",
    [
        "ISLAMABAD: The minister said the talks would resume on Monday.",
        "Readers left hundreds of comments under the original post.",
        "Share prices fell sharply after the announcement.",
        "Next year the company plans to open two more plants.",
        "The newsletter, founded in 1998, has 40,000 subscribers and is read in 30 countries.",
        "Rubio calls India ‘mature’ in diplomacy",
        "iPhone sales rose in the third quarter, Apple said.",
        "In March 2024, the council approved the plan.",
        "Facebook owner Meta said it would appeal the ruling.",
        "Follow the money, investigators told reporters on Twitter and Facebook.",
        "Search teams found the boat near the harbour.",
        "Close to 300 people attended the funeral.",
        "Menu prices rose by 20 percent last year.",
        "Three hours ago the gates were still open, officials said.",
        "AP photographers were at the scene when the bridge collapsed.",
        "Email providers said the outage lasted three hours.",
        "Got a minute? The council wants to hear from residents about the plan.",
        "Additional reporting by Jane Roe; Editing by John Smith",
        "A spokeswoman declined to comment on the report.",
        "They were working to support us, she said.",
        "RealClearPolitics Iowa average",
        "Video: the ferry leaving the harbour at dawn",
        "The agency received 300 comments from the public.",
        "Ten Pros: fast, light, cheap",
        "See all the details in the council report.",
        "Trending topics on social media included the storm and the ferry strike.",
        "More from the survey suggests that most residents support the barrier.",
        # sentences that share words with the phrase rules (held-out review, stop 34)
        "Copyright law was not written with ferry timetables in mind, the judge wrote.",
        "The names of the two boys may not be published under a court order issued in June.",
        "Regulators said websites must make it as easy to reject cookies as to accept them.",
        "These cookies use brown sugar, which keeps the middles soft for days.",
        "Most cookies use baking soda alone; we add a pinch of baking powder as well.",
        "Register with a doctor if you have recently moved to the island.",
        "Register to vote by Oct. 20 at the county elections office or online.",
        "Join the queue before 7 p.m. on polling day and you will be allowed to vote.",
        "Get the free flu jab at a pharmacy if you are eligible.",
        "Download the NHS App to book an appointment.",
        "How TikTok and YouTube differ",
        "Fotos de satélite publicadas este lunes muestran que el embalse está a la mitad.",
        "Photos de vacances, vidéos, messages : les enquêteurs ont tout analysé.",
        "Next: the mayor has ten days to sign or veto the budget.",
        "Tips from readers helped the police find the boat, a spokesman said.",
        "Summary: the council approved the budget and the ferry plan.",
        # a label, then a headline and the report itself (a feed's or a search result's snippet)
        "WATCH: Harbour barrier closes for the first time ... On Monday night the harbour barrier "
        "closed for the first time, sealing the port off from a tide that officials called the "
        "highest in forty years.",
    ],
)
def test_prose_lines_are_not_boilerplate(line):
    assert line_rule(line, RULES) is None


def test_phrase_checks_with_the_words_of_the_text_decide_as_with_all_words():
    # clean_text gives each line only the phrase words its whole text contains
    lines = [
        *OWN_TEXT.splitlines(),
        "Sign up for our daily newsletter | Report abuse",
        "Cookies help us deliver our services. By using them you accept our cookie policy.",
        "Affiliate links: we may earn a commission",
        "ΣΟΦΟΚΛΗΣ ΣΥΝΔΡΟΜΗ Σ | İstanbul subscribe ς",
        "Click here to load the content · 3 min read",
        "Leave a comment",
        # a long line whose segments are short: their weak phrases count
        "Share on Facebook | Share on Twitter | Share on LinkedIn | Share on WhatsApp | Share by email"
        " | Subscribe to our coverage of the island | Click to load the map of the ferry routes",
    ]
    assert len(lines[-1]) > 160 and line_rule(lines[-1], RULES) == "share"
    for text in ("\n".join(lines), "\n".join(lines[-7:]), lines[-4], lines[-1]):
        short = "\n".join(line for line in text.splitlines() if len(line) <= 160 or "|" in line)
        present = clean._present_words(text.lower(), short.lower())
        assert all(set(found) <= set(words) for found, words in zip(present, clean._PHRASE_WORD_LISTS, strict=True))
        for line in text.splitlines():
            assert line_rule(line, RULES, present=present) == line_rule(line, RULES)
    assert clean._present_words("no such words") == ((),) * len(clean._PHRASE_WORD_LISTS)


def _paths(items) -> list[str]:
    """One string per path through a parsed regex: every branch, every character of an
    all-literal class, repeats at their least count and one more. Other classes and any
    character become "\0", which no gate word contains; assertions match nothing. A gate word
    found in every path is found in every string the regex matches."""
    out = [""]
    for op, av in items:
        if op is sre_parse.LITERAL:
            choices = [chr(av)]
        elif op is sre_parse.IN and all(kind is sre_parse.LITERAL for kind, _ in av):
            choices = [chr(code) for _, code in av]
        elif op is sre_parse.BRANCH:
            choices = [path for branch in av[1] for path in _paths(branch)]
        elif op is sre_parse.SUBPATTERN:
            choices = _paths(av[-1])
        elif op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT):
            low, high, sub = av
            choices = [path * n for path in _paths(sub) for n in {low, min(low + 1, high)}]
        elif op in (sre_parse.AT, sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            choices = [""]
        else:
            choices = ["\0"]
        out = [a + b for a in out for b in choices]
    return out


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (clean._COMMENT_PROMPT_LC, clean._COMMENT_PROMPT_WORDS),
        (clean._ADVERT_PHRASE_LC, clean._ADVERT_PHRASE_WORDS),
        (clean._NEWSLETTER_LC, clean._NEWSLETTER_WORDS),
        (clean._LEGAL_LC, clean._LEGAL_WORDS),
        (clean._UI_LC, clean._UI_WORDS),
        (clean._COMMENT_HEADER_LC, clean._COMMENT_HEADER_WORDS),
        (clean._INLINE_SIGNATURE_LC, clean._INLINE_SIGNATURE_WORDS),
    ],
)
def test_phrase_pre_check_never_hides_a_phrase(pattern, words):
    """The cheap word test before a phrase pattern only skips lines the pattern cannot match:
    a phrase added to a pattern without one of its gate words would otherwise never fire."""
    missing = [
        path for path in _paths(sre_parse.parse(pattern.pattern, pattern.flags)) if not any(w in path for w in words)
    ]
    assert not missing, missing[:5]


@pytest.mark.parametrize(
    "raw",
    [
        "Share on Facebook",
        "Caf\u00e9 au lait",
        "Cafe\u0301 au lait",
        "Caf\u00ade\u0301 au lait",
        "Cafe\u00ad\u0301 au lait",  # the soft hyphen between the letter and its accent
        "Stra\u00dfe  \u00a0Nord",
    ],
)
def test_host_lookup_key_is_the_line_key(raw):
    # Learning counts raw lines under line_key; clean_text looks up the key of the line it
    # normalised. A soft hyphen before an accent once made these differ.
    line = clean._normalise_line(raw)
    assert clean._key(line) == line_key(raw) == line_key(line)
    assert clean._normalise_line(line) == line


def test_learned_host_line_with_a_soft_hyphen_before_an_accent_is_removed():
    template = "Cafe\u00ad\u0301 Lumen weekly digest for subscribers"
    texts = [f"{PROSE} Story {i}.\n{template}" for i in range(5)]
    learned = learn_host_boilerplate(texts, RULES)
    cleaned = clean_text(texts[0], None, RULES, learned)
    assert cleaned.text == f"{PROSE} Story 0."
    assert "host_boilerplate" in cleaned.rules_fired


PROSE = (
    "The council met on Tuesday to discuss the harbour budget for the coming year, and members "
    "agreed to set aside money for dredging the channel before the summer season begins."
)


def test_comment_thread_after_the_article_is_removed():
    text = "\n".join(
        [PROSE, PROSE.replace("Tuesday", "Wednesday"), "Have your say", "Great news for us all!"]
        + ["Posted by: Ann | May 2, 2024 10:01 AM", "I disagree with the plan entirely."]
        + ["Posted by: Bob | May 2, 2024 11:15 AM"]
    )
    cleaned = clean_text(text, None, RULES)
    assert cleaned.text.splitlines() == [PROSE, PROSE.replace("Tuesday", "Wednesday")]
    assert "Posted by: Bob | May 2, 2024 11:15 AM" in cleaned.removed
    assert "comments" in cleaned.rules_fired


def test_glued_comment_section_is_cut_at_its_header():
    second = PROSE.replace("Tuesday", "Friday")
    line = f"{second} Comments are now closed for this story Ann Smith I think this is wrong."
    cleaned = clean_text(f"{PROSE}\n{line}", None, RULES)
    assert cleaned.text == f"{PROSE}\n{second}"
    assert cleaned.removed == ("Comments are now closed for this story Ann Smith I think this is wrong.",)


def test_comment_section_glued_into_one_line_is_cut():
    glued = (
        f"{PROSE} Comments Great plan, finally! Posted by Ann on May 2, 2024 10:01 AM "
        "Report this comment What a waste. Posted by Bob on May 2, 2024 11:15 AM"
    )
    cleaned = clean_text(glued, None, RULES)
    assert cleaned.text == PROSE
    assert cleaned.removed[0].startswith("Comments Great plan")
    # One byline with a time is not a comment section.
    byline = f"Posted by Ann Smith on May 2, 2024 10:01 AM. {PROSE}"
    assert clean_text(byline, None, RULES).text == byline


def test_headline_with_its_kicker_is_a_repeated_title():
    body = f"Verkehr: Fähre fällt im Mai aus\n{PROSE}\nHafen: neue Pläne für den Kai"
    cleaned = clean_text(body, "Fähre fällt im Mai aus", RULES)
    assert cleaned.text.splitlines() == [PROSE, "Hafen: neue Pläne für den Kai"]
    assert "repeated_title" in cleaned.rules_fired


def test_reported_speech_and_consultation_prompts_do_not_cut_the_article():
    # present-tense reporting and quoted posts read like "<name> says/wrote" signatures only
    # at a glance; a council's "Have your say on ..." is a sentence, not a comment header
    lines = [
        PROSE,
        PROSE.replace("Tuesday", "Wednesday"),
        "The council says 61 per cent of households put out half-full bins.",
        'Haddad wrote on Facebook: "Every summer our kids have nowhere to swim."',
        'Kirby wrote on X on Tuesday evening: "Promises are cheap."',
        "The harbour association says 4 in 10 ports have already moved to the new timetable.",
        "Have your say on the plans at the council website until 14 March.",
        "Drop-in events will be held at the library on 22 February.",
    ]
    text = "\n".join(lines)
    assert clean_text(text, None, RULES).text == text
    # real signatures still open the thread
    signed = [*lines[:2], "Great news for us all!", "jim says:", "Not so sure.", "Mike D. says: 5 March 2024 at 10:12"]
    assert clean_text("\n".join(signed), None, RULES).text.splitlines() == lines[:2]


def test_comment_counter_inside_prose_does_not_cut():
    text = f"{PROSE}\nThe agency received 300 comments from the public about the dredging plan."
    assert clean_text(text, None, RULES).text == text


def test_host_boilerplate_learned_from_recurring_lines():
    footer = "Portwell Gazette is published by Harbour Media Group Limited"
    texts = [f"Story number {i} is about a different topic entirely.\n{footer}" for i in range(5)]
    learned = learn_host_boilerplate(texts, RULES)
    cleaned = clean_text(texts[0], None, RULES, learned)
    assert footer not in cleaned.text
    assert footer in cleaned.removed
    assert "host_boilerplate" in cleaned.rules_fired
    assert cleaned.text.startswith("Story number 0")
    # Too few articles of a host: nothing is learned.
    assert learn_host_boilerplate(texts[:2], RULES) == frozenset()
    # ... nor from one article read under many URLs: every line of it would recur
    assert learn_host_boilerplate(texts[:1] * 6, RULES) == frozenset()
    assert learn_host_boilerplate(texts[:2] * 3, RULES) == frozenset()


def test_small_host_keeps_the_background_paragraph_its_follow_ups_share():
    background = "The Pike Ridge fire, found on Aug. 9, has burned about 14,800 hectares and is not contained."
    footer = "Lake County Courier is published by Harbour Media Group Limited"
    texts = [f"Update {i}: crews worked through the night near the ridge.\n{background}\n{footer}" for i in range(4)]
    assert learn_host_boilerplate(texts, RULES) == {line_key(footer)}
    # a host with many articles in the run: a sentence that recurs in half of them is template
    many = texts + [f"Story {i} is about something else entirely.\n{background}\n{footer}" for i in range(6)]
    assert learn_host_boilerplate(many, RULES) == {line_key(footer), line_key(background)}


def test_clean_article_filters_empty_and_short_text():
    art = Article(url="https://example.org/a", fetched_at=T0, text="Comments (0)\nAdd Comment")
    failure = clean_article(art, RULES)
    assert isinstance(failure, Failure)
    assert (failure.stage, failure.reason) == (records.FILTER_STAGE, "empty_text")

    short = clean_article(records.replace(art, text="A short line."), RULES)
    assert isinstance(short, Failure) and short.reason == "too_short"

    long_text = "The harbour reopened today after repairs. " * 5 + "\nComments (0)"
    ok = clean_article(records.replace(art, text=long_text), RULES)
    assert isinstance(ok, Article)
    assert ok.rules_fired == ("comments",) and ok.removed == ("Comments (0)",)


def test_rules_validate():
    with pytest.raises(ValueError, match="disabled"):
        CleanRules(disabled=("no_such_rule",))
    with pytest.raises(ValueError, match="host_min_share"):
        CleanRules(host_min_share=0)


def test_clean_text_is_deterministic():
    title, body = split_title(OWN_TEXT)
    assert clean_text(body, title, RULES) == clean_text(body, title, RULES)
    assert isinstance(clean_text("", None, RULES), Cleaned)


SEED_BOILERPLATE = [
    "Previous Post Next Post",
    "Comments (0)",
    "Add Comment",
    "Marco RubioPakistan",
]


@pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds not available")
def test_seeds_lose_boilerplate_and_keep_prose():
    files = sorted(SEEDS.glob("*.txt"))
    assert len(files) == 5
    for path in files:
        raw = path.read_text(encoding="utf-8")
        title, body = split_title(raw)
        cleaned = clean_text(body, title, RULES)
        out = paragraphs(cleaned.text)
        for line in SEED_BOILERPLATE:
            assert line not in cleaned.text, (path.name, line)
        assert not cleaned.text.lstrip().lower().startswith("date "), path.name
        if title:
            assert title not in out[:1], (path.name, "title repeated")
        assert len(out) == len(set(out)), path.name
        assert not any(a != b and a in b for a in out for b in out), (
            path.name,
            "contained",
        )
        # No prose removed: every sentence-like input paragraph survives (possibly inside a
        # longer copy of itself, or with a dateline-metadata prefix stripped).
        text = " ".join(out)
        for para in paragraphs(body):
            if any(b in para for b in SEED_BOILERPLATE) or para == title:
                continue
            para = re.sub(r"^date \d{4}-\d\d-\d\d ", "", para)
            assert para in text, (path.name, para[:60])
        if "ISLAMABAD:" in raw or "WASHINGTON:" in raw:
            assert re.search(r"\b(ISLAMABAD|WASHINGTON):", cleaned.text)


def test_host_state_round_trip(tmp_path):
    from transforms.clean import load_host_state, save_host_state

    path = str(tmp_path / "hosts.json")
    assert load_host_state(path) == {}
    save_host_state(path, {"example.org": {"b", "a"}})
    assert load_host_state(path) == {"example.org": frozenset({"a", "b"})}


def test_host_state_of_another_learning_rule_is_not_applied(tmp_path, caplog):
    # A state learned by an earlier rule (the flat {host: keys} of version 1, which counted one
    # text read under several URLs once per URL) must not strip lines from new articles.
    import json

    from transforms.clean import HOST_STATE_VERSION, host_state_bytes, load_host_state

    old = tmp_path / "old.json"
    old.write_text(json.dumps({"example.org": ["the whole story line"]}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"version": HOST_STATE_VERSION + 1, "hosts": {"example.org": ["x"]}}))
    with caplog.at_level("WARNING", logger="storybeam.clean"):
        assert load_host_state(str(old)) == {}
        assert load_host_state(str(other)) == {}
    assert sum("learns afresh" in r.getMessage() for r in caplog.records) == 2
    # what a run stages in its place carries the current version and only what it learned
    staged = json.loads(host_state_bytes(load_host_state(str(old)), [("example.org", ("footer",))]))
    assert staged == {"version": HOST_STATE_VERSION, "hosts": {"example.org": ["footer"]}}


def test_clean_text_pipeline_learns_host_boilerplate(tmp_path):
    """One small offline pipeline: a footer shared by one host's articles is removed and
    reported on the host_boilerplate output; another host is untouched, and so are articles
    without a host (local files): they are not one publisher, nothing is learned across them."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.clean import HOST_BOILERPLATE, CleanText, line_key

    footer = "Portwell Gazette is published by Harbour Media Group Limited"
    body = "Story {} is about a different harbour topic entirely, with enough words to be kept."
    articles = [
        Article(url=f"https://gazette.example/{i}", fetched_at=T0, source="gazette.example",
                text=f"{body.format(i)}\n{footer}")
        for i in range(4)
    ] + [
        Article(url="https://other.example/1", fetched_at=T0, source="other.example",
                text=f"{body.format(9)}\n{footer}")
    ] + [
        Article(url=f"/data/notes/{i}.txt", fetched_at=T0, source="", text=f"{body.format(10 + i)}\n{footer}")
        for i in range(4)
    ]  # fmt: skip
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(articles) | CleanText(CleanRules())
        assert_that(
            out.ok | beam.Map(lambda a: (a.source, footer in a.text)),
            equal_to([("gazette.example", False)] * 4 + [("other.example", True)] + [("", True)] * 4),
            label="FooterGone",
        )
        assert_that(
            out[HOST_BOILERPLATE],
            equal_to([("gazette.example", (line_key(footer),))]),
            label="Learned",
        )


def _drop_repeats_by_definition(lines: list[str], keys: list[str], min_contained: int, min_repeat: int) -> list[str]:
    """The rule spelled out, pair by pair: a later copy of a long line goes, then a line whose
    words occur, as whole words in order, inside another remaining (longer) line."""
    unique, unique_keys = [], []
    for line, key in zip(lines, keys, strict=True):
        if key in unique_keys and len(key) >= min_repeat:
            continue
        unique.append(line)
        unique_keys.append(key)
    return [
        line
        for i, (line, key) in enumerate(zip(unique, unique_keys, strict=True))
        if len(key) < min_contained
        or not any(j != i and f" {key} " in f" {other} " for j, other in enumerate(unique_keys))
    ]


@pytest.mark.parametrize("scan_max_chars", [clean._SCAN_MAX_CHARS, 0])  # scan, word index
def test_repeated_and_contained_lines_match_the_pairwise_definition(monkeypatch, scan_max_chars):
    import random

    monkeypatch.setattr(clean, "_SCAN_MAX_CHARS", scan_max_chars)

    rng = random.Random(7)
    vocab = ["harbour", "tide", "barrier", "opens", "the", "a", "tides"]
    dropped_some = 0
    for _ in range(400):
        lines = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 10))]
        keys = [clean._key(line) for line in lines]
        for min_contained, min_repeat in ((1, 1), (12, 8), (30, 30)):
            kept = clean._unrepeated(lines, keys, lambda rule, line: None, min_contained, min_repeat)
            got = [lines[i] for i in kept]
            assert got == _drop_repeats_by_definition(lines, keys, min_contained, min_repeat), lines
            dropped_some += len(got) < len(lines)
    assert dropped_some > 100
