"""transforms.fastjustext: the same paragraphs, and the same classification, as jusText's own
SAX-driven ParagraphMaker."""

from __future__ import annotations

import random

import pytest
from justext.core import ParagraphMaker, classify_paragraphs, revise_paragraph_classification
from justext.utils import normalize_whitespace as justext_normalize_whitespace
from lxml import etree, html

from transforms import fastjustext

STOPWORDS = ("the", "a", "of", "and", "to", "in", "is", "was", "on")
WHITESPACE = (" ", "\n", "\r", "\t", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\xa0", "\u3000")


def test_normalize_whitespace_matches_justext():
    rng = random.Random(3)
    alphabet = ("a", "b", "\u00e9", *WHITESPACE)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(13)))
        assert fastjustext.normalize_whitespace(text) == justext_normalize_whitespace(text), repr(text)


def _soup(rng: random.Random, elements: int = 150) -> str:
    """Nested paragraph and inline tags, <br> runs, links, headings, comments, processing
    instructions, whitespace-only and non-ASCII text: what the paragraph maker branches on."""
    tags = ("div", "p", "span", "a", "b", "h2", "li", "ul", "td", "tr", "table", "select", "option", "em")
    words = ("the", "story", "of", "a", "council", "vote", "\u00a9 2026", "and", "in", "Ärger", "was")
    parts, open_tags = ["<html><body>"], []
    for _ in range(elements):
        roll = rng.random()
        if open_tags and roll < 0.3:
            parts.append(f"</{open_tags.pop()}>")
        elif roll < 0.45:
            parts.append(rng.choice(("<br>", "<br><br>", "<br> <br>", "<br>\n")))
        elif roll < 0.5:
            parts.append(rng.choice(("<!-- note -->", "<?pi x?>", "<img src='x.png'>")))
        elif roll < 0.7:
            text = " ".join(rng.choice(words) for _ in range(rng.randrange(1, 30)))
            parts.append(text + rng.choice(WHITESPACE) + rng.choice(("", ",", ".")))
        else:
            tag = rng.choice(tags)
            parts.append(f"<{tag}>{rng.choice(WHITESPACE)}")
            open_tags.append(tag)
    parts.extend(f"</{tag}>" for tag in reversed(open_tags))
    parts.append("</body></html>")
    return "".join(parts)


def _fields(paragraphs) -> list[tuple]:
    stoplist = frozenset(STOPWORDS)
    return [
        (
            p.dom_path,
            p.xpath,
            list(p.text_nodes),
            p.chars_count_in_links,
            p.tags_count,
            p.text,
            len(p),
            p.words_count,
            p.is_heading,
            p.contains_text(),
            p.stopwords_count(stoplist),
            p.stopwords_density(stoplist),
            p.links_density(),
        )
        for p in paragraphs
    ]


def _classes(paragraphs) -> list[tuple]:
    classify_paragraphs(paragraphs, STOPWORDS, 50, 150, 0.1, 0.2, 0.25, True)
    revise_paragraph_classification(paragraphs, 150)
    return [(p.cf_class, p.class_type, p.heading, p.is_boilerplate) for p in paragraphs]


def _assert_same(root) -> int:
    expected = ParagraphMaker.make_paragraphs(root)
    made = fastjustext.make_paragraphs(root)
    assert _fields(made) == _fields(expected)
    assert _classes(made) == _classes(expected)
    return len(expected)


def test_generated_pages_give_justexts_paragraphs():
    rng = random.Random(11)
    paragraphs = 0
    for _ in range(150):
        root = html.fromstring(_soup(rng))
        paragraphs += _assert_same(root)
        paragraphs += _assert_same(root.find("body"))  # a subtree: paths start below the page
    assert paragraphs > 3000


def test_lone_br_paragraphs_and_br_runs():
    # A paragraph whose only text is a <br>'s space is dropped (jusText's paragraph is falsy);
    # <br><br> separates paragraphs; a link's characters count as link text.
    page = (
        "<html><body><div>a<br><br>b <a href='/x'>link text</a></div><div>\n<br></div>"
        "<p>x<br>y</p><p><br></p></body></html>"
    )
    assert [p.text for p in fastjustext.make_paragraphs(html.fromstring(page))] == ["a", "b link text", "x y"]
    assert _assert_same(html.fromstring(page)) == 3


def test_processing_instructions_next_to_the_root_give_their_tails():
    root = etree.fromstring("<root><p>one</p>tail</root>")
    root.addprevious(etree.ProcessingInstruction("a", "x"))
    root.addnext(etree.ProcessingInstruction("b", "y"))
    root.getnext().tail = "after"
    texts = [p.text for p in fastjustext.make_paragraphs(root)]
    assert texts == [p.text for p in ParagraphMaker.make_paragraphs(root)] == ["one", "tailafter"]


def test_entity_reference_takes_justexts_own_path():
    root = etree.fromstring("<root><p>one</p></root>")
    root.find("p").append(etree.Entity("nbsp"))
    with pytest.raises(Exception) as expected:
        ParagraphMaker.make_paragraphs(root)
    with pytest.raises(type(expected.value)):
        fastjustext.make_paragraphs(root)


def test_installed_in_trafilatura():
    import trafilatura.external

    from transforms.extract import speed_up_trafilatura

    speed_up_trafilatura()
    assert trafilatura.external.ParagraphMaker is fastjustext.FastParagraphMaker


def test_real_pages_give_justexts_paragraphs(shared_dir):
    from trafilatura.baseline import basic_cleaning
    from trafilatura.utils import load_html

    from benchmarks.corpus import eval_pages

    paragraphs = 0
    for _, page in eval_pages()[::25]:
        tree = load_html(page)
        if tree is not None:
            paragraphs += _assert_same(basic_cleaning(tree))  # what trafilatura hands jusText
    assert paragraphs > 1000
