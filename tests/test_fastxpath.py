"""transforms.fastxpath: every compiled selector returns what lxml's XPath returns."""

from __future__ import annotations

import random

import pytest
from lxml import etree, html

from transforms.fastxpath import compile_selector

NS = {"re": "http://exslt.org/regular-expressions"}

SELECTORS = (
    ".//*",
    "//*",
    ".//div|.//p",
    "(.//div|.//span)[@id]",
    ".//*[@class='x' or @id='x']",
    ".//*[@id|@class='x']",  # true when either has the value
    ".//*[starts-with(@id|@class, 'reply-')]",  # the first written of the two
    ".//*[contains(@class|@id, 'foot')]",
    ".//*[contains(translate(@class, 'AB', 'ab'), 'ab')]",
    ".//*[contains(translate(@class, 'ab', 'ba'), 'ba')]",  # a swap: no replace chain
    ".//*[contains(translate(@class, 'aX', 'A'), 'A')]",  # X deleted
    ".//*[re:test(@class, 'co+kie')]",
    ".//*[re:test(@id|@class, '^sh')]",
    ".//*[((@class) and re:test(@class, 'cookie|consent', 'i'))]",
    ".//*[re:test(@class, 'k', 'i')]",  # KELVIN SIGN folds to k, only without ASCII
    ".//*[re:test(string(@id), '^$')]",
    "(.//div|.//section)[not(.//h1)]",
    "(.//div|.//ul)[@id][not(self::ul) or contains(@class, 'x')]",
    "//*[self::h1 or self::h2]",
    ".//aside|.//div[contains(@class, 'x')]|.//*[@data-x]",
    ".//*[@class or '']",
    ".//*[self::div or self::p][@id][1]",  # the first of each parent's children that pass
    ".//div[contains(@class, 'x')][1]",
    "//*[@class][1]",
    ".//*[@class]['a']",
)
CLASSES = ("x", "X", "reply-1", "foot", "footer", "AB", "ab", "ba", "aX", "cookie", "COOKIE", "Consent", "cooookie",
           "sh", "share", "\u212a", "K", "", "a b")  # fmt: skip


def _random_page(rng: random.Random, elements: int, close_chance: float, open_element) -> str:
    """A page of ``elements`` random steps: close the innermost element (``close_chance``) or
    open one (``open_element(rng)`` -> (tag, markup)); what is left open is closed at the end."""
    parts, open_tags = ["<html><body>"], []
    for _ in range(elements):
        if open_tags and rng.random() < close_chance:
            parts.append(f"</{open_tags.pop()}>")
            continue
        tag, markup = open_element(rng)
        parts.append(markup)
        open_tags.append(tag)
    parts.extend(f"</{tag}>" for tag in reversed(open_tags))
    parts.append("</body></html>")
    return "".join(parts)


def _soup(rng: random.Random, elements: int = 120) -> str:
    tags = ("div", "p", "span", "section", "ul", "h1", "h2", "aside", "a")

    def open_element(rng: random.Random) -> tuple[str, str]:
        tag = rng.choice(tags)
        attrs = [
            f'{name}="{rng.choice(CLASSES)}"'
            for name in rng.sample(("class", "id", "data-x", "style"), rng.randint(0, 3))
        ]
        comment = "<!-- a comment --><?pi x?>" if rng.random() < 0.1 else ""
        return tag, f"<{tag} {' '.join(attrs)}>text{comment}"

    return _random_page(rng, elements, 0.35, open_element)


@pytest.mark.parametrize("path", SELECTORS)
def test_selector_returns_what_lxml_returns(path):
    selector = compile_selector(path)
    assert selector is not None, path
    expected_xpath = etree.XPath(path, namespaces=NS)
    rng = random.Random(7)
    selected = 0
    for _ in range(40):
        tree = html.fromstring(_soup(rng))
        for node in (tree, tree.find("body"), next(tree.iter("div", "p"), tree), tree.getroottree()):
            expected = expected_xpath(node)
            assert selector(node) == expected, path
            selected += len(expected)
    assert selected > 0, path  # the pages exercise the selector


