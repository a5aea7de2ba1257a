"""Mixer's expression language (Istio's CEXL): parse, type-check and compile, once per config.

`compile_expression(text, vocabulary, expected)` returns a `CompiledExpression` whose
`evaluate(bag)` runs the closures built at compile time. Errors name their place in the text:
`ParseError` and `TypeCheckError` when compiling, `EvaluationError` when evaluating; all are
`ExpressionError`s. The language: literals (strings in double quotes or back quotes, integers,
floats, true/false), attributes (`source.labels`), indexing (`request.headers["x-user"]`),
`== != < <= > >= && || ! + -`, the default operator `a | b` and the builtins listed in
`meshconfig.policy.expr.functions`, with `conditional(cond, a, b)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshconfig.policy.attributes import ISTIO_VOCABULARY, ValueType
from meshconfig.policy.expr.checker import check
from meshconfig.policy.expr.compiler import Evaluator, compile_checked
from meshconfig.policy.expr.errors import (
    EvaluationError,
    ExpressionError,
    ParseError,
    TypeCheckError,
)
from meshconfig.policy.expr.nodes import attribute_names
from meshconfig.policy.expr.parser import parse


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    """An expression ready to evaluate. `evaluate(bag)` returns a Python value of `type`.

    `attributes` are the attribute names the expression can read (whether it does depends on
    the request: `a | b` reads `b` only when `a` is absent).
    """

    text: str
    type: ValueType
    attributes: frozenset[str]
    evaluate: Evaluator


def compile_expression(
    text: str,
    vocabulary: Mapping[str, ValueType] = ISTIO_VOCABULARY,
    expected: ValueType | frozenset[ValueType] | None = None,
) -> CompiledExpression:
    """Parse, type-check and compile `text`; with `expected`, its type must be (one of) that.

    Raises ParseError or TypeCheckError, each with the offset (and line/column) of the problem.
    """
    root = parse(text)
    checked = check(root, text, vocabulary, expected)
    return CompiledExpression(
        text, checked.type, frozenset(attribute_names(root)), compile_checked(checked, text)
    )


def referenced_names(text: str) -> frozenset[str]:
    """The attribute names `text` mentions, without type checking; ParseError if malformed."""
    return frozenset(attribute_names(parse(text)))


__all__ = [
    "CompiledExpression",
    "EvaluationError",
    "ExpressionError",
    "ParseError",
    "TypeCheckError",
    "compile_expression",
    "referenced_names",
]
