"""transforms.fasthtmlprocessing: trafilatura's page measure (html2txt), tree cleaning and
link-density deletions give the same text and leave the same trees as the shipped functions."""

from __future__ import annotations

import contextlib
import copy
import random

import pytest
from lxml import etree, html
from trafilatura.htmlprocessing import convert_tags
from trafilatura.settings import Extractor

from transforms import fasthtmlprocessing as fhp


@pytest.fixture(autouse=True)
def installed():
    fhp.install()


@contextlib.contextmanager
def shipped():
    """trafilatura's functions as shipped (they call each other through their modules)."""
    fhp.uninstall()
    try:
        yield
    finally:
        fhp.install()


def _dump(tree) -> bytes:
    return etree.tostring(tree, encoding="utf-8", with_tail=False)


def _outcome(function, *args):
    """What the function returns, or the exception it raised: lxml refuses some texts (control
    characters) that trafilatura writes; a replacement must fail the same way."""
    try:
        result = function(*args)
    except ValueError as err:
        return f"{type(err).__name__}: {err}"
    return _dump(result) if isinstance(result, etree._Element) else result


# format characters (removed by trafilatura in block text), unusual whitespace, entities
WORDS = ("the", "vote", "Ärger", "\u00a0", "a\u200bb", "soft\xadhyphen", "\x85", "&amp;", "&lt;b&gt;", "\u2028", "\t")
# control characters lxml refuses when trafilatura writes them back (a page in ten has some)
REFUSED = ("x\x01y", "\x0b", "\x1c", "\x02")
BLOCKS = (
    "div",
    "p",
    "li",
    "ul",
    "td",
    "tr",
    "table",
    "section",
    "article",
    "h2",
    "blockquote",
    "header",
    "nav",
    "form",
)
INLINE = ("span", "a", "b", "em", "i", "img", "br", "hr", "input", "label", "time", "math", "iframe", "figure")
# what BASIC_CLEAN_XPATH selects (and elements that only look like it), nested in each other
CLEANED = ("aside", "footer", "script", "style", "svg", "template", "fencedframe", "noscript", "embed")
ATTRIBUTES = (
    "",
    ' class="footer"',
    ' id="page-footer"',
    ' id="main" class="footer"',
    ' class="x" id="footer"',
    ' class="cookie-banner"',
    ' id="CookieConsent"',
    ' class="onetrust-x"',
    ' class="notice--cookie"',
    ' class="content"',
    ' role="presentation"',
)


def _text(rng: random.Random, refused: bool = False) -> str:
    words = WORDS + REFUSED if refused else WORDS
    return " ".join(rng.choice(words) for _ in range(rng.randrange(0, 8)))


def _soup(rng: random.Random, elements: int = 140, body: bool = True) -> str:
    refused = rng.random() < 0.1
    parts, open_tags = ["<html><head><title>t</title><script>h</script></head><body>" if body else "<div>"], []
    for _ in range(elements):
        roll = rng.random()
        if open_tags and roll < 0.27:
            parts.append(f"</{open_tags.pop()}>")
        elif roll < 0.42:
            parts.append(_text(rng, refused) + rng.choice(("", " ", "\n", "\t")))
        elif roll < 0.5:
            parts.append(rng.choice(("<!-- note -->", "<?pi x?>", "<br>", "<br>tail", "<hr>", "&nbsp;")))
        elif roll < 0.64:
            tag = rng.choice(INLINE)
            parts.append(f"<{tag}{rng.choice(ATTRIBUTES)}>{_text(rng, refused)}</{tag}>")
        elif roll < 0.76:
            tag = rng.choice(CLEANED + ("div",))
            parts.append(f"<{tag}{rng.choice(ATTRIBUTES)}>{_text(rng, refused)}")
            open_tags.append(tag)
        else:
            tag = rng.choice(BLOCKS)
            parts.append(f"<{tag}{rng.choice(ATTRIBUTES)}>")
            open_tags.append(tag)
    parts.extend(f"</{tag}>" for tag in reversed(open_tags))
    parts.append("</body></html>" if body else "</div>")
    return "".join(parts)