def test_regex_verdicts_kept_per_value_stay_exact_when_the_table_fills(monkeypatch):
    from transforms import fastxpath

    monkeypatch.setattr(fastxpath, "VERDICTS_KEPT", 3)  # emptied every few values
    path = ".//*[re:test(@class, 'share|social') or re:test(@id, '^nav', 'i')]"
    selector = compile_selector(path)
    verdicts = [value for value in selector._select.__globals__.values() if isinstance(value, fastxpath._Verdicts)]
    assert len(verdicts) == 2  # both tests go through a table
    expected_xpath = etree.XPath(path, namespaces=NS)
    rng = random.Random(11)
    selected = 0
    for _ in range(20):
        tree = html.fromstring(_soup(rng))
        expected = expected_xpath(tree)
        assert selector(tree) == expected
        assert all(len(table) <= 3 for table in verdicts)
        selected += len(expected)
    assert selected > 0


CHILD_SELECTORS = (
    ".//div[rel='me']",
    "(.//a|.//div)[@rel='author' or rel='me']|.//author",  # trafilatura's byline shape
    ".//*[rel]",
    ".//*[not(rel) and @id]",
    "//*[rel = 'm e']",
)


def _child_soup(rng: random.Random, elements: int = 80) -> str:
    """Pages where <rel> children hold "me" in one text, split by markup or a comment, or not."""
    rels = ("<rel>me</rel>", "<rel>m<b>e</b></rel>", "<rel>m<!-- x -->e</rel>", "<rel>m e</rel>", "<rel> me</rel>",
            "<rel></rel>", "<rel>me<i></i></rel>", "<rel>mee</rel>", "<author>me</author>")  # fmt: skip

    def open_element(rng: random.Random) -> tuple[str, str]:
        tag = rng.choice(("div", "a", "p"))
        attrs = rng.choice(("", 'rel="author"', 'id="x"', 'rel="me"'))
        return tag, f"<{tag} {attrs}>text" + "".join(rng.sample(rels, rng.randint(0, 2)))

    return _random_page(rng, elements, 0.3, open_element)


@pytest.mark.parametrize("path", CHILD_SELECTORS)
def test_children_compared_with_a_literal_as_lxml_does(path):
    """``NAME = 'literal'``: a child of that name whose string value (its descendant texts,
    not comments) is the literal; ``NAME`` alone: such a child exists."""
    selector = compile_selector(path)
    assert selector is not None, path
    expected_xpath = etree.XPath(path)
    rng = random.Random(11)
    selected = 0
    for _ in range(40):
        tree = html.fromstring(_child_soup(rng))
        for node in (tree, tree.find("body"), tree.getroottree()):
            expected = expected_xpath(node)
            assert selector(node) == expected, path
            selected += len(expected)
    assert selected > 0, path


def test_unsupported_paths_are_left_to_lxml():
    for path in (
        "(.//div)[1]",
        "(.//div|.//p)[@id][1]",  # the first of the whole set
        ".//*[@id][1][@class]",
        ".//div[1]|.//p",
        ".//div[2]",
        ".//*[position() < 3]",
        ".//*[count(.//p) > 1]",
        ".//div/p",  # a further step
        ".//div[rel[1]]",  # a position inside a predicate
        ".//div[x:rel='me']",  # a prefixed child
        ".//div[string(rel)]",  # the string of a set of children
        ".//*[local-name()='a']",
        "//div|.//p",  # absolute and relative branches
        ".//*[contains(@class, @id)]",  # a computed needle
    ):
        assert compile_selector(path) is None, path


def test_case_insensitive_search_is_exact_beyond_ascii():
    import re

    from transforms.fastxpath import _ignore_case_search

    for pattern in ("cookie|consent", "k", "^s", "\\S+x"):
        fast, slow = _ignore_case_search(pattern), re.compile(pattern, re.IGNORECASE).search
        for text in ("COOKIE", "Consent", "\u212a", "K", "\u017f", "S", "ab x", "AB X", "", "  x"):
            assert (fast(text) is None) == (slow(text) is None), (pattern, text)
