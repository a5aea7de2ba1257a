"""Tokens of Mixer's expression language: Go's lexical rules, restricted to what Mixer uses.

Istio parses Mixer expressions with Go's expression parser, so literals are Go's: decimal
integers and floats, double-quoted strings with Go escapes (`\\n`, `\\x41`, `\\u00e9`, ...)
and back-quoted raw strings. Operators Mixer never gives a meaning to (`*`, `/`, `%`, `&`,
`^`, ...) are rejected here with their position instead of failing later. A name may start
with `$` (`$out.source_pod_name`): attribute bindings read an attribute generator's outputs
so, and only their vocabulary has such names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshconfig.policy.expr.errors import ParseError

# Longest first, so "||" wins over "|" and "==" over nothing.
OPERATORS = ("||", "&&", "==", "!=", "<=", ">=", "<", ">", "|", "!", "+", "-")
PUNCTUATION = "()[],."
_GO_ONLY_OPERATORS = "*/%&^=:;{}"
_SPACE = re.compile(r"[ \t\r\n]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "ident", "int", "float", "string", "op", "punct", "eof"
    value: str | int | float
    offset: int
    text: str  # as written


def tokenize(text: str) -> list[Token]:
    """Every token of `text`, ending with an "eof" token; ParseError at the first bad one."""
    tokens: list[Token] = []
    pos = 0
    end = len(text)
    while True:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
        if pos >= end:
            tokens.append(Token("eof", "", end, ""))
            return tokens
        char = text[pos]
        if char == '"':
            value, stop = _quoted(text, pos)
            tokens.append(Token("string", value, pos, text[pos:stop]))
        elif char == "`":
            stop = text.find("`", pos + 1)
            if stop < 0:
                raise ParseError("raw string literal not terminated", text, pos)
            stop += 1
            tokens.append(Token("string", text[pos + 1 : stop - 1], pos, text[pos:stop]))
        elif char.isdigit() or (char == "." and pos + 1 < end and text[pos + 1].isdigit()):
            number = _NUMBER.match(text, pos)
            assert number is not None  # a digit, or a dot before one, always starts a number
            stop = number.end()
            written = text[pos:stop]
            if number.group(2) or "." in written:
                tokens.append(Token("float", float(written), pos, written))
            else:
                tokens.append(Token("int", int(written), pos, written))
        elif char.isalpha() or char == "_":
            ident = _IDENT.match(text, pos)
            assert ident is not None
            stop = ident.end()
            tokens.append(Token("ident", ident.group(), pos, ident.group()))
        elif char == "$":  # `$out`: an attribute generator's output, in attribute bindings
            ident = _IDENT.match(text, pos + 1)
            if ident is None:
                raise ParseError("'$' must start a name such as $out", text, pos)
            stop = ident.end()
            tokens.append(Token("ident", text[pos:stop], pos, text[pos:stop]))
        elif char in PUNCTUATION:
            stop = pos + 1
            tokens.append(Token("punct", char, pos, char))
        else:
            operator = next((op for op in OPERATORS if text.startswith(op, pos)), None)
            if operator is None:
                if char == "'":
                    raise ParseError("strings are written in double quotes", text, pos)
                if char in _GO_ONLY_OPERATORS:
                    raise ParseError(f"operator {char!r} is not supported", text, pos)
                raise ParseError(f"unexpected character {char!r}", text, pos)
            stop = pos + len(operator)
            tokens.append(Token("op", operator, pos, operator))
        pos = stop


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The value of the double-quoted string at `start` and the offset just past it."""
    out: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\n":
            break
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        escape = text[pos + 1 : pos + 2]
        if escape in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[escape])
            pos += 2
        elif escape in _HEX_ESCAPES:
            digits = text[pos + 2 : pos + 2 + _HEX_ESCAPES[escape]]
            if len(digits) != _HEX_ESCAPES[escape] or not all(
                d in "0123456789abcdefABCDEF" for d in digits
            ):
                raise ParseError(f"invalid \\{escape} escape in string", text, pos)
            out.append(chr(int(digits, 16)))
            pos += 2 + len(digits)
        elif escape.isdigit():
            digits = text[pos + 1 : pos + 4]
            if len(digits) != 3 or not all(d in "01234567" for d in digits):
                raise ParseError("invalid octal escape in string", text, pos)
            out.append(chr(int(digits, 8)))
            pos += 4
        else:
            raise ParseError(f"unknown escape sequence \\{escape}", text, pos)
    raise ParseError("string literal not terminated", text, start)
