"""transforms.fastreadability: trafilatura's readability port gives the same summary, and leaves
the page it was given in the same state, with the faster methods installed."""

from __future__ import annotations

import copy
import random

import pytest
from lxml import etree, html
from trafilatura import readability_lxml as rl

from transforms import fastreadability


class StockDocument(rl.Document):
    """trafilatura's Document as shipped, whatever install() did to the class."""

    __slots__ = ()
    locals().update(fastreadability.ORIGINALS)


@pytest.fixture(autouse=True)
def installed():
    fastreadability.install()


def _summary(document_class, tree) -> tuple[str, bytes]:
    """Summary (or the exception it raised) and the page as readability left it."""
    doc = copy.deepcopy(tree)
    try:
        summary = document_class(doc).summary()
    except Exception as err:  # readability fails on some pages; it must fail the same way
        summary = f"{type(err).__name__}: {err}"
    return summary, etree.tostring(doc, encoding="utf-8")


def _assert_same(tree) -> str:
    expected = _summary(StockDocument, tree)
    assert _summary(rl.Document, tree) == expected
    return expected[0]


WORDS = ("the", "council", "vote", "Ärger", "\u00a0", "and,", "in", "was.", "story", "\u3000", "K\u212a")
# class and id values: unlikely / maybe-a-candidate / negative / positive words, case and
# non-ASCII variants, empty strings and single characters
ATTRIBUTES = (
    "",
    "x",
    "comment",
    "Comment-list",
    "footer",
    "sidebar main",
    "article-body",
    "content",
    "menu",
    "page-header",
    "widget",
    "POST",
    "\u212aontent",  # KELVIN SIGN: matches "k" case-insensitively, lowers to "k"
    "tags related",
    "combx",
    "entry",
    "shoutbox body",
    "com-x",
    "Stra\u00dfe",
)
BLOCKS = ("div", "div", "div", "p", "td", "table", "tr", "ul", "li", "section", "aside", "article", "pre")
INLINE = ("span", "a", "b", "em", "img", "br", "input", "embed", "iframe", "h2", "h1", "form", "header", "footer")


def _attributes(rng: random.Random) -> str:
    parts = []
    for name in ("class", "id"):
        if rng.random() < 0.45:
            parts.append(f' {name}="{rng.choice(ATTRIBUTES)}"')
    if rng.random() < 0.05:
        parts.append(' type="hidden"')
    if rng.random() < 0.05:
        parts.append(' src="https://www.youtube.com/embed/x"')
    return "".join(parts)


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 40)))


def _soup(rng: random.Random, elements: int = 160) -> str:
    """Nested divs (with loose text, tails and <br> children), tables, lists, headings with links,
    comments, forms, iframes and images: what readability's steps branch on."""
    parts, open_tags = ["<html><body>"], []
    for _ in range(elements):
        roll = rng.random()
        if open_tags and roll < 0.28:
            parts.append(f"</{open_tags.pop()}>")
        elif roll < 0.45:
            parts.append(_text(rng) + rng.choice(("", ",", ".", ". ", "\n")))
        elif roll < 0.52:
            parts.append(rng.choice(("<br>", "<br> tail", "<!-- note -->", "  \n", "<hr>")))
        elif roll < 0.72:
            tag = rng.choice(INLINE)
            if tag in ("br", "img", "input", "embed"):
                parts.append(f"<{tag}{_attributes(rng)}>")
            else:
                parts.append(f"<{tag}{_attributes(rng)}>{_text(rng)}</{tag}>")
        else:
            tag = rng.choice(BLOCKS)
            parts.append(f"<{tag}{_attributes(rng)}>")
            open_tags.append(tag)
    parts.extend(f"</{tag}>" for tag in reversed(open_tags))
    parts.append("</body></html>")
    return "".join(parts)


def test_generated_pages_give_the_same_summary():
    rng = random.Random(5)
    summaries = set()
    for _ in range(400):
        summaries.add(_assert_same(html.fromstring(_soup(rng))))
    assert len(summaries) > 300  # the soups differ, and so do their summaries


def test_nested_divs_text_tails_and_breaks():
    page = (
        "<html><body><div id='outer'>loose text<div>inner <a href='/a'>link</a> words, more words here"
        "<br>after break<br><br> </div>tail of inner<div><p>A paragraph long enough to count, with"
        " commas, and more commas, and text.</p></div><div><a href='/x'>only a link</a></div>"
        "<div><span>span only text that is long enough to be a paragraph</span></div>"
        "<div class='comment'>dropped<div id='main'>kept?</div></div>"
        "<div class='' id=''>empty attributes</div><div class='x'>one char</div></div>"
        "<table><tr><td><p>Cell paragraph, long enough, with commas, to be scored here.</p></td></tr>"
        "</table><h2 class='widget'><a href='/h'>Linked heading</a></h2></body></html>"
    )
    assert "A paragraph long enough to count" in _assert_same(html.fromstring(page))


def test_a_page_readability_fails_on_fails_the_same_way():
    # An image-only div is weighed by its neighbours' text; a comment next to it has none that
    # text_content() can read, and readability raises.
    page = (
        "<html><body><div><p>This paragraph is long enough to be scored, with commas.</p>"
        "<div><img src='x.png'></div><!-- note --></div></body></html>"
    )
    assert _assert_same(html.fromstring(page)).startswith("ValueError")


def test_install_is_idempotent_and_keeps_the_originals():
    from transforms.extract import speed_up_trafilatura

    speed_up_trafilatura()
    fastreadability.install()
    fastreadability.install()
    for name, original in fastreadability.ORIGINALS.items():
        assert getattr(rl.Document, name) is fastreadability._FAST[name]
        assert original.__module__ == "trafilatura.readability_lxml"
    # StockDocument still runs the shipped code
    assert StockDocument.score_paragraphs is fastreadability.ORIGINALS["score_paragraphs"]


def test_real_pages_give_the_same_summary(shared_dir):
    from trafilatura.utils import load_html

    from benchmarks.corpus import eval_pages
    from transforms.extract import decode_html

    compared = 0
    for _, page in eval_pages()[::10]:
        tree = load_html(decode_html(page))
        if tree is not None:
            _assert_same(tree)
            compared += 1
    assert compared > 90
