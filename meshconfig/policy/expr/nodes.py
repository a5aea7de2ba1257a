"""The syntax tree of Mixer's expression language, as the parser builds it.

Nodes are immutable and compare by identity, so the type checker can key its results on them.
Every node keeps the offset of its first character (an operator node: its operator) for error
messages. Dotted names are one attribute (`source.labels` is not a field of `source`), as in
Istio, whose attribute namespace is flat.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    offset: int


@dataclass(frozen=True, slots=True, eq=False)
class Literal(Node):
    """A constant: str, int, float or bool. `text` is how it was written."""

    value: str | int | float | bool
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class Attribute(Node):
    name: str


@dataclass(frozen=True, slots=True, eq=False)
class Index(Node):
    """`target[key]`: a value of a string map."""

    target: Node
    key: Node


@dataclass(frozen=True, slots=True, eq=False)
class Call(Node):
    """`name(args)`, or `target.name(args)` when `target` is set (an instance method)."""

    name: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Unary(Node):
    op: str  # "!" or "-"
    operand: Node


@dataclass(frozen=True, slots=True, eq=False)
class Binary(Node):
    """A binary operator; `offset` is the operator's."""

    op: str  # "||" "&&" "==" "!=" "<" "<=" ">" ">=" "+" "|"
    left: Node
    right: Node


def attribute_names(node: Node) -> set[str]:
    """The names of every attribute `node` mentions."""
    match node:
        case Attribute(name=name):
            return {name}
        case Index(target=target, key=key):
            return attribute_names(target) | attribute_names(key)
        case Call(args=args, target=target):
            found = attribute_names(target) if target is not None else set()
            for arg in args:
                found |= attribute_names(arg)
            return found
        case Unary(operand=operand):
            return attribute_names(operand)
        case Binary(left=left, right=right):
            return attribute_names(left) | attribute_names(right)
    return set()
