"""Parsing Mixer expressions: Go's literals and precedence, and syntax errors with positions."""

from __future__ import annotations

import pytest

from meshconfig.policy.expr import ParseError
from meshconfig.policy.expr.nodes import (
    Attribute,
    Binary,
    Call,
    Index,
    Literal,
    Node,
    Unary,
    attribute_names,
)
from meshconfig.policy.expr.parser import parse


def shape(node: Node) -> object:
    """A compact rendering of a tree, to compare parses."""
    match node:
        case Literal(value=value):
            return value
        case Attribute(name=name):
            return f"${name}"
        case Index(target=target, key=key):
            return ("[]", shape(target), shape(key))
        case Unary(op=op, operand=operand):
            return (op, shape(operand))
        case Binary(op=op, left=left, right=right):
            return (op, shape(left), shape(right))
        case Call(name=name, args=args, target=target):
            head = (shape(target),) if target is not None else ()
            return (f"{name}()", *head, *(shape(a) for a in args))
    raise AssertionError(node)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.b.c", "$a.b.c"),
        ('x["k"]', ("[]", "$x", "k")),
        ("1 == 1 && 2 == 2 || false", ("||", ("&&", ("==", 1, 1), ("==", 2, 2)), False)),
        ("a || b && c", ("||", "$a", ("&&", "$b", "$c"))),
        ('a | "x" == "y"', ("==", ("|", "$a", "x"), "y")),
        ("a | b | c", ("|", ("|", "$a", "$b"), "$c")),
        ('a + "x" | b', ("|", ("+", "$a", "x"), "$b")),
        ("(a || b) && c", ("&&", ("||", "$a", "$b"), "$c")),
        ("!a && b", ("&&", ("!", "$a"), "$b")),
        ('!a.startsWith("x")', ("!", ("startsWith()", "$a", "x"))),
        ('request.path.startsWith("/api")', ("startsWith()", "$request.path", "/api")),
        (
            '"svc.*".matches(destination.service.host)',
            ("matches()", "svc.*", "$destination.service.host"),
        ),
        ('x["k"].endsWith("z")', ("endsWith()", ("[]", "$x", "k"), "z")),
        ('(a | "b").reverse()', ("reverse()", ("|", "$a", "b"))),
        ('ip("1.2.3.4")', ("ip()", "1.2.3.4")),
        ("emptyStringMap()", ("emptyStringMap()",)),
        ("conditional(a, 1, 2)", ("conditional()", "$a", 1, 2)),
        ("TRUE != False", ("!=", True, False)),
        ("-5 < -1.5", ("<", -5, -1.5)),
        ("-a", ("-", "$a")),
        ("1e3 >= .5", (">=", 1000.0, 0.5)),
        ("a <= b", ("<=", "$a", "$b")),
        ("a > b", (">", "$a", "$b")),
    ],
)
def test_parse_shapes(text: str, expected: object) -> None:
    assert shape(parse(text)) == expected


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r'"a\"b"', 'a"b'),
        (r'"tab\there"', "tab\there"),
        (r'"\x41\u00e9\U0001F600\101"', "Aé😀A"),
        ("`raw \\n string`", "raw \\n string"),
        ('""', ""),
    ],
)
def test_string_literals(text: str, value: str) -> None:
    node = parse(text)
    assert isinstance(node, Literal) and node.value == value and node.text == text


def test_positions_are_recorded() -> None:
    node = parse('source.ip  ==\n  ip("10.0.0.1")')
    assert isinstance(node, Binary) and node.offset == 11
    assert isinstance(node.right, Call) and node.right.offset == 16
    method = parse('request.path.startsWith("/")')
    assert isinstance(method, Call) and method.offset == len("request.path.")


def test_attribute_names() -> None:
    node = parse('(a.b | c["k"]) == d.e.startsWith(f) && ip(g) == h')
    assert attribute_names(node) == {"a.b", "c", "d.e", "f", "g", "h"}


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("", "empty expression", 1, 1),
        ("a ==", "expected an operand, found end of expression", 1, 5),
        ("a b", "unexpected 'b' after the expression", 1, 3),
        ("a * b", "operator '*' is not supported", 1, 3),
        ("a = b", "operator '=' is not supported", 1, 3),
        ("a - b", "'-' is not a binary operator", 1, 3),
        ("a ! b", "'!' is not a binary operator", 1, 3),
        ("'x'", "strings are written in double quotes", 1, 1),
        ('"abc', "string literal not terminated", 1, 1),
        ('"a\nb"', "string literal not terminated", 1, 1),
        ("`abc", "raw string literal not terminated", 1, 1),
        (r'"\q"', "unknown escape sequence \\q", 1, 2),
        (r'"\x4"', "invalid \\x escape", 1, 2),
        (r'"\19"', "invalid octal escape", 1, 2),
        ('x["a"', "expected ']', found end of expression", 1, 6),
        ("f(a, b", "expected ')', found end of expression", 1, 7),
        ("(a", "expected ')'", 1, 3),
        ("a.", "expected a name after '.'", 1, 3),
        ("a.1", "unexpected '.1' after the expression", 1, 2),
        ('x["a"].b', "'.b' must be a method call", 1, 8),
        ('x["a"].("b")', "expected a method name", 1, 8),
        ("a &&\n  # b", "unexpected character '#'", 2, 3),
        ("a &&\n\n   )", "expected an operand, found ')'", 3, 4),
    ],
)
def test_syntax_errors_say_where(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(ParseError) as caught:
        parse(text)
    error = caught.value
    assert message in error.message
    assert (error.line, error.column) == (line, column)
    assert f"line {line}, column {column}: " in str(error) and repr(text) in str(error)