def _assert_same_html2txt(tree) -> str:
    """The text (or the failure) of html2txt as shipped, with basic_cleaning."""
    before = _dump(tree)
    outcomes = []
    for clean in (True, False):
        with shipped():
            expected = _outcome(fhp.baseline.html2txt, tree, clean)
        assert _outcome(fhp.html2txt, tree, clean) == expected
        outcomes.append(expected)
    assert _dump(tree) == before  # the page is read, not changed
    return outcomes[0]


def test_html2txt_on_generated_pages():
    rng = random.Random(11)
    texts = set()
    for round_ in range(500):
        page = _soup(rng, body=round_ % 5 != 0)
        texts.add(_assert_same_html2txt(html.fromstring(page)))
    failures = {text for text in texts if text.startswith("ValueError")}
    assert len(texts) - len(failures) > 300 and failures  # mostly texts, some refused tails


def test_html2txt_tails_of_deleted_elements_and_format_characters():
    page = (
        "<html><body><div>a\xadb<script>x</script>c\u200bd<p>p\xadq</p><aside>gone<footer>f</footer>"
        "kept?</aside>tail\u200bone<style>s</style><!-- c -->after\u200ecomment<?pi p?>pi\xadtail"
        "<span>in</span><svg>v</svg>span\u200btail</div><div class='site-footer'>dropped</div>"
        "<section><template>t</template>first\u2028</section><b>bold<footer>x</footer>bt\xad</b></body></html>"
    )
    text = _assert_same_html2txt(html.fromstring(page))
    # stripped where the tail joins a block's text, kept where it joins an inline element's
    assert text == "abcd pq tailoneafter\u200ecommentpi\xadtailinspan\u200btail first boldbt\xad"


def test_html2txt_fails_like_the_original_on_control_characters():
    for page in (
        "<html><body><div>a<script>x</script>b\x01c</div></body></html>",  # a refused tail
        "<html><body><div>a\x01b<script>x</script>c</div></body></html>",  # joined to a refused text
        "<html><body><aside><i>a\x02</i><script>x</script>c</aside></body></html>",  # inside a deleted one
        "<html><body><div>a\x0bb</div></body></html>",  # whitespace lxml refuses, in a block
        "<html><body><span>a\x0bb</span></body></html>",  # read, never written: no failure
    ):
        _assert_same_html2txt(html.fromstring(page))


def test_html2txt_falls_back_on_an_entity_reference():
    tree = html.fromstring("<html><body><div>a<p>b</p></div></body></html>")
    tree.find(".//p").append(etree.Entity("amp"))
    _assert_same_html2txt(tree)


def test_html2txt_of_a_string_and_of_nothing():
    page = "<html><body><div>one<p>two</p><script>x</script></div></body></html>"
    assert fhp.html2txt(page) == fhp.ORIGINALS["html2txt"](page) == "one two"
    # an element without <body> is itself the content
    assert _assert_same_html2txt(html.fromstring("<html><head><title>x</title></head></html>")) == "x"


OPTIONS = (
    Extractor(),
    Extractor(recall=True),
    Extractor(precision=True),
    Extractor(tables=False),
    Extractor(images=True, recall=True),
)


def _assert_same_cleaning(tree, options) -> bytes | str:
    with shipped():
        given = copy.deepcopy(tree)
        expected = (_outcome(fhp.hp.tree_cleaning, given, options), _dump(given))
    given = copy.deepcopy(tree)
    assert (_outcome(fhp.tree_cleaning, given, options), _dump(given)) == expected
    return expected[0]


def test_tree_cleaning_on_generated_pages():
    rng = random.Random(13)
    for round_ in range(300):
        tree = html.fromstring(_soup(rng, body=round_ % 7 != 0))
        for options in OPTIONS:
            _assert_same_cleaning(tree, options)


