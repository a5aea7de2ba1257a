"""Parsing Mixer expressions into a syntax tree, with Go's operator precedence.

Precedence, loosest first, as in Go: `||`, then `&&`, then the comparisons `== != < <= > >=`,
then `+` and Mixer's default operator `|` (so `a | "x" == "y"` compares the defaulted value),
all left-associative; then the unary `!` and `-`; then postfix indexing `a["k"]` and method
calls `a.startsWith("x")`. A dotted chain of names is one attribute; when a call follows it,
the last name is a method of the attribute before it (`request.path.startsWith("/api")`),
or a function when the chain is a single name (`ip("10.0.0.1")`). `true` and `false` are
boolean literals in any letter case, as Istio reads them.
"""

from __future__ import annotations

from meshconfig.policy.expr.errors import ParseError
from meshconfig.policy.expr.lexer import Token, tokenize
from meshconfig.policy.expr.nodes import Attribute, Binary, Call, Index, Literal, Node, Unary

# Binary operator -> binding power; higher binds tighter.
_BINARY = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "+": 4,
    "|": 4,
}


def parse(text: str) -> Node:
    """The syntax tree of `text`; ParseError (with the offset) if it is not an expression."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def advance(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, message: str, token: Token | None = None) -> ParseError:
        return ParseError(message, self.text, (token or self.token).offset)

    def expect(self, punct: str) -> Token:
        if self.token.kind != "punct" or self.token.value != punct:
            raise self.error(f"expected {punct!r}, found {self._describe(self.token)}")
        return self.advance()

    @staticmethod
    def _describe(token: Token) -> str:
        return "end of expression" if token.kind == "eof" else repr(token.text)

    def parse(self) -> Node:
        if self.token.kind == "eof":
            raise self.error("empty expression")
        node = self.binary(0)
        if self.token.kind != "eof":
            raise self.error(f"unexpected {self._describe(self.token)} after the expression")
        return node

    def binary(self, min_power: int) -> Node:
        left = self.unary()
        if self.token.kind == "op" and self.token.value not in _BINARY:
            raise self.error(f"{self.token.value!r} is not a binary operator of Mixer expressions")
        while self.token.kind == "op" and _BINARY.get(str(self.token.value), 0) > min_power:
            operator = self.advance()
            op = str(operator.value)
            right = self.binary(_BINARY[op])
            left = Binary(operator.offset, op, left, right)
        return left

    def unary(self) -> Node:
        token = self.token
        if token.kind == "op" and token.value in ("!", "-"):
            self.advance()
            operand = self.unary()
            if token.value == "-" and _is_number(operand):
                assert isinstance(operand, Literal) and not isinstance(operand.value, str)
                return Literal(token.offset, -operand.value, "-" + operand.text)
            return Unary(token.offset, str(token.value), operand)
        return self.postfix(self.primary())

    def primary(self) -> Node:
        token = self.advance()
        if token.kind in ("int", "float", "string"):
            return Literal(token.offset, token.value, token.text)
        if token.kind == "ident":
            return self.name(token)
        if token.kind == "punct" and token.value == "(":
            node = self.binary(0)
            self.expect(")")
            return node
        raise self.error(f"expected an operand, found {self._describe(token)}", token)

    def name(self, first: Token) -> Node:
        """A dotted name: an attribute, a boolean, a function call or a method call."""
        lowered = str(first.value).lower()
        parts = [first]
        while self.token.kind == "punct" and self.token.value == ".":
            self.advance()
            part = self.advance()
            if part.kind != "ident":
                raise self.error(f"expected a name after '.', found {self._describe(part)}", part)
            parts.append(part)
        names = [str(part.value) for part in parts]
        if self.token.kind == "punct" and self.token.value == "(":
            args = self.arguments()
            if len(parts) == 1:
                return Call(first.offset, names[0], args)
            target = Attribute(first.offset, ".".join(names[:-1]))
            return Call(parts[-1].offset, names[-1], args, target)
        if len(parts) == 1 and lowered in ("true", "false"):
            return Literal(first.offset, lowered == "true", first.text)
        return Attribute(first.offset, ".".join(names))

    def arguments(self) -> tuple[Node, ...]:
        self.expect("(")
        args: list[Node] = []
        if not (self.token.kind == "punct" and self.token.value == ")"):
            args.append(self.binary(0))
            while self.token.kind == "punct" and self.token.value == ",":
                self.advance()
                args.append(self.binary(0))
        self.expect(")")
        return tuple(args)

    def postfix(self, node: Node) -> Node:
        """Indexing and method calls after an operand: `a["k"]`, `"re".matches(x)`, `(a).f()`."""
        while self.token.kind == "punct" and self.token.value in ("[", "."):
            opener = self.advance()
            if opener.value == "[":
                key = self.binary(0)
                self.expect("]")
                node = Index(opener.offset, node, key)
                continue
            method = self.advance()
            if method.kind != "ident":
                raise self.error(f"expected a method name, found {self._describe(method)}", method)
            if not (self.token.kind == "punct" and self.token.value == "("):
                raise self.error(
                    f"'.{method.value}' must be a method call: only attribute names have dots",
                    method,
                )
            node = Call(method.offset, str(method.value), self.arguments(), node)
        return node


def _is_number(node: Node) -> bool:
    """An int or float literal (a negative one is folded, as Go folds constants)."""
    return isinstance(node, Literal) and type(node.value) in (int, float)
