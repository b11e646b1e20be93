"""Element selectors of the XPath subset trafilatura uses, evaluated in Python.

trafilatura selects elements with XPaths such as

    (.//div|.//p)[((@id) and re:test(@id, 'share|social')) or contains(@style, 'display:none')]

Every ``re:test`` an element reaches is a call from libxml2 back into Python through lxml's
extension-function machinery: ~4-5 us per call, several per element, on every element with
the attribute. Most of the time trafilatura spends in XPath is in those calls. The same
selection done here (one walk with lxml's C-level name filter, then the tests in Python)
costs a dictionary look-up per attribute and one regex search per value: 2-3x less for
the heavy selectors.

``compile_selector(path)`` returns a ``Selector`` for the supported shapes and None for
anything else (the caller keeps its lxml XPath). Supported: a union of branches, each a
``.//NAME``, ``//NAME``, ``.//*`` or ``(.//a|.//b)`` step followed by predicates built from
``or``, ``and``, parentheses, ``not()``, ``contains()``, ``starts-with()``, ``translate()``,
``string()``, ``re:test()``, ``self::NAME``, ``.//NAME`` (existence), ``NAME`` (the children of
that name: existence, or ``=`` a literal, true when one child's string value is that literal),
attributes and unions of attributes (``@id|@class``), string literals and ``=`` against a literal. No numbers and
no positions, except a ``[1]`` closing a single step (the first child of each parent that
passes the tests before it): the predicates are tests of one element, which is what lets a
walk in document order return the same list as the XPath.

XPath 1.0 semantics kept: a set of attributes is true when not empty; its string value is
the value of the first attribute in document order (the order in the tag); ``@a = 'x'`` is
true when any attribute of the set has that value; ``re:test`` takes the string value of
its first argument and the flag ``i`` for case-insensitive matching, as lxml's EXSLT
implementation does. tests/test_fastxpath.py and tests/test_extract.py compare every
selector with lxml's answer on generated and real pages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lxml import etree

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<literal>'[^']*'|"[^"]*")
      | (?P<axis>\.?//)
      | (?P<self>self::)
      | (?P<name>[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?)
      | (?P<number>\d+)
      | (?P<op>[\[\]()|@=,*])
    )""",
    re.VERBOSE,
)
_FUNCTIONS = frozenset({"contains", "starts-with", "translate", "not", "re:test", "string"})


def _set_display(names) -> str:
    """``{'a', 'b'}``: in a test ``x in {...}`` Python compiles a display of constants into one
    frozenset constant, where ``frozenset({...})`` is a call on every evaluation."""
    return "{" + ", ".join(repr(name) for name in sorted(names)) + "}"


class _Unsupported(Exception):
    pass


def _tokens(path: str) -> list[tuple[str, str]]:
    out, at = [], 0
    path = path.strip()
    while at < len(path):
        match = _TOKEN.match(path, at)
        if match is None or match.end() == at:
            raise _Unsupported(path[at : at + 20])
        kind = match.lastgroup
        out.append((kind, match.group(kind)))
        at = match.end()
        while at < len(path) and path[at].isspace():
            at += 1
    return out


# A compiled expression is (kind, Python source): "bool" and "str" are expressions of the
# element ``e`` and its ``g = e.get``; "attrs" carries the tuple of attribute names of a set
# of attributes, "lit" the text of a literal. The constants (tables, regex searches) go into
# a namespace under generated names.


