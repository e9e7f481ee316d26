"""Java regular expressions (botocore's model patterns) as Python ones.

The model's ``pattern`` values are Java regexes matched against the whole
value. Python's ``re`` differs in a few places the model uses: ``\\p{L}``-style
Unicode categories, what ``.`` matches, and Unicode ``\\d``/``\\w``. This module
translates them, and refuses (``ModelError``) what it cannot reproduce.
"""
from __future__ import annotations

import functools
import itertools
import re
import sys
import unicodedata
import warnings


class ModelError(RuntimeError):
    """The service model cannot be used as it is (a missing operation, a pattern Python cannot run)."""


# Java's "." stops at every line terminator, Python's only at "\n".
_JAVA_DOT = "[^\\n\\r\\u0085\\u2028\\u2029]"


@functools.cache
def _unicode_categories() -> dict[str, tuple[tuple[int, int], ...]]:
    """Code point ranges per two-letter general category (one pass, ~0.2 s, once)."""
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    ranges: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for category, run in itertools.groupby(categories):
        length = sum(1 for _ in run)
        ranges.setdefault(category, []).append((start, start + length - 1))
        start += length
    return {name: tuple(spans) for name, spans in ranges.items()}


def _category_class_body(name: str, negated: bool) -> str:
    """The inside of a Python character class equal to Java's ``\\p{name}`` (``\\P`` when negated)."""
    table = _unicode_categories()
    names = [c for c in table if c == name or (len(name) == 1 and c[0] == name)]
    if not names:
        raise ModelError(f"unsupported Unicode property \\p{{{name}}} in a model pattern")
    spans = sorted(itertools.chain.from_iterable(table[c] for c in names))
    if negated:
        spans = _complement(spans)
    return "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in spans)


def _complement(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, next_free = [], 0
    for lo, hi in spans:
        if lo > next_free:
            out.append((next_free, lo - 1))
        next_free = max(next_free, hi + 1)
    if next_free <= sys.maxunicode:
        out.append((next_free, sys.maxunicode))
    return out


def translate_java_pattern(pattern: str) -> str:
    """Rewrite the Java-only parts of a model pattern for Python's ``re``.

    Handles ``\\p{X}``/``\\P{X}`` (Unicode general categories, unknown to
    ``re``) and ``.`` (Java excludes all line terminators). Everything else is
    shared syntax; Java-only constructs this does not know (``\\z``, ``\\Q``,
    ``&&``, nested classes) make ``compile_java_pattern`` fail rather than
    silently match something else.
    """
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and pattern[i + 1:i + 2] in ("p", "P"):
            negated = pattern[i + 1] == "P"
            name, i = _read_property_name(pattern, i + 2)
            body = _category_class_body(name, negated)
            out.append(body if in_class else f"[{body}]")
            continue
        if char == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            # A "]" right after "[" or "[^" is a literal in Python: copy it so it does not end the class.
            lead = re.match(r"\[\^?\]?", pattern[i:]).group()
            out.append(lead)
            i += len(lead)
            continue
        elif char == ".":
            char = _JAVA_DOT
        out.append(char)
        i += 1
    return "".join(out)


def _read_property_name(pattern: str, pos: int) -> tuple[str, int]:
    """Read the ``L`` of ``\\pL`` or the ``Lu`` of ``\\p{Lu}``/``\\p{IsLu}``; return it and the next index."""
    if pattern[pos:pos + 1] == "{":
        end = pattern.find("}", pos)
        if end < 0:
            raise ModelError(f"unterminated \\p{{...}} in model pattern {pattern!r}")
        name = pattern[pos + 1:end]
        return name.removeprefix("Is"), end + 1
    return pattern[pos:pos + 1], pos + 1


def compile_java_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a model pattern with Java's semantics, or raise ModelError.

    ``re.ASCII`` because Java's ``\\d``, ``\\w`` and ``\\s`` are ASCII-only by
    default; warnings are errors because Python only *warns* about syntax that
    means something else in Java (``[a&&b]``, nested ``[[...]]``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return re.compile(translate_java_pattern(pattern), re.ASCII)
    except (re.error, FutureWarning, DeprecationWarning) as exc:
        raise ModelError(f"model pattern {pattern!r} cannot be compiled for Python: {exc}") from exc
