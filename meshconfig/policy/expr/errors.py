"""Errors of the expression language, each pointing at a place in the expression's text.

Syntax errors (`ParseError`) and type errors (`TypeCheckError`) are found once, when config is
compiled; `EvaluationError` happens per request (an attribute the expression needs is absent,
`ip()` of text that is not an address, ...). All are `ExpressionError`s carrying the message,
the expression text and the offset, and say line and column in their text.
"""

from __future__ import annotations


class ExpressionError(ValueError):
    """A problem with expression `text` at character `offset` (0-based)."""

    def __init__(self, message: str, text: str, offset: int) -> None:
        self.message = message
        self.text = text
        self.offset = offset
        super().__init__(f"{self.position}: {message} (in {text!r})")

    @property
    def line(self) -> int:
        """1-based line of the offset."""
        return self.text.count("\n", 0, self.offset) + 1

    @property
    def column(self) -> int:
        """1-based column of the offset within its line."""
        return self.offset - (self.text.rfind("\n", 0, self.offset) + 1) + 1

    @property
    def position(self) -> str:
        return f"line {self.line}, column {self.column}"


class ParseError(ExpressionError):
    """The text is not a well-formed expression."""


class TypeCheckError(ExpressionError):
    """The expression is well formed but wrong for the vocabulary or the expected type."""


class EvaluationError(ExpressionError):
    """Evaluating against one bag failed (a required attribute is absent, a bad argument...)."""