class _Parser:
    def __init__(self, path: str) -> None:
        self.tokens = _tokens(path)
        self.at = 0
        self.constants: dict[str, Any] = {}

    def constant(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        at = self.at + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if token is None or (value is not None and token[1] != value) or (kind is not None and token[0] != kind):
            raise _Unsupported(f"expected {value or kind}, got {token}")
        self.at += 1
        return token[1]

    # path := branch ('|' branch)*
    def path(self) -> list[tuple[bool, tuple[str, ...] | None, list[str], bool]]:
        branches = self.separated(self.branch, "|")
        if self.peek() is not None:
            raise _Unsupported(f"trailing {self.peek()}")
        return branches

    def separated(self, item: Callable[[], Any], separator: str) -> list[Any]:
        """``item (separator item)*``"""
        items = [item()]
        while self.peek() == ("op", separator):
            self.take(separator)
            items.append(item())
        return items

    # branch := (step | '(' step ('|' step)* ')') predicate* | step predicate* '[1]'
    # Returns (relative, element names or None for any, tests, first child per parent only).
    def branch(self) -> tuple[bool, tuple[str, ...] | None, list[str], bool]:
        step_form = self.peek() != ("op", "(")
        if self.peek() == ("op", "("):
            self.take("(")
            steps = self.separated(self.step, "|")
            self.take(")")
            if any(name is None for _, name in steps) or len({relative for relative, _ in steps}) != 1:
                raise _Unsupported("union of steps")
            relative, names = steps[0][0], tuple(name for _, name in steps)
        else:
            relative, name = self.step()
            names = (name,) if name is not None else self.self_names()
        tests = []
        while self.peek() == ("op", "["):
            if self.peek(1) == ("number", "1") and self.peek(2) == ("op", "]") and step_form:
                # [1] closing a step: the first child of each parent passing the tests before it
                self.at += 3
                if self.peek() == ("op", "["):
                    raise _Unsupported("a test after a position")
                return relative, names, tests, True
            self.take("[")
            tests.append(_as_bool(self.or_expr()))
            self.take("]")
        return relative, names, tests, False

    def self_names(self) -> tuple[str, ...] | None:
        """``[self::a or self::b]`` right after ``//*``: the names (the predicate is consumed);
        None, consuming nothing, for any other predicate."""
        start, names = self.at, []
        if self.peek() == ("op", "["):
            self.at += 1
            while self.peek() is not None and self.peek()[0] == "self" and self.peek(1) and self.peek(1)[0] == "name":
                names.append(self.peek(1)[1])
                self.at += 2
                if self.peek() == ("op", "]"):
                    self.at += 1
                    return tuple(names)
                if self.peek() != ("name", "or"):
                    break
                self.at += 1
        self.at = start
        return None

    def step(self) -> tuple[bool, str | None]:
        axis = self.take(kind="axis")
        if self.peek() == ("op", "*"):
            self.take("*")
            return axis.startswith("."), None
        return axis.startswith("."), self.take(kind="name")

    def or_expr(self) -> tuple[str, Any]:
        return self.chain("or", self.and_expr)

    def and_expr(self) -> tuple[str, Any]:
        return self.chain("and", self.comparison)

    def chain(self, operator: str, operand: Callable[[], tuple[str, Any]]) -> tuple[str, Any]:
        """``operand (operator operand)*``; a single operand keeps its kind."""
        parts = [operand()]
        while self.peek() == ("name", operator):
            self.take(operator)
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        return "bool", "(" + f" {operator} ".join(_as_bool(part) for part in parts) + ")"

    def comparison(self) -> tuple[str, Any]:
        left = self.primary()
        if self.peek() != ("op", "="):
            return left
        self.take("=")
        literal = repr(self.take(kind="literal")[1:-1])
        kind, value = left
        if kind == "attrs":  # true when any attribute of the set has the value
            return "bool", "(" + " or ".join(f"g({name!r}) == {literal}" for name in value) + ")"
        if kind == "children":  # true when any child of that name has the string value
            return "bool", f"any(_string(c) == {literal} for c in e.iterchildren({value!r}))"
        return "bool", f"({_as_str(left)} == {literal})"

    def primary(self) -> tuple[str, Any]:
        kind, value = self.peek() or ("", "")
        if (kind, value) == ("op", "("):
            self.take("(")
            inner = self.or_expr()
            self.take(")")
            return inner
        if kind == "op" and value == "@":
            names = [self.attribute()]
            while self.peek() == ("op", "|") and self.peek(1) == ("op", "@"):
                self.take("|")
                names.append(self.attribute())
            return "attrs", tuple(names)
        if kind == "self":
            self.take(kind="self")
            return "bool", f"(e.tag == {self.take(kind='name')!r})"
        if kind == "axis":
            relative, name = self.step()
            if not relative or name is None:
                raise _Unsupported("path inside a predicate")
            return "bool", f"(next(e.iterdescendants({name!r}), None) is not None)"
        if kind == "literal":
            self.take(kind="literal")
            return "lit", value[1:-1]
        if kind == "name" and self.peek(1) == ("op", "("):
            return self.function()
        if kind == "name" and ":" not in value and self.peek(1) != ("op", "["):
            # a child step (trafilatura's byline XPath: ``rel='me'``); a name met here is not
            # an operator, which the chains take before asking for an operand
            self.take(kind="name")
            return "children", value
        raise _Unsupported(f"{kind} {value}")

    def attribute(self) -> str:
        self.take("@")
        return self.take(kind="name")

    def function(self) -> tuple[str, Any]:
        name = self.take(kind="name")
        if name not in _FUNCTIONS:
            raise _Unsupported(name)
        self.take("(")
        args = self.separated(self.or_expr, ",")
        self.take(")")
        if name == "not":
            (arg,) = args
            return "bool", f"(not {_as_bool(arg)})"
        if name == "string":
            (arg,) = args
            return "str", _as_str(arg)
        if name in ("contains", "starts-with"):
            haystack, needle = args
            if needle[0] != "lit":
                raise _Unsupported(f"{name} of a computed string")
            if name == "contains":
                return "bool", f"({needle[1]!r} in {_as_str(haystack)})"
            return "bool", f"{_as_str(haystack)}.startswith({needle[1]!r})"
        if name == "translate":
            source, old, new = args
            if old[0] != "lit" or new[0] != "lit":
                raise _Unsupported("translate of computed strings")
            pairs: dict[str, str] = {}
            for at, char in enumerate(old[1]):  # the first occurrence of a character wins
                pairs.setdefault(char, new[1][at] if at < len(new[1]) else "")
            text = _as_str(source)
            if not set(pairs.values()) & set(pairs):  # no chains: one str.replace per pair
                return "str", text + "".join(f".replace({a!r}, {b!r})" for a, b in pairs.items())
            table = {ord(a): (ord(b) if b else None) for a, b in pairs.items()}
            return "str", f"{text}.translate({self.constant(table)})"
        # re:test(string, pattern[, flags]), as lxml's EXSLT regular expressions
        if len(args) not in (2, 3) or any(arg[0] != "lit" for arg in args[1:]):
            raise _Unsupported("re:test of a computed pattern")
        flags = args[2][1] if len(args) == 3 else ""
        search = _ignore_case_search(args[1][1]) if "i" in flags else re.compile(args[1][1]).search
        return "bool", f"{self.constant(_Verdicts(search))}[{_as_str(args[0])}]"


#: Values whose regex verdict a ``_Verdicts`` keeps (per pattern); a full table starts empty.
VERDICTS_KEPT = 8192


class _Verdicts(dict):
    """``search(value) is not None`` per value, kept: a regex test depends on the string
    alone, and the same class and id values recur on the elements of a page and across the
    pages of a site, while a search runs the whole alternation (trafilatura's discard
    patterns hold dozens of words). Read as ``verdicts[value]``: a dict look-up when known."""

    __slots__ = ("search",)

    def __init__(self, search: Callable[[str], Any]) -> None:
        super().__init__()
        self.search = search

    def __missing__(self, value: str) -> bool:
        if len(self) >= VERDICTS_KEPT:
            self.clear()
        found = self[value] = self.search(value) is not None
        return found


def _ignore_case_search(pattern: str) -> Callable[[str], Any]:
    """``re.compile(pattern, re.IGNORECASE).search``, faster on ASCII text when the pattern
    has no upper-case letter: then a case-sensitive search of the lower-cased text finds the
    same (in ASCII, case folding is lower-casing; escapes such as \\S do not depend on case).
    Python's case-insensitive search of an alternation is ~3x slower (2.0 vs 0.7 us per
    class or id value of trafilatura_eval pages)."""
    slow = re.compile(pattern, re.IGNORECASE).search
    if not pattern.isascii() or re.search("[A-Z]", re.sub(r"\\.", "", pattern)):
        return slow
    fast = re.compile(pattern).search

    def search(text: str) -> Any:
        return fast(text.lower()) if text.isascii() else slow(text)

    return search


def _first(elem: Any, names: tuple[str, ...]) -> str:
    """String value of a set of attributes: the first in document order, or ""."""
    found = [key for key in elem.keys() if key in names]
    return elem.get(found[0]) if found else ""


def _string(elem: Any) -> str:
    """XPath string value of an element: its descendant text nodes (no comments), as lxml's
    ``string()``; read only for a child a predicate compares, rare enough for an XPath call."""
    return elem.xpath("string()")


def _as_str(compiled: tuple[str, Any]) -> str:
    kind, value = compiled
    if kind == "str":
        return value
    if kind == "attrs":
        if len(value) == 1:
            return f"(g({value[0]!r}) or '')"
        return f"_first(e, {value!r})"
    if kind == "lit":
        return repr(value)
    raise _Unsupported(f"string of {kind}")


def _as_bool(compiled: tuple[str, Any]) -> str:
    kind, value = compiled
    if kind == "bool":
        return value
    if kind == "str":
        return f"({value} != '')"
    if kind == "attrs":  # a set of attributes is true when not empty
        return "(" + " or ".join(f"g({name!r}) is not None" for name in value) + ")"
    if kind == "lit":
        return repr(value != "")
    if kind == "children":  # a set of elements is true when not empty
        return f"(next(e.iterchildren({value!r}), None) is not None)"
    raise _Unsupported(f"boolean of {kind}")


class Selector:
    """A compiled selector: call it with an element, get the matching elements in document
    order, as lxml's XPath object returns them. ``path`` is the XPath it was compiled from,
    ``source`` the Python it was compiled to."""

    def __init__(self, path: str) -> None:
        parser = _Parser(path)
        branches = parser.path()
        first_child = any(first for *_, first in branches)
        if first_child and len(branches) > 1:
            raise _Unsupported("a position in a union")
        relative = {relative for relative, *_ in branches}
        if len(relative) != 1:
            raise _Unsupported("relative and absolute branches")
        self.path = path
        self._relative = relative.pop()
        # one walk: by name when every branch names its elements, else over all elements
        named = all(names is not None for _, names, *_ in branches)
        self._names = tuple(dict.fromkeys(name for _, names, *_ in branches for name in names or ())) if named else ()
        tests = []
        plain = frozenset(name for _, names, predicates, _ in branches if not predicates for name in names or ())
        if plain and len(branches) > 1:  # the branches that select by name alone: one test
            tests.append(f"e.tag in {_set_display(plain)}")
        for _, names, predicates, _ in branches:
            if names is not None and not predicates and len(branches) > 1:
                continue
            parts = list(predicates)
            if len(branches) > 1 and names is not None:
                parts.insert(0, f"(e.tag in {_set_display(names)})")
            tests.append(" and ".join(parts) or "True")
        condition = " or ".join(f"({test})" for test in tests)
        lines = ["def select(walk):", "    out = []"]
        if first_child:
            lines.append("    seen = set()")
        lines += ["    for e in walk:", "        g = e.get", f"        if {condition}:"]
        if first_child:  # positions count among the children of one parent that pass the tests
            lines += [
                "            parent = e.getparent()",
                "            if parent in seen:",
                "                continue",
            ]
            lines.append("            seen.add(parent)")
        lines += ["            out.append(e)", "    return out"]
        self.source = "\n".join(lines) + "\n"
        namespace = {"_first": _first, "_string": _string, **parser.constants}
        exec(compile(self.source, f"<selector {path[:40]!r}>", "exec"), namespace)  # noqa: S102 - our own code
        self._select = namespace["select"]

    def __call__(self, node: Any) -> list[Any]:
        if isinstance(node, etree._ElementTree):  # lxml evaluates relative paths from its root
            node = node.getroot()
        if self._relative:
            walk = node.iterdescendants(*self._names) if self._names else node.iterdescendants(etree.Element)
        else:  # from the document node: the root element is one of its descendants
            root = node.getroottree().getroot()
            walk = root.iter(*self._names) if self._names else root.iter(etree.Element)
        return self._select(walk)

    def __repr__(self) -> str:
        return f"Selector({self.path!r})"


def compile_selector(path: str) -> Selector | None:
    """A Selector equal to the XPath ``path``, or None when ``path`` is outside the subset."""
    try:
        return Selector(path)
    except (_Unsupported, ValueError, IndexError):
        return None
