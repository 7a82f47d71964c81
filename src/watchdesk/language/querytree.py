"""The tree a watchlist query parses into (query.parse_query builds it).

Every node is immutable and records the column it was written at, for error messages.
A `Term` holds normalised tokens (textnorm); matching is match.py's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .textnorm import spellings

MAX_JOIN_COMBINATIONS = 4  # joinable hyphens expanded in every combination up to this many
FIELDS = ("title", "text")


@dataclass(frozen=True, slots=True)
class Term:
    """A word, prefix or phrase: normalised `words` that must be adjacent in the text."""

    text: str  # as written, without quotes (e.g. "J-CODE", "nitazene*", "dark web")
    words: tuple[str, ...]
    joins: tuple[bool, ...] = ()  # joins[i]: words i and i+1 may also be written as one
    prefix: bool = False  # the last word is a prefix
    exact: tuple[str | None, ...] = ()  # per word: case-sensitive form, or None
    phrase: bool = False  # written in quotes
    column: int = field(default=1, compare=False)

    @property
    def key(self) -> tuple[object, ...]:
        """What the term matches; equal keys match the same text."""
        return (self.words, self.joins, self.prefix, self.exact)

    def variants(self) -> tuple[tuple[tuple[str, str | None], ...], ...]:
        """Every spelling: a tuple of (normalised token, case-sensitive form or None)."""
        return spellings(self.words, self.joins, self.exact, MAX_JOIN_COMBINATIONS)


@dataclass(frozen=True, slots=True)
class Regex:
    pattern: str  # Python syntax, applied to the original (not normalised) text
    column: int = field(default=1, compare=False)
    size: int = field(default=1, compare=False)  # with counted repetitions written out (query.py)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]
    column: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]
    column: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node
    column: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Near:
    """`left` and `right` within `distance` words, either order, in the same field."""

    left: Node
    right: Node
    distance: int
    column: int = field(default=1, compare=False)


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # "title" | "text"
    child: Node
    column: int = field(default=1, compare=False)


Node = Term | Regex | And | Or | Not | Near | Field


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, depth first."""
    yield node
    if isinstance(node, And | Or):
        for child in node.children:
            yield from walk(child)
    elif isinstance(node, Not | Field):
        yield from walk(node.child)
    elif isinstance(node, Near):
        yield from walk(node.left)
        yield from walk(node.right)


def unparse(node: Node) -> str:
    """A canonical, fully parenthesised spelling of the tree (for explanations and tests)."""
    if isinstance(node, Term):
        return f'"{node.text}"' if node.phrase else node.text
    if isinstance(node, Regex):
        return f"/{node.pattern}/"
    if isinstance(node, And | Or):
        op = " AND " if isinstance(node, And) else " OR "
        return "(" + op.join(unparse(c) for c in node.children) + ")"
    if isinstance(node, Not):
        return f"NOT {unparse(node.child)}"
    if isinstance(node, Near):
        return f"({unparse(node.left)} NEAR/{node.distance} {unparse(node.right)})"
    return f"{node.name}:{unparse(node.child)}"