# trafilatura's converted tags: what the link-density tests branch on
CONVERTED = ("div", "p", "list", "item", "head", "quote", "td", "span", "hi")


def _converted_soup(rng: random.Random, elements: int = 120) -> etree._Element:
    root = html.Element("body")
    stack = [root]
    for _ in range(elements):
        roll = rng.random()
        if len(stack) > 1 and roll < 0.25:
            stack.pop()
        elif roll < 0.45:
            link = etree.SubElement(stack[-1], "ref")
            link.text = rng.choice(("", "a", "short", "a link with a rather longer text in it " * rng.randrange(1, 5)))
            link.tail = rng.choice(("", " ", " words after the link", "\n"))
        elif roll < 0.5:
            etree.SubElement(stack[-1], rng.choice(("graphic", "lb")))
        elif roll < 0.6:
            target = stack[-1]
            words = " ".join(rng.choice(("the", "long", "story", "of", "\n")) for _ in range(rng.randrange(0, 60)))
            if len(target):
                target[-1].tail = (target[-1].tail or "") + words
            else:
                target.text = (target.text or "") + words
        else:
            stack.append(etree.SubElement(stack[-1], rng.choice(CONVERTED)))
    return root


def _assert_same_link_density(tree) -> int:
    """Compare every test and deletion pass; returns how many passes deleted something."""
    for favor_precision in (False, True):
        with shipped():
            expected = [fhp.hp.link_density_test(e, favor_precision) for e in tree.iter()]
        assert [fhp.link_density_test(e, favor_precision) for e in tree.iter()] == expected
    deleting = 0
    for tagname in ("div", "list", "p", "head", "quote"):
        for backtracking in (False, True):
            for favor_precision in (False, True):
                with shipped():
                    given = copy.deepcopy(tree)
                    expected = _outcome(fhp.hp.delete_by_link_density, given, tagname, backtracking, favor_precision)
                given = copy.deepcopy(tree)
                assert _outcome(fhp.delete_by_link_density, given, tagname, backtracking, favor_precision) == expected
                deleting += expected != _dump(tree)
    return deleting


def test_link_density_on_generated_trees():
    rng = random.Random(17)
    deleting = sum(_assert_same_link_density(_converted_soup(rng)) for _ in range(50))
    assert deleting > 100  # of 1,000 passes: the soups hold link farms, and they go


def test_install_is_idempotent_and_keeps_the_originals():
    from trafilatura import core, external, main_extractor

    from transforms.extract import speed_up_trafilatura

    speed_up_trafilatura()
    fhp.install()
    fhp.install()
    assert fhp.baseline.html2txt is fhp.html2txt
    # core's page measure answers from a measure taken before readability, else calls this one
    assert core.html2txt.__qualname__ == "_shared_raw_tree.<locals>.html2txt"
    assert core.tree_cleaning is external.tree_cleaning is fhp.hp.tree_cleaning is fhp.tree_cleaning
    assert main_extractor.delete_by_link_density is fhp.delete_by_link_density
    for name, original in fhp.ORIGINALS.items():
        assert original.__module__ in ("trafilatura.baseline", "trafilatura.htmlprocessing")
        assert original is not fhp._FAST[name]


def test_real_pages(shared_dir):
    from trafilatura.utils import load_html

    from benchmarks.corpus import eval_pages
    from transforms.extract import decode_html

    compared = 0
    for _, page in eval_pages()[::30]:  # 33 pages (all 990 and l3s_gn1 were compared once)
        tree = load_html(decode_html(page))
        if tree is None:
            continue
        _assert_same_html2txt(tree)
        options = OPTIONS[compared % len(OPTIONS)]
        _assert_same_cleaning(tree, options)
        with shipped():
            converted = convert_tags(fhp.hp.tree_cleaning(copy.deepcopy(tree), options), options)
        _assert_same_link_density(converted)
        compared += 1
    assert compared > 30
