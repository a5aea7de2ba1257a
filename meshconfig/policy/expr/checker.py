"""Type checking: every node of an expression gets a ValueType, or TypeCheckError says where not.

The rules are Istio's: attributes take their type from the vocabulary; operands of `==`, `!=`,
`|`, the comparisons, `+` and the two branches of `conditional` must have one type (`1 == 1.0`
is an error, as in Istio); `&&`, `||`, `!` and a rule's match want BOOL; indexing wants a
STRING_MAP and a STRING key. A string literal that reads as a duration ("10s", "1m30s") is a
DURATION where a DURATION is wanted (`response.duration | "0ms"`) and a STRING elsewhere:
Istio makes it a DURATION everywhere, which only rejects more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshconfig.policy.attributes import ValueType
from meshconfig.policy.expr.errors import TypeCheckError
from meshconfig.policy.expr.functions import ADDABLE, BUILTINS, ORDERED, Overload, is_duration_text
from meshconfig.policy.expr.nodes import Attribute, Binary, Call, Index, Literal, Node, Unary

BOOL = ValueType.BOOL
CONDITIONALS = ("conditional", "conditionalString")


@dataclass(frozen=True, slots=True)
class Checked:
    """The type of every node, and the overload each builtin call resolved to."""

    root: Node
    type: ValueType
    types: Mapping[Node, ValueType]
    overloads: Mapping[Call, Overload]


def check(
    root: Node,
    text: str,
    vocabulary: Mapping[str, ValueType],
    expected: ValueType | frozenset[ValueType] | None = None,
) -> Checked:
    """Type-check `root` (parsed from `text`); with `expected`, its type must be (one of) that."""
    checker = _Checker(text, vocabulary)
    wanted = {expected} if isinstance(expected, ValueType) else expected
    hint = next(iter(wanted)) if wanted is not None and len(wanted) == 1 else None
    found = checker.check(root, hint)
    if wanted is not None and found not in wanted:
        names = " or ".join(sorted(t.value for t in wanted))
        raise TypeCheckError(f"expression has type {found.value}, expected {names}", text, 0)
    return Checked(root, found, checker.types, checker.overloads)


class _Checker:
    def __init__(self, text: str, vocabulary: Mapping[str, ValueType]) -> None:
        self.text = text
        self.vocabulary = vocabulary
        self.types: dict[Node, ValueType] = {}
        self.overloads: dict[Call, Overload] = {}

    def error(self, message: str, node: Node) -> TypeCheckError:
        return TypeCheckError(message, self.text, node.offset)

    def check(self, node: Node, hint: ValueType | None = None) -> ValueType:
        """The type of `node`; `hint` (a wanted type) only decides duration-like literals."""
        found = self._type(node, hint)
        self.types[node] = found
        return found

    def _type(self, node: Node, hint: ValueType | None) -> ValueType:
        match node:
            case Literal(value=bool()):
                return BOOL
            case Literal(value=int()):
                return ValueType.INT64
            case Literal(value=float()):
                return ValueType.DOUBLE
            case Literal(value=str(value)):
                if hint is ValueType.DURATION and is_duration_text(value):
                    return ValueType.DURATION
                return ValueType.STRING
            case Attribute(name=name):
                if name not in self.vocabulary:
                    raise self.error(f"unknown attribute {name!r}", node)
                return self.vocabulary[name]
            case Index(target=target, key=key):
                return self._index(node, target, key)
            case Unary(op=op, operand=operand):
                return self._unary(node, op, operand)
            case Binary(op=op, left=left, right=right):
                return self._binary(node, op, left, right, hint)
            case Call():
                return self._call(node, hint)
        raise self.error(f"unexpected syntax {type(node).__name__}", node)

    def _index(self, node: Node, target: Node, key: Node) -> ValueType:
        target_type = self.check(target)
        if target_type is not ValueType.STRING_MAP:
            raise self.error(
                f"cannot index a {target_type.value}: only string maps "
                "(like request.headers) can be indexed",
                node,
            )
        key_type = self.check(key, ValueType.STRING)
        if key_type is not ValueType.STRING:
            raise self.error(f"a map key must be a STRING, not {key_type.value}", key)
        return ValueType.STRING

    def _unary(self, node: Node, op: str, operand: Node) -> ValueType:
        found = self.check(operand)
        if op == "!" and found is BOOL:
            return BOOL
        numeric = (ValueType.INT64, ValueType.DOUBLE, ValueType.DURATION)
        if op == "-" and found in numeric:
            return found
        raise self.error(f"{op!r} does not apply to {found.value}", node)

    def _binary(
        self, node: Node, op: str, left: Node, right: Node, hint: ValueType | None
    ) -> ValueType:
        if op in ("&&", "||"):
            for operand in (left, right):
                found = self.check(operand, BOOL)
                if found is not BOOL:
                    raise self.error(f"{op!r} needs BOOL operands, not {found.value}", operand)
            return BOOL
        found = self._same(node, op, left, right, hint if op == "|" else None)
        if op in ("==", "!="):
            return BOOL
        if op in ("<", "<=", ">", ">="):
            if found not in ORDERED:
                raise self.error(f"{op!r} cannot order {found.value} values", node)
            return BOOL
        if op == "+" and found not in ADDABLE:
            raise self.error(f"'+' cannot add {found.value} values", node)
        return found

    def _same(
        self, node: Node, what: str, left: Node, right: Node, hint: ValueType | None
    ) -> ValueType:
        """The one type of two operands; a duration-like literal takes the other's type."""
        if _duration_like(left) and not _duration_like(right):
            right_type = self.check(right, hint)
            left_type = self.check(left, right_type)
        else:
            left_type = self.check(left, hint)
            right_type = self.check(right, left_type)
        if left_type is not right_type:
            raise self.error(
                f"{what!r} needs operands of one type, got {left_type.value} "
                f"and {right_type.value}",
                node,
            )
        return left_type

    def _call(self, node: Call, hint: ValueType | None) -> ValueType:
        if node.name in CONDITIONALS and node.target is None:
            return self._conditional(node, hint)
        builtin = BUILTINS.get((node.name, node.target is not None))
        if builtin is None:
            raise self.error(self._unknown_function(node), node)
        args = (node.target, *node.args) if node.target is not None else node.args
        arities = {len(o.params) for o in builtin.overloads}
        if len(args) not in arities:
            wanted = " or ".join(str(n - builtin.method) for n in sorted(arities))
            raise self.error(f"{node.name} takes {wanted} argument(s), got {len(node.args)}", node)
        types = tuple(
            self.check(arg, _common_param(builtin.overloads, index))
            for index, arg in enumerate(args)
        )
        for overload in builtin.overloads:
            if overload.params == types:
                self.overloads[node] = overload
                return overload.result
        got = ", ".join(t.value for t in types)
        accepted = "; ".join(
            "(" + ", ".join(t.value for t in o.params) + ")" for o in builtin.overloads
        )
        raise self.error(f"{node.name} cannot take ({got}): it takes {accepted}", node)

    def _conditional(self, node: Call, hint: ValueType | None) -> ValueType:
        if len(node.args) != 3:
            raise self.error(f"{node.name} takes 3 arguments, got {len(node.args)}", node)
        condition, then, otherwise = node.args
        found = self.check(condition, BOOL)
        if found is not BOOL:
            raise self.error(f"the condition must be BOOL, not {found.value}", condition)
        if node.name == "conditionalString":
            hint = ValueType.STRING
        result = self._same(node, node.name, then, otherwise, hint)
        if node.name == "conditionalString" and result is not ValueType.STRING:
            raise self.error(f"conditionalString needs STRING values, not {result.value}", node)
        return result

    @staticmethod
    def _unknown_function(node: Call) -> str:
        if (node.name, node.target is None) in BUILTINS:
            if node.target is None:
                return f"{node.name} is a method: write x.{node.name}(...)"
            return f"{node.name} is a function: write {node.name}(x, ...)"
        return f"unknown function {node.name!r}"


def _duration_like(node: Node) -> bool:
    return (
        isinstance(node, Literal) and isinstance(node.value, str) and is_duration_text(node.value)
    )


def _common_param(overloads: tuple[Overload, ...], index: int) -> ValueType | None:
    """The type every overload wants at `index`, if they agree (a hint for literals)."""
    found = {o.params[index] for o in overloads if index < len(o.params)}
    return found.pop() if len(found) == 1 else None
