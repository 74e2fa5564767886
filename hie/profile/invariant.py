"""The FHIRPath subset that hie's profile invariants are written in, compiled to closures.

Supported (FHIRPath N1, as used by FHIR R4 ElementDefinition.constraint.expression):

    expr      := or-expr ['implies' or-expr]
    or-expr   := and-expr (('or' | 'xor') and-expr)*
    and-expr  := term ('and' term)*
    term      := ( '(' expr ')' | path '.' function ) ('.not()')*
    path      := name ('.' name | '.where(' expr ')')*
    function  := 'exists()' | 'empty()' | "startsWith('text')" | "matches('regex')"

A name that is not a JSON key also matches a choice element, as FHIRPath does: ``value``
finds ``valueQuantity``. ``startsWith`` and ``matches`` hold when every string they are
applied to satisfies them (an empty collection satisfies them: cardinality is the
differential's job); ``matches`` is a full match. Anything outside this grammar is a
ProfileError at load, so a profile cannot carry a constraint that is silently not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hie.profile.errors import ProfileError

Predicate = Callable[[Any], bool]
Collection = Callable[[Any], list[Any]]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<sym>[().]))"
)
_UNSEEN: Any = object()
_STRING_ESCAPES = {"'": "'", "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r"}


@dataclass(frozen=True)
class Invariant:
    """A compiled constraint: ``holds(element)``; ``focus`` is the child element the
    expression is about when every top-level term starts from the same one
    (``identifier.empty() or identifier.where(...).exists()`` → ``identifier``), so an
    issue can point at it rather than at the whole element."""

    key: str
    expression: str
    holds: Predicate
    focus: str | None


def compile_invariant(key: str, expression: str) -> Invariant:
    tokens = _tokenize(key, expression)
    parser = _Parser(key, expression, tokens)
    holds = parser.expr()
    if parser.pos != len(tokens):
        raise parser.error("unexpected text after the expression")
    focuses = set(parser.focuses)
    focus = focuses.pop() if len(focuses) == 1 else None
    return Invariant(key, expression, holds, focus)


def _tokenize(key: str, text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ProfileError(
                f"constraint {key}: cannot read {text[pos:]!r} in {text!r} "
                "(hie supports a FHIRPath subset; see hie/profile/invariant.py)"
            )
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, key: str, expression: str, tokens: list[tuple[str, str]]):
        self.key, self.expression, self.tokens = key, expression, tokens
        self.pos = 0
        self.depth = 0  # inside parentheses or where(): terms there do not set the focus
        self.focuses: list[str | None] = []

    def error(self, why: str) -> ProfileError:
        return ProfileError(
            f"constraint {self.key}: {why} in {self.expression!r} "
            "(hie supports a FHIRPath subset; see hie/profile/invariant.py)"
        )

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        token = self.peek()
        if (
            token is None
            or (value is not None and token[1] != value)
            or (kind is not None and token[0] != kind)
        ):
            raise self.error(f"expected {value or kind}")
        self.pos += 1
        return token[1]

    def at_word(self, word: str) -> bool:
        return self.peek() == ("name", word)

    def expr(self) -> Predicate:
        left = self.or_expr()
        if self.at_word("implies"):
            self.take()
            right = self.or_expr()
            return lambda x: (not left(x)) or right(x)
        return left

    def or_expr(self) -> Predicate:
        result = self.and_expr()
        while self.at_word("or") or self.at_word("xor"):
            op = self.take()
            a, b = result, self.and_expr()
            result = _or(a, b) if op == "or" else _xor(a, b)
        return result

    def and_expr(self) -> Predicate:
        result = self.term()
        while self.at_word("and"):
            self.take()
            result = _and(result, self.term())
        return result

    def term(self) -> Predicate:
        if self.peek() == ("sym", "("):
            self.take("(")
            self.depth += 1
            inner = self.expr()
            self.depth -= 1
            self.take(")")
            if self.depth == 0:
                self.focuses.append(None)  # a parenthesised expression has no single focus
            result = inner
        else:
            result = self.path_call()
        while self.peek() == ("sym", ".") and self.peek(1) == ("name", "not"):
            self.take(".")
            self.take("not")
            self.take("(")
            self.take(")")
            result = _not(result)
        return result

    def path_call(self) -> Predicate:
        steps: list[Collection] = []
        first = self.take(kind="name")
        names = [first]
        steps.append(_child(first))
        while True:
            self.take(".")
            name = self.take(kind="name")
            if self.peek() == ("sym", "(") and name != "where":
                break
            if name == "where":
                self.take("(")
                self.depth += 1
                condition = self.expr()
                self.depth -= 1
                self.take(")")
                steps.append(_where(condition))
            else:
                names.append(name)
                steps.append(_child(name))
        if self.depth == 0:
            self.focuses.append(names[0])
        self.take("(")
        argument = None
        token = self.peek()
        if token is not None and token[0] == "str":
            argument = _unquote(self.take(kind="str"))
        self.take(")")
        return _function(name, argument, _pipeline(steps), self)


def _function(name: str, argument: str | None, items: Collection, parser: _Parser) -> Predicate:
    if name == "exists" and argument is None:
        return lambda x: bool(items(x))
    if name == "empty" and argument is None:
        return lambda x: not items(x)
    if name == "startsWith" and argument is not None:
        prefix = argument
        return lambda x: all(isinstance(v, str) and v.startswith(prefix) for v in items(x))
    if name == "matches" and argument is not None:
        try:
            pattern = re.compile(argument)
        except re.error as exc:
            raise parser.error(f"bad regex {argument!r}: {exc}") from exc
        return lambda x: all(isinstance(v, str) and pattern.fullmatch(v) for v in items(x))
    raise parser.error(f"unsupported function {name}()")


_CHOICE_MEMO = 1024  # distinct key sequences remembered per step (resources share shapes)


def _child(name: str) -> Callable[[list[Any]], list[Any]]:
    cut = len(name)
    # FHIRPath resolves a choice element by its stem (value → valueQuantity): the first key
    # that is the stem plus a type name. Which key that is depends only on the object's keys
    # in order, and the objects of one kind share a few such sequences, so the answer is
    # remembered per sequence instead of scanning every key at every evaluation.
    choice_of: dict[tuple[str, ...], str | None] = {}

    def choice_key(item: dict[str, Any]) -> str | None:
        keys = tuple(item)
        found = choice_of.get(keys, _UNSEEN)
        if found is _UNSEEN:
            found = next(
                (k for k in keys if len(k) > cut and k.startswith(name) and k[cut].isupper()),
                None,
            )
            if len(choice_of) >= _CHOICE_MEMO:
                choice_of.clear()
            choice_of[keys] = found
        return found

    def step(items: list[Any]) -> list[Any]:
        out: list[Any] = []
        for item in items:
            if not isinstance(item, dict):
                continue
            value = item.get(name)
            if value is None:
                key = choice_key(item)
                if key is not None:
                    value = item[key]
            if value is None:
                continue
            if isinstance(value, list):
                out.extend(v for v in value if v is not None)
            else:
                out.append(value)
        return out

    return step


def _where(condition: Predicate) -> Callable[[list[Any]], list[Any]]:
    return lambda items: [item for item in items if condition(item)]


def _pipeline(steps: list[Callable[[list[Any]], list[Any]]]) -> Collection:
    def run(context: Any) -> list[Any]:
        items = [context]
        for step in steps:
            items = step(items)
            if not items:
                break
        return items

    return run


def _or(a: Predicate, b: Predicate) -> Predicate:
    return lambda x: a(x) or b(x)


def _xor(a: Predicate, b: Predicate) -> Predicate:
    return lambda x: a(x) != b(x)


def _and(a: Predicate, b: Predicate) -> Predicate:
    return lambda x: a(x) and b(x)


def _not(a: Predicate) -> Predicate:
    return lambda x: not a(x)


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _STRING_ESCAPES.get(m.group(1), m.group(1)), body)
