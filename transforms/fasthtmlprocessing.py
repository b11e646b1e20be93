"""trafilatura's page measure, tree cleaning and link-density deletions with less Python work:
the same texts and the same trees.

``html2txt`` (``baseline``; the recall escalation of ``core.trafilatura_sequence`` compares the
extracted text with ``len(html2txt(tree))`` on about half the pages). The shipped one copies the
whole tree, deletes what ``BASIC_CLEAN_XPATH`` selects (``basic_cleaning``: scripts, styles,
footers, cookie banners ...), prefixes the text and tail of every block element with a space and
strips their control characters (``_spaced_text``), then joins the words of ``text_content()``.
This one selects the same elements and reads the original tree in document order, skipping the
selected subtrees, without copying or changing it. Why the string is the same:

- ``delete_element`` appends a deleted element's tail to the tail of the nearest earlier
  sibling still in place (a comment or processing instruction counts), else to the parent's
  text. Everything in between is deleted, so the tail keeps its place in document order; it only
  takes on the kind of the slot it joins: stripped of control characters when that slot belongs
  to a block element. Selected elements inside a deleted one change only the detached subtree.
- ``remove_control_characters`` works character by character, so stripping the parts of a slot
  equals stripping the joined slot; the space before a block slot comes first either way. A
  text whose only non-printable characters are whitespace is kept as it is without the
  per-character map.
- ``text_content()`` is XPath's ``string()``: the text and tails below the element (tails of
  comments and processing instructions too), not the element's own tail.
- lxml refuses control characters in the texts the shipped function writes (joined tails,
  block texts): ValueError. A page with any such character where it could be written, or with
  an entity reference, goes to the original, so it fails (or not) the same way.

``tree_cleaning`` (``htmlprocessing``) deleted the ~50 tags of ``MANUALLY_CLEANED`` with one
walk of the tree per tag; here one walk finds the tags present and only their passes run, in the
list's order (deleting never adds a tag, so a skipped pass would have found nothing). The passes
themselves are the shipped loops: ``for e in tree.iter(tag): delete_element(e)`` stops once it
deletes an element holding another of its tag (lxml's iterator then walks the detached subtree),
which leaves later ones in place; that is kept. ``prune_html`` tests the child count before
reading the text.

``link_density_test`` and ``delete_by_link_density`` find links and images with
``iterdescendants`` instead of ElementPath's ``findall(".//ref")`` (the same elements, in the
same order), measure trimmed texts without ``trim``'s cache, and the backtracking length of
``delete_by_link_density`` reuses the text the test has just read (the tree does not change
before the deletions).

``install()`` replaces each function in every trafilatura module holding it (they import names
with ``from .x import y``); ``ORIGINALS`` keeps the shipped ones for the tests, and
``uninstall()`` puts them back (the shipped functions call one another through their modules).
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

from lxml import etree
from lxml.html import HtmlElement

# the module, not the function trafilatura/__init__.py exports under the same name
baseline = importlib.import_module("trafilatura.baseline")
hp = importlib.import_module("trafilatura.htmlprocessing")

# Functions replaced by install(), as trafilatura ships them (tests run both).
ORIGINALS: dict[str, Any] = {
    "html2txt": baseline.html2txt,
    "tree_cleaning": hp.tree_cleaning,
    "prune_html": hp.prune_html,
    "link_density_test": hp.link_density_test,
    "delete_by_link_density": hp.delete_by_link_density,
}


class _Unsupported(Exception):
    pass


# What lxml refuses in a text it is given (ValueError): the shipped html2txt meets it when it
# joins a deleted element's tail to another text, or writes a block's text back.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _control_stripper(remove_control_characters: Any) -> Any:
    """``remove_control_characters`` for a block's text, which maps every character of a
    string that is not printable; line breaks and tabs are not, though it keeps them, so this
    one first checks whether a character outside the whitespace is not printable either (the
    same result). A text lxml would refuse goes to the original (``_Unsupported``)."""

    def strip(text: str) -> str:
        if text.isprintable():
            return text
        if _XML_INVALID.search(text):
            raise _Unsupported
        if "".join(text.split()).isprintable():
            return text
        return remove_control_characters(text)

    return strip


def _refused(text: str) -> bool:
    """Would lxml refuse this text (or a text it is part of)?"""
    return not text.isprintable() and _XML_INVALID.search(text) is not None


def _spaced_parts(element: HtmlElement, block: frozenset, dropped: set, out: list[str], strip: Any) -> None:
    """Append the text below ``element`` as ``_spaced_text`` would read it after
    ``basic_cleaning`` deleted the elements in ``dropped``. Raises ``_Unsupported`` on a text
    lxml would refuse (the original may fail on it) and on an entity reference."""
    # the kind of the slot the tail of a deleted child joins: the parent's text first
    spaced = element.tag in block
    _append(out, element.text, spaced, strip, space=spaced)
    for child in element:
        if child in dropped:
            dropped.discard(child)  # what stays in the set lies inside a deleted element
            _append(out, child.tail, spaced, strip, space=False)
            continue
        tag = child.tag
        if type(tag) is str:
            _spaced_parts(child, block, dropped, out, strip)
            spaced = tag in block
        elif tag is etree.Entity:
            raise _Unsupported
        else:  # a comment or processing instruction: only its tail is text
            spaced = False
        _append(out, child.tail, spaced, strip, space=spaced)


def _append(out: list[str], text: str | None, spaced: bool, strip: Any, space: bool) -> None:
    """One text or tail as ``_spaced_text`` reads it: in a block's slot after the space it
    writes there (``space``) and without control characters, elsewhere as is (a text lxml
    would refuse raises ``_Unsupported``)."""
    if spaced:
        if space:
            out.append(" ")
        if text:
            out.append(strip(text))
    elif text:
        if _refused(text):
            raise _Unsupported
        out.append(text)


def html2txt(content: Any, clean: bool = True) -> str:
    """``trafilatura.baseline.html2txt``; an element given is read, not copied and changed."""
    if not isinstance(content, HtmlElement):
        return ORIGINALS["html2txt"](content, clean)
    tree = baseline.load_html(content)
    if tree is None:
        return ""
    body = tree.find(".//body")
    if body is None:
        body = tree
    # the list keeps the proxies alive, so iterating the tree yields the same objects
    dropped_list = baseline.BASIC_CLEAN_XPATH(body) if clean else []
    dropped = set(dropped_list)
    out: list[str] = []
    try:
        _spaced_parts(
            body, frozenset(baseline._BLOCK_ELEMS), dropped, out, _control_stripper(baseline.remove_control_characters)
        )
        # the shipped basic_cleaning also joins the tails of selected elements inside deleted
        # ones to their neighbours there: lxml may refuse those texts too
        for element in dropped:
            if element.tail and (
                _refused(element.tail)
                or _refused(element.getparent().text or "")
                or any(_refused(sibling.tail or "") for sibling in element.itersiblings(preceding=True))
            ):
                raise _Unsupported
    except (_Unsupported, RecursionError):
        return ORIGINALS["html2txt"](content, clean)
    return " ".join("".join(out).split())


def tree_cleaning(tree: HtmlElement, options: Any) -> HtmlElement:
    """``trafilatura.htmlprocessing.tree_cleaning``, walking the tree once per cleaned tag
    present instead of once per tag of the list (~50)."""
    hp.recover_math(tree)
    cleaning_list, stripping_list = hp.MANUALLY_CLEANED.copy(), hp.MANUALLY_STRIPPED.copy()
    clean_forms = "form" in cleaning_list
    if clean_forms:
        cleaning_list.remove("form")
    if not options.tables:
        cleaning_list.extend(["table", "td", "th", "tr"])
    else:
        for elem in tree.iter("figure", "table"):
            if (
                elem.find(".//table") is not None
                if elem.tag == "figure"
                else elem.get("role") in ("presentation", "none")
            ):
                elem.tag = "div"
    if options.images:
        cleaning_list = [e for e in cleaning_list if e not in hp.PRESERVE_IMG_CLEANING]
        stripping_list.remove("img")

    hp.strip_tags(tree, stripping_list)

    tcopy = None
    if (
        options.focus == "recall"
        and tree.find(".//p") is not None
        and (
            "p" in cleaning_list or not any(next(p.iterancestors(cleaning_list), tree) is tree for p in tree.iter("p"))
        )
    ):
        tcopy = hp.deepcopy(tree)
    # Deleting only removes elements, so a tag absent now stays absent: its pass (which finds
    # nothing) is skipped. The passes that remain run in the list's order, as shipped.
    present = {element.tag for element in tree.iter(*cleaning_list)} if cleaning_list else set()
    delete_element = hp.delete_element
    for expression in cleaning_list:
        if expression in present:
            for element in tree.iter(expression):
                delete_element(element)
    if tcopy is not None and tree.find(".//p") is None:
        tree = tcopy

    if clean_forms:
        hp._handle_forms(tree)

    return hp.prune_html(tree, options.focus)


def prune_html(tree: HtmlElement, focus: str = "balanced") -> HtmlElement:
    """``trafilatura.htmlprocessing.prune_html``: the child count is tested before the text,
    which is then read only from childless elements."""
    tails = focus != "precision"
    delete_element = hp.delete_element
    for element in [e for e in tree.iterdescendants(hp.CUT_EMPTY_ELEMS) if len(e) == 0 and e.text is None]:
        delete_element(element, keep_tail=tails)
    return tree


def _words(text: str) -> str:
    """``trafilatura.utils.trim`` of a string, without its cache (texts of whole sections
    rarely repeat; the cache would hash and keep them)."""
    return " ".join(text.split())


def _link_density(element: HtmlElement, favor_precision: bool) -> tuple[bool, bool, str | None]:
    """``link_density_test``, plus the trimmed text of the element when it was read."""
    links = list(element.iterdescendants("ref"))  # findall(".//ref") without ElementPath
    if not links:
        return False, False, None
    if next(element.iterdescendants("graphic"), None) is not None:
        return False, False, None
    text = _words(element.text_content())
    if len(links) == 1:
        len_threshold = 10 if favor_precision else 100
        link_text = _words(links[0].text_content())
        if len(link_text) > len_threshold and len(link_text) > len(text) * 0.9:
            return True, False, text
    if element.tag == "p":
        limitlen = 60 if element.getnext() is None else 30
    elif element.getnext() is None:
        limitlen = 300
    else:
        limitlen = 100
    elemlen = len(text)
    if elemlen < limitlen:
        linklen, elemnum, shortelems, _ = hp.collect_link_info(links)
        if elemnum == 0:
            return True, False, text
        hp.LOGGER.debug(
            "list link text/total: %s/%s – short elems/total: %s/%s",
            linklen,
            elemlen,
            shortelems,
            elemnum,
        )
        return linklen > elemlen * 0.8 or (elemnum > 1 and shortelems / elemnum > 0.8), True, text
    if len(links) > 4:
        linklen, elemnum, _, _ = hp.collect_link_info(links)
        if linklen > len(text) * hp.LINK_FARM_RATIO and linklen < 100 * elemnum and not hp.is_paragraph_listing(links):
            return True, False, text
    return False, False, text


def link_density_test(element: HtmlElement, favor_precision: bool = False) -> tuple[bool, bool]:
    """``trafilatura.htmlprocessing.link_density_test``."""
    result, short_with_links, _ = _link_density(element, favor_precision)
    return result, short_with_links


def delete_by_link_density(
    subtree: HtmlElement,
    tagname: str,
    backtracking: bool = False,
    favor_precision: bool = False,
) -> HtmlElement:
    """``trafilatura.htmlprocessing.delete_by_link_density``; the element's text, read by the
    test, is not read again for the backtracking length."""
    deletions = []
    len_threshold = 200 if favor_precision else 100
    depth_threshold = 1 if favor_precision else 3

    for elem in subtree.iter(tagname):
        result, short_with_links, text = _link_density(elem, favor_precision)
        # short_with_links is only ever true with the text read (nothing has changed since)
        if result or (backtracking and short_with_links and len(elem) >= depth_threshold and len(text) < len_threshold):
            parent = elem.getparent()
            if tagname == "p" and parent is not None and parent.tag in ("item", "td", "th"):
                continue
            deletions.append(elem)

    delete_element = hp.delete_element
    for elem in dict.fromkeys(deletions):
        delete_element(elem)

    return subtree


_FAST = {
    "html2txt": html2txt,
    "tree_cleaning": tree_cleaning,
    "prune_html": prune_html,
    "link_density_test": link_density_test,
    "delete_by_link_density": delete_by_link_density,
}


def holders(original: Any):
    """(module, attribute) of every trafilatura module holding ``original``."""
    for name, module in list(sys.modules.items()):
        if name == "trafilatura" or name.startswith("trafilatura."):
            for attr, value in list(vars(module).items()):
                if value is original:
                    yield module, attr


def install() -> None:
    """Replace the functions in every trafilatura module that holds them (idempotent)."""
    for name, function in _FAST.items():
        for module, attr in holders(ORIGINALS[name]):
            setattr(module, attr, function)


def uninstall() -> None:
    """Put trafilatura's own functions back (benchmarks compare the two in one process)."""
    for name, function in _FAST.items():
        for module, attr in holders(function):
            setattr(module, attr, ORIGINALS[name])
