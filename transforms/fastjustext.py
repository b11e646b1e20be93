"""jusText's paragraph maker, without SAX: the same paragraphs from one walk over the tree.

trafilatura falls back to jusText (``justext_rescue``) on pages whose first extraction is short
or unclean: one page in ten of trafilatura's evaluation set, yet 15 % of its extraction time,
most of it in ``ParagraphMaker.make_paragraphs``. That method converts the tree to SAX events
through ``lxml.sax`` (namespace maps, attribute objects and qualified names for every element,
all of them unused by the handler), and each ``Paragraph`` formats its whole XPath and DOM path
when it starts, although most paragraphs stay empty and are dropped. Paragraph text is joined
and whitespace-normalised again on every read (``classify_paragraphs`` reads it up to six times).

``make_paragraphs`` here replays the handler's logic (``justext.core.ParagraphMaker``: paragraph
tags, ``<br><br>`` separators, link characters, tag counts) on an ``iterwalk`` of the tree and
returns ``Paragraph`` objects whose paths are formatted when read and whose text is computed
once. The result is the same list: the tests compare every field and the classification with
jusText's own on generated and real pages. A tree with a node jusText's SAX conversion cannot
name (an entity reference) goes to the original, so it fails the same way.
"""

from __future__ import annotations

import re

from justext.core import PARAGRAPH_TAGS, ParagraphMaker
from justext.paragraph import Paragraph
from lxml import etree

# jusText's normalize_whitespace: a whitespace run becomes "\n" when it holds a line break
# (\n or \r), else " ". Two substitutions without a Python callback per run.
_BREAK_RUN = re.compile(r"\s*[\r\n]\s*")
_SPACE_RUN = re.compile(r"[^\S\n]+")


def normalize_whitespace(text: str) -> str:
    """Same as ``justext.utils.normalize_whitespace``."""
    return _SPACE_RUN.sub(" ", _BREAK_RUN.sub("\n", text))


class FastParagraph(Paragraph):
    """A ``justext.paragraph.Paragraph`` whose paths are formatted when read and whose text,
    once the paragraph is complete, is computed once."""

    def __init__(self, tags: tuple[str, ...], orders: tuple[int, ...]) -> None:
        # Paragraph.__init__ would format both paths at once; keep the parts instead.
        self._tags = tags
        self._orders = orders
        self._dom: str | None = None
        self._text: str | None = None
        self._words: list[str] | None = None
        self.text_nodes: list[str] = []
        self.chars_count_in_links = 0
        self.tags_count = 0
        self.class_type = ""

    @property
    def dom_path(self) -> str:
        if self._dom is None:
            self._dom = ".".join(self._tags)
        return self._dom

    @property
    def xpath(self) -> str:
        return "/" + "/".join(f"{tag}[{order}]" for tag, order in zip(self._tags, self._orders, strict=True))

    @property
    def text(self) -> str:
        if self._text is None:
            return normalize_whitespace("".join(self.text_nodes).strip())
        return self._text

    def _split(self) -> list[str]:
        if self._words is None:
            return self.text.split()
        return self._words

    @property
    def words_count(self) -> int:
        return len(self._split())

    def stopwords_count(self, stopwords) -> int:
        return sum(word.lower() in stopwords for word in self._split())

    def append_text(self, text: str) -> str:
        self._text = self._words = None
        text = normalize_whitespace(text)
        self.text_nodes.append(text)
        return text

    def freeze(self) -> None:
        """The paragraph is complete: remember its text and words from now on."""
        self._text = self.text
        self._words = self._text.split()


class _Unsupported(Exception):
    pass


def _local_name(tag) -> str:
    if type(tag) is not str:  # an entity reference: jusText's SAX conversion fails on it
        raise _Unsupported
    return tag.split("}", 1)[1] if tag[0] == "{" else tag


def make_paragraphs(root) -> list[Paragraph]:
    """``justext.core.ParagraphMaker.make_paragraphs(root)``, without SAX."""
    try:
        return _make_paragraphs(root)
    except _Unsupported:
        return _ORIGINAL_MAKE_PARAGRAPHS(root)


def _make_paragraphs(root) -> list[Paragraph]:
    paragraphs: list[Paragraph] = []
    tags: list[str] = []  # the open elements' local names (jusText's PathInfo)...
    orders: list[int] = []  # ...their position among same-named siblings...
    children: list[dict[str, int]] = []  # ...and the counts of their children's names
    paragraph = FastParagraph((), ())
    link = br = False

    def new_paragraph() -> FastParagraph:
        # jusText keeps a paragraph when it has text nodes and is truthy: its __len__ is the
        # length of its normalised text, so a paragraph of a lone <br> (" ") is dropped.
        if paragraph.text_nodes:
            paragraph.freeze()
            if paragraph.text:
                paragraphs.append(paragraph)
        return FastParagraph(tuple(tags), tuple(orders))

    def characters(content: str | None) -> None:
        nonlocal br
        if not content or content.isspace():
            return
        text = paragraph.append_text(content)
        if link:
            paragraph.chars_count_in_links += len(text)
        br = False

    # Processing instructions next to the root: only their tails are text.
    before = []
    sibling = root.getprevious() if hasattr(root, "getprevious") else None
    while getattr(sibling, "tag", None) is etree.ProcessingInstruction:
        before.append(sibling)
        sibling = sibling.getprevious()
    for sibling in reversed(before):
        characters(sibling.tail)

    for event, element in etree.iterwalk(root, events=("start", "end", "comment", "pi")):
        if event == "start":
            name = _local_name(element.tag)
            counts = children[-1] if children else {}
            order = counts.get(name, 0) + 1
            counts[name] = order
            tags.append(name)
            orders.append(order)
            children.append({})
            if name in PARAGRAPH_TAGS or (name == "br" and br):
                if name == "br":  # <br><br> separates paragraphs and is not one of its tags
                    paragraph.tags_count -= 1
                paragraph = new_paragraph()
            else:
                br = name == "br"
                if br:
                    paragraph.append_text(" ")
                elif name == "a":
                    link = True
                paragraph.tags_count += 1
            characters(element.text)
        elif event == "end":
            name = tags.pop()
            orders.pop()
            children.pop()
            if name in PARAGRAPH_TAGS:
                paragraph = new_paragraph()
            if name == "a":
                link = False
            characters(element.tail)
        else:  # comment or processing instruction: not text, but its tail is
            characters(element.tail)

    sibling = root.getnext() if hasattr(root, "getnext") else None
    while getattr(sibling, "tag", None) is etree.ProcessingInstruction:
        characters(sibling.tail)
        sibling = sibling.getnext()
    new_paragraph()  # endDocument
    return paragraphs


_ORIGINAL_MAKE_PARAGRAPHS = ParagraphMaker.make_paragraphs


class FastParagraphMaker:
    """Stands in for ``justext.core.ParagraphMaker`` where trafilatura calls it."""

    make_paragraphs = staticmethod(make_paragraphs)


def install() -> None:
    """Make trafilatura's jusText fallback use ``make_paragraphs``."""
    import trafilatura.external

    trafilatura.external.ParagraphMaker = FastParagraphMaker
