"""trafilatura's readability port (``trafilatura.readability_lxml.Document``): the same summary,
and the same page left behind, in a third less time.

trafilatura runs readability on every page it extracts outside fast mode
(``external.try_readability``); ``Document.summary`` was ~17 % of extract_html. ``install()``
replaces five of its methods:

- ``remove_unlikely_candidates`` joins class and id without a filter and a tuple, reads the tag
  only of an element it drops, keeps the verdict per attribute string across pages, and skips
  the descendants of a dropped element (the original weighs them and drops some from the
  subtree already cut off; that changes nothing the page still holds).
- ``transform_misused_divs_into_paragraphs`` looks only at the divs it can change: in the first
  loop the leaf divs (a div with a div below it keeps a block descendant, and a verdict depends
  on the tags as parsed, since renames go div -> p and follow it in document order), in the
  second the divs with loose text or a ``<br>`` child (XPath's whitespace is part of Python's).
- ``score_paragraphs`` measures each link's text once (nothing changes the tree meanwhile, and a
  link lies in several candidates) and skips a candidate's own text when it has no link text
  (the density is then 0 whatever that length).
- ``class_weight`` is remembered per (class, id); on ASCII values the case-insensitive
  patterns search the lower-cased value case-sensitively (same matches, ~7x faster).
- ``sanitize`` reads each weighed element's text once instead of three times, and each link's
  text once until something inside that link is dropped.

Arithmetic (the order in which scores are summed, int and float), the order of candidates, the
exceptions and the order of drop_tree calls on the page are the original's. Measured over all
990 pages of trafilatura_eval twice, alternating 50-page chunks in one process: summary 7.05 ->
4.67 ms per page (-34 %), extract_html 39.7 -> 36.9 ms (-7 %); identical summaries, pages and
extract_html results on those 990 and the 621 of l3s_gn1. tests/test_fastreadability.py
compares with the shipped methods (``ORIGINALS``) on generated and real pages.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from lxml import etree
from trafilatura import readability_lxml as rl

# Methods of rl.Document replaced by install(), as trafilatura ships them (tests run both).
REPLACED = (
    "remove_unlikely_candidates",
    "transform_misused_divs_into_paragraphs",
    "score_paragraphs",
    "class_weight",
    "sanitize",
)
ORIGINALS: dict[str, Any] = {name: getattr(rl.Document, name) for name in REPLACED}

# Verdicts per attribute string, kept across pages (class names repeat from page to page). A
# full cache is replaced by an empty one. Keyed by the patterns they were computed with.
_CACHE_LIMIT = 65_536
_unlikely: dict[str, bool] = {}
_unlikely_patterns: tuple[Any, ...] = ()
_weights: dict[tuple[str | None, str | None], int] = {}
_weight_patterns: tuple[Any, ...] = (None, None, None, None)


def _unlikely_verdicts() -> dict[str, bool]:
    global _unlikely, _unlikely_patterns
    patterns = (rl.REGEXES["unlikelyCandidatesRe"], rl.REGEXES["okMaybeItsACandidateRe"])
    if patterns != _unlikely_patterns or len(_unlikely) >= _CACHE_LIMIT:
        _unlikely, _unlikely_patterns = {}, patterns
    return _unlikely


def remove_unlikely_candidates(self: rl.Document) -> None:
    """``Document.remove_unlikely_candidates``: the same elements dropped in the same order."""
    verdicts = _unlikely_verdicts()
    unlikely, maybe = _unlikely_patterns
    frame_tags = rl.FRAME_TAGS
    elements = self.doc.findall(".//*")
    count = len(elements)
    at = 0
    while at < count:
        elem = elements[at]
        at += 1
        cls = elem.get("class")
        ident = elem.get("id")
        # " ".join(filter(None, (cls, ident))), without the filter and the tuple
        if cls:
            attrs = cls + " " + ident if ident else cls
        elif ident:
            attrs = ident
        else:
            continue
        verdict = verdicts.get(attrs)
        if verdict is None:
            # Also for the strings of one character the original skips: none of the patterns
            # matches them, so the verdict is False.
            low = attrs.lower()
            verdict = verdicts[attrs] = bool(unlikely.search(low)) and not maybe.search(low)
        if verdict and elem.tag not in frame_tags:
            elem.drop_tree()
            # Its descendants follow it in the list: the original weighs them too and drops
            # some from the subtree now cut off, which changes nothing the page still holds.
            at += sum(1 for _ in elem.iterdescendants("*"))


# Divs without a div below them: any other div has a block descendant (a div), so the original
# keeps it a div whatever else it holds.
_LEAF_DIVS = etree.XPath("descendant::div[not(descendant::div)]")
# Divs with loose text or a <br> child: the others pass the second loop unchanged. XPath's
# whitespace (space, tab, CR, LF) is part of Python's, so this is a superset of the divs whose
# text or a child's tail strip() to something.
_DIVS_TO_SPLIT = etree.XPath("descendant::div[text()[normalize-space()] or br]")
# elem.xpath("text()[normalize-space()]") compiles the expression on every call.
_LOOSE_TEXT = etree.XPath("text()[normalize-space()]")


def transform_misused_divs_into_paragraphs(self: rl.Document) -> None:
    """``Document.transform_misused_divs_into_paragraphs``, looking only at the divs it can change.

    A div's verdict in the first loop depends on its descendants' tags as parsed: the divs
    after it in document order are not renamed yet, and a rename (div -> p) keeps a tag that
    starts with a block prefix. So the leaf divs can be chosen before the loop."""
    prefixes = rl.DIV_TO_P_PREFIXES
    for elem in _LEAF_DIVS(self.doc):
        if not any(str(e.tag).startswith(prefixes) for e in elem.iterdescendants("*")) and (
            next(elem.iterdescendants("a"), None) is None or _LOOSE_TEXT(elem)
        ):
            elem.tag = "p"

    # Changing a div changes its own text, its children and their tails, never another div's.
    fragment_fromstring = rl.fragment_fromstring
    for elem in _DIVS_TO_SPLIT(self.doc):
        if elem.text and elem.text.strip():
            p_elem = fragment_fromstring("<p/>")
            p_elem.text, elem.text = elem.text, None
            elem.insert(0, p_elem)

        for pos, child in reversed(list(enumerate(elem))):
            if child.tail and child.tail.strip():
                p_elem = fragment_fromstring("<p/>")
                p_elem.text, child.tail = child.tail, None
                elem.insert(pos + 1, p_elem)
            if child.tag == "br":
                child.drop_tree()


def _trimmed_length(elem: Any) -> int:
    # rl.text_length: len(trim(text_content())); trim's strip() after the join is a no-op
    return len(" ".join(elem.text_content().split()))


def _links_length(elem: Any, known: dict[Any, int]) -> int:
    """Sum of the trimmed text lengths of the links inside ``elem`` (``elem.findall(".//a")``),
    each link measured once while ``known`` holds it."""
    total = 0
    for link in elem.iterdescendants("a"):
        length = known.get(link)
        if length is None:
            length = known[link] = _trimmed_length(link)
        total += length
    return total


def score_paragraphs(self: rl.Document) -> dict[Any, rl.Candidate]:
    """``Document.score_paragraphs``; the tree does not change while it runs, so the text length
    of each link is computed once (a link lies inside several candidates)."""
    candidates: dict[Any, rl.Candidate] = {}
    min_text_length = self.min_text_length
    score_node = self.score_node

    for elem in self.doc.iter("p", "pre", "td"):
        parent_node = elem.getparent()
        if parent_node is None:
            continue
        grand_parent_node = parent_node.getparent()

        elem_text = " ".join(elem.text_content().split())  # trim()
        elem_text_len = len(elem_text)

        # discard too short paragraphs
        if elem_text_len < min_text_length:
            continue

        for node in (parent_node, grand_parent_node):
            if node is not None and node not in candidates:
                candidates[node] = score_node(node)

        score = 1 + len(elem_text.split(",")) + min((elem_text_len / 100), 3)

        candidates[parent_node].score += score
        if grand_parent_node is not None:
            candidates[grand_parent_node].score += score / 2

    link_lengths: dict[Any, int] = {}
    for elem, candidate in candidates.items():
        link_length = _links_length(elem, link_lengths)
        # Without links the density is 0 / length = 0.0 whatever the length: not read.
        total_length = (_trimmed_length(elem) or 1) if link_length else 1
        candidate.score *= 1 - link_length / total_length

    return candidates


def _ascii_lowered(pattern: re.Pattern) -> re.Pattern | None:
    """For a case-insensitive alternation of lower-case ASCII literals: the same pattern without
    IGNORECASE, to search lower-cased ASCII text (Python's case-insensitive matching is ~7x
    slower). On ASCII text the two find the same; other text keeps the original."""
    if pattern.flags & re.IGNORECASE and re.fullmatch(r"[a-z0-9\-]+(?:\|[a-z0-9\-]+)*", pattern.pattern):
        return re.compile(pattern.pattern, pattern.flags & ~re.IGNORECASE)
    return None


def _class_weights() -> dict[tuple[str | None, str | None], int]:
    global _weights, _weight_patterns
    negative, positive = rl.REGEXES["negativeRe"], rl.REGEXES["positiveRe"]
    if negative is not _weight_patterns[0] or positive is not _weight_patterns[2] or len(_weights) >= _CACHE_LIMIT:
        _weights = {}
        _weight_patterns = (negative, _ascii_lowered(negative), positive, _ascii_lowered(positive))
    return _weights


def _weight(attributes: tuple[str | None, str | None]) -> int:
    negative, negative_lowered, positive, positive_lowered = _weight_patterns
    weight = 0
    for attribute in filter(None, attributes):
        if attribute.isascii():
            low = attribute.lower()
            is_negative = negative.search(attribute) if negative_lowered is None else negative_lowered.search(low)
            is_positive = positive.search(attribute) if positive_lowered is None else positive_lowered.search(low)
        else:
            is_negative, is_positive = negative.search(attribute), positive.search(attribute)
        if is_negative:
            weight -= 25
        if is_positive:
            weight += 25
    return weight


def class_weight(self: rl.Document, elem: Any) -> int:
    """``Document.class_weight``, remembered per (class, id)."""
    key = (elem.get("class"), elem.get("id"))
    if key == (None, None):
        return 0
    weights = _class_weights()
    weight = weights.get(key)
    if weight is None:
        weight = weights[key] = _weight(key)
    return weight


def _forget_links_around(elem: Any, link_lengths: dict[Any, int]) -> None:
    # Dropping elem changes the text of its ancestors only (its tail moves to its previous
    # sibling or its parent, both inside the same ancestors).
    if link_lengths:
        for link in elem.iterancestors("a"):
            link_lengths.pop(link, None)


def sanitize(self: rl.Document, node: Any, candidates: dict[Any, rl.Candidate]) -> str:
    """``Document.sanitize``; the text of each table, list or div it weighs is read once instead
    of three times (nothing changes the tree in between)."""
    for header in list(node.iter("h1", "h2", "h3", "h4", "h5", "h6")):
        if self.class_weight(header) < 0 or self.get_link_density(header) > 0.33:
            header.drop_tree()

    for elem in list(node.iter("form", "textarea")):
        elem.drop_tree()

    video = rl.REGEXES["videoRe"]
    for elem in list(node.iter("iframe")):
        if "src" in elem.attrib and video.search(elem.attrib["src"]):
            elem.text = "VIDEO"  # ADD content to iframe text node to force <iframe></iframe> proper output
        else:
            elem.drop_tree()

    min_text_length = self.min_text_length
    # Text lengths of links, until something inside them is dropped: the elements are weighed
    # from the last to the first, so a link lies in several of them.
    link_lengths: dict[Any, int] = {}
    # Conditionally clean <table>s, <ul>s, and <div>s
    for elem in reversed(list(node.iter("table", "ul", "div", "aside", "header", "footer", "section"))):
        weight = self.class_weight(elem)
        score = candidates[elem].score if elem in candidates else 0
        if weight + score < 0:
            rl.LOGGER.debug(
                "Removed %s with score %6.3f and weight %-3s",
                elem.tag,
                score,
                weight,
            )
            _forget_links_around(elem, link_lengths)
            elem.drop_tree()
            continue
        text = elem.text_content()
        if text.count(",") < 10:
            to_remove = True
            counts = Counter(e.tag for e in elem.iterdescendants(*rl.TEXT_CLEAN_ELEMS))
            counts["li"] -= 100
            counts["input"] -= len(elem.findall('.//input[@type="hidden"]'))

            # Count the text length excluding any surrounding whitespace
            content_length = len(" ".join(text.split()))
            link_length = _links_length(elem, link_lengths)
            link_density = link_length / (content_length or 1)
            if counts["p"] and counts["img"] > 1 + counts["p"] * 1.3:
                reason = f"too many images ({counts['img']})"
            elif counts["li"] > counts["p"] and elem.tag not in rl.LIST_TAGS:
                reason = "more <li>s than <p>s"
            elif counts["input"] > (counts["p"] / 3):
                reason = "less than 3x <p>s than <input>s"
            elif content_length < min_text_length and counts["img"] == 0:
                reason = f"too short content length {content_length} without a single image"
            elif content_length < min_text_length and counts["img"] > 2:
                reason = f"too short content length {content_length} and too many images"
            elif link_density > (0.5 if weight >= 25 else 0.2):
                reason = f"too many links {link_density:.3f} for its weight {weight}"
            elif (counts["embed"] == 1 and content_length < 75) or counts["embed"] > 1:
                reason = "<embed>s with too short content length, or too many <embed>s"
            elif not content_length:
                reason = "no content"
                # kept between long neighbours: the nearest non-empty sibling on each side
                nearest = (
                    next((n for sib in sibs if (n := rl.text_length(sib))), 0)
                    for sibs in (elem.itersiblings(), elem.itersiblings(preceding=True))
                )
                to_remove = sum(nearest) <= 1000
            else:
                to_remove = False

            if to_remove:
                _forget_links_around(elem, link_lengths)
                elem.drop_tree()
                rl.LOGGER.debug(
                    "Removed %6.3f %s with weight %s cause it has %s.",
                    score,
                    elem.tag,
                    weight,
                    reason or "",
                )

    return etree.tostring(node, encoding=str, method="xml")


_FAST = {
    "remove_unlikely_candidates": remove_unlikely_candidates,
    "transform_misused_divs_into_paragraphs": transform_misused_divs_into_paragraphs,
    "score_paragraphs": score_paragraphs,
    "class_weight": class_weight,
    "sanitize": sanitize,
}


def install() -> None:
    """Replace the slow methods of ``trafilatura.readability_lxml.Document`` (idempotent)."""
    for name, function in _FAST.items():
        setattr(rl.Document, name, function)


def uninstall() -> None:
    """Put trafilatura's own methods back (benchmarks compare the two in one process)."""
    for name, function in ORIGINALS.items():
        setattr(rl.Document, name, function)
