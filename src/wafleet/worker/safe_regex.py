"""Regex rules matched in linear time: a tenant's pattern can never hang the worker.

Python's ``re`` backtracks, so a pattern like ``(a+)+$`` takes exponential time and even
an ordinary ``.*a.*b`` takes cubic time (90 s on one 4096-character message, measured
here): a tenant could stall every bot on its worker with one rule, and ``re`` holds the
GIL, so no thread can time it out. Instead, the pattern is parsed with Python's own regex
parser (same syntax, same error messages) and run as a Thompson NFA: every state at most
once per input character, so the cost is O(len(text) x len(program)) whatever the
pattern. Matching is a yes/no search, which is all a rule needs.

Refused at configure time, with a one-line reason: backreferences, lookaround,
conditionals, atomic groups and possessive quantifiers (they need backtracking), and
patterns whose expanded program is larger than ``MAX_PROGRAM`` (e.g. ``(a{1000}){1000}``).
Semantics follow ``re.search`` with ``re.IGNORECASE`` (as the matcher always used):
``^ $ \\A \\Z \\b \\B``, inline flags ``(?imsax)``, classes and Unicode categories. Case
folding compares a character's lower and upper case forms, which differs from ``re``
only for a few exotic folds (e.g. the long s U+017F or the Kelvin sign U+212A).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

# Python's own regex parser (same syntax and errors as `re`); untyped internals.
C: Any = importlib.import_module("re._constants")
sre_parse: Any = importlib.import_module("re._parser")

MAX_PROGRAM = 20_000
# Linear is not enough on its own: a 600-step program over a 4096-character message is
# 2.5 M state visits (about 3 s in pure Python). Each message gets this many visits for
# all its regex rules together (~0.2-0.5 s at worst); see RuleMatcher.
DEFAULT_BUDGET = 200_000

Pred = Callable[[str], bool]
Test = Callable[[str, int], bool]

# instruction kinds
_CHAR, _SPLIT, _JMP, _ASSERT, _MATCH = range(5)


class UnsafePattern(ValueError):
    """The pattern uses a construct the linear-time matcher cannot run."""


class BudgetExceeded(Exception):
    """A search used up its step budget (``used`` visits) before deciding."""

    def __init__(self, used: int) -> None:
        super().__init__(f"regex step budget exhausted after {used} state visits")
        self.used = used


def _is_word(ch: str, ascii_only: bool) -> bool:
    if ascii_only:
        return ch.isascii() and (ch.isalnum() or ch == "_")
    return ch.isalnum() or ch == "_"


def _category(cat: Any, ascii_only: bool) -> Pred:
    if cat in (C.CATEGORY_DIGIT, C.CATEGORY_NOT_DIGIT):
        base: Pred = (lambda ch: "0" <= ch <= "9") if ascii_only else (lambda ch: ch.isdecimal())
        negate = cat is C.CATEGORY_NOT_DIGIT
    elif cat in (C.CATEGORY_SPACE, C.CATEGORY_NOT_SPACE):
        base = (lambda ch: ch in " \t\n\r\f\v") if ascii_only else (lambda ch: ch.isspace())
        negate = cat is C.CATEGORY_NOT_SPACE
    elif cat in (C.CATEGORY_WORD, C.CATEGORY_NOT_WORD):
        base = lambda ch: _is_word(ch, ascii_only)  # noqa: E731
        negate = cat is C.CATEGORY_NOT_WORD
    else:
        raise UnsafePattern(f"unsupported character category {cat}")
    return (lambda ch: not base(ch)) if negate else base


def _variants(ch: str) -> tuple[str, ...]:
    """The character and its single-character lower/upper case forms."""
    return (ch, *(v for v in (ch.lower(), ch.upper()) if len(v) == 1 and v != ch))


def _class(items: list[tuple[Any, Any]], icase: bool, ascii_only: bool) -> Pred:
    negate = False
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    cats: list[Pred] = []
    for op, av in items:
        if op is C.NEGATE:
            negate = True
        elif op is C.LITERAL:
            chars.add(chr(av))
        elif op in (C.RANGE, C.RANGE_UNI_IGNORE):
            ranges.append((chr(av[0]), chr(av[1])))
        elif op is C.CATEGORY:
            cats.append(_category(av, ascii_only))
        else:
            raise UnsafePattern(f"unsupported item {op} in a character class")

    def member(ch: str) -> bool:
        return ch in chars or any(lo <= ch <= hi for lo, hi in ranges) or any(c(ch) for c in cats)

    def pred(ch: str) -> bool:
        hit = member(ch) or (icase and any(member(v) for v in _variants(ch)[1:]))
        return hit != negate

    return pred


def _literal(code: int, icase: bool, negate: bool) -> Pred:
    lit = chr(code)
    if icase:
        forms = set(_variants(lit))
        # lower()/upper() of another character may be several characters: never in forms
        return lambda ch: (ch in forms or ch.lower() in forms or ch.upper() in forms) != negate
    return lambda ch: (ch == lit) != negate


def _assertion(at: Any, multiline: bool, ascii_only: bool) -> Test:
    def word_at(text: str, i: int) -> bool:
        return 0 <= i < len(text) and _is_word(text[i], ascii_only)

    if at is C.AT_BEGINNING_STRING or (at is C.AT_BEGINNING and not multiline):
        return lambda text, i: i == 0
    if at is C.AT_BEGINNING:
        return lambda text, i: i == 0 or text[i - 1] == "\n"
    if at is C.AT_END_STRING:
        return lambda text, i: i == len(text)
    if at is C.AT_END and not multiline:
        return lambda text, i: i == len(text) or (i == len(text) - 1 and text[i] == "\n")
    if at is C.AT_END:
        return lambda text, i: i == len(text) or text[i] == "\n"
    if at is C.AT_BOUNDARY:
        return lambda text, i: word_at(text, i - 1) != word_at(text, i)
    if at is C.AT_NON_BOUNDARY:
        # like re: \B never matches in an empty string
        return lambda text, i: bool(text) and word_at(text, i - 1) == word_at(text, i)
    raise UnsafePattern(f"unsupported anchor {at}")


_REFUSED = {
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ASSERT": "lookahead/lookbehind",
    "ASSERT_NOT": "negative lookahead/lookbehind",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}


class _Compiler:
    def __init__(self) -> None:
        self.kind: list[int] = []
        self.a: list[Any] = []
        self.b: list[int] = []

    def emit(self, kind: int, a: Any = None, b: int = -1) -> int:
        if len(self.kind) >= MAX_PROGRAM:
            raise UnsafePattern(
                f"too complex: expands to more than {MAX_PROGRAM} steps (use smaller repeat counts)"
            )
        self.kind.append(kind)
        self.a.append(a)
        self.b.append(b)
        return len(self.kind) - 1

    def seq(self, items: Any, flags: int) -> None:
        for op, av in items:
            self.node(op, av, flags)

    def node(self, op: Any, av: Any, flags: int) -> None:
        icase = bool(flags & C.SRE_FLAG_IGNORECASE)
        ascii_only = bool(flags & C.SRE_FLAG_ASCII)
        name = str(op)
        if name in _REFUSED:
            raise UnsafePattern(f"{_REFUSED[name]} are not supported (they need backtracking)")
        if op in (C.LITERAL, C.NOT_LITERAL):
            self.emit(_CHAR, _literal(av, icase, op is C.NOT_LITERAL))
        elif op is C.ANY:
            dotall = bool(flags & C.SRE_FLAG_DOTALL)
            self.emit(_CHAR, (lambda ch: True) if dotall else (lambda ch: ch != "\n"))
        elif op is C.IN:
            self.emit(_CHAR, _class(av, icase, ascii_only))
        elif op is C.AT:
            self.emit(_ASSERT, _assertion(av, bool(flags & C.SRE_FLAG_MULTILINE), ascii_only))
        elif op is C.SUBPATTERN:
            _group, add, drop, sub = av
            self.seq(sub, (flags | add) & ~drop)
        elif op is C.BRANCH:
            self.branch(av[1], flags)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT):
            lo, hi, sub = av
            self.repeat(lo, hi, sub, flags)
        else:
            raise UnsafePattern(f"unsupported construct {name}")

    def branch(self, alternatives: list[Any], flags: int) -> None:
        jumps: list[int] = []
        for i, alt in enumerate(alternatives):
            if i < len(alternatives) - 1:
                split = self.emit(_SPLIT, None)
                self.a[split] = split + 1
                self.seq(alt, flags)
                jumps.append(self.emit(_JMP, None))
                self.b[split] = len(self.kind)
            else:
                self.seq(alt, flags)
        for j in jumps:
            self.a[j] = len(self.kind)

    def repeat(self, lo: int, hi: int, sub: Any, flags: int) -> None:
        for _ in range(lo):
            self.seq(sub, flags)
        if hi is C.MAXREPEAT or hi == C.MAXREPEAT:
            loop = self.emit(_SPLIT, None)
            self.a[loop] = loop + 1
            self.seq(sub, flags)
            self.emit(_JMP, loop)
            self.b[loop] = len(self.kind)
            return
        splits: list[int] = []
        for _ in range(hi - lo):
            split = self.emit(_SPLIT, None)
            self.a[split] = split + 1
            splits.append(split)
            self.seq(sub, flags)
        for s in splits:
            self.b[s] = len(self.kind)


class SafeRegex:
    """A compiled pattern; ``search(text)`` is True when ``re.search`` would find a match."""

    def __init__(self, pattern: str, flags: int = re.IGNORECASE) -> None:
        self.pattern = pattern
        try:
            parsed = sre_parse.parse(pattern, flags)
        except (re.error, OverflowError, RecursionError) as err:
            raise UnsafePattern(f"invalid regex: {err}") from None
        comp = _Compiler()
        try:
            comp.seq(parsed, parsed.state.flags | flags)
        except RecursionError:
            raise UnsafePattern("too complex: nested too deeply") from None
        comp.emit(_MATCH)
        self._kind, self._a, self._b = comp.kind, comp.a, comp.b
        first = parsed[0] if len(parsed) else None
        multiline = bool((parsed.state.flags | flags) & C.SRE_FLAG_MULTILINE)
        # A pattern starting with ^ (not multiline) or \A can only match at position 0.
        self._anchored = first is not None and (
            first == (C.AT, C.AT_BEGINNING_STRING)
            or (first == (C.AT, C.AT_BEGINNING) and not multiline)
        )

    def __len__(self) -> int:
        return len(self._kind)

    def search(self, text: str) -> bool:
        """True when ``re.search(pattern, text, re.IGNORECASE)`` would match."""
        return self.run(text)[0]

    def run(self, text: str, budget: int | None = None) -> tuple[bool, int]:
        """(matched, state visits used). With ``budget``, raises BudgetExceeded once
        more than that many states were visited before the answer is known."""
        limit = budget if budget is not None else -1
        kind, a, b = self._kind, self._a, self._b
        seen = [-1] * len(kind)

        work = 0  # states visited: consuming steps and epsilon moves alike

        def add(out: list[int], pc: int, pos: int) -> bool:
            """Follow epsilon moves from pc; collect consuming states. True on MATCH."""
            nonlocal work
            stack = [pc]
            while stack:
                i = stack.pop()
                if seen[i] == pos:
                    continue
                seen[i] = pos
                work += 1
                k = kind[i]
                if k == _CHAR:
                    out.append(i)
                elif k == _MATCH:
                    return True
                elif k == _JMP:
                    stack.append(a[i])
                elif k == _SPLIT:
                    stack.append(b[i])
                    stack.append(a[i])
                elif a[i](text, pos):  # _ASSERT
                    stack.append(i + 1)
            return False

        states: list[int] = []
        if add(states, 0, 0):
            return True, work
        for pos, ch in enumerate(text):
            work += len(states)
            if 0 <= limit < work:
                raise BudgetExceeded(work)
            nxt: list[int] = []
            for i in states:
                if a[i](ch) and add(nxt, i + 1, pos + 1):
                    return True, work
            if not self._anchored and add(nxt, 0, pos + 1):
                return True, work
            if not nxt and self._anchored:
                return False, work
            states = nxt
        return False, work


def compile_safe(pattern: str) -> SafeRegex:
    """Compile ``pattern`` for the rules matcher; raises UnsafePattern (one line)."""
    return SafeRegex(pattern)
