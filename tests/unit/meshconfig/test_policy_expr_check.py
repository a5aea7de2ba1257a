"""Type checking against the vocabulary: result types, and type errors that say where."""

from __future__ import annotations

import pytest

from meshconfig.policy.attributes import ISTIO_VOCABULARY, ValueType
from meshconfig.policy.expr import TypeCheckError, compile_expression

T = ValueType


@pytest.mark.parametrize(
    ("text", "value_type"),
    [
        ('"x"', T.STRING),
        ("1", T.INT64),
        ("1.5", T.DOUBLE),
        ("true", T.BOOL),
        ("source.ip", T.IP_ADDRESS),
        ('source.labels["app"]', T.STRING),
        ('request.headers[source.labels["k"]]', T.STRING),
        ("request.size | 200", T.INT64),
        ('response.duration | "0ms"', T.DURATION),
        ('"0ms" | response.duration', T.DURATION),
        ('source.name | "10s"', T.STRING),
        ("request.headers | emptyStringMap()", T.STRING_MAP),
        ("request.host + request.path", T.STRING),
        ("request.size + 1", T.INT64),
        ("1.5 + 2.5", T.DOUBLE),
        ("response.code >= 500", T.BOOL),
        ("request.time < response.time", T.BOOL),
        ('response.duration > "1s"', T.BOOL),
        ('"a" < "b"', T.BOOL),
        ("-request.size", T.INT64),
        ("-response.duration", T.DURATION),
        ("!connection.mtls", T.BOOL),
        ('conditional(connection.mtls, "a", "b")', T.STRING),
        ('conditional(connection.mtls, response.duration, "1s")', T.DURATION),
        ('conditionalString(connection.mtls | false, "mutual_tls", "none")', T.STRING),
        ('ip("1.2.3.4")', T.IP_ADDRESS),
        ('ip_equal(source.ip, ip("1.2.3.4"))', T.BOOL),
        ('timestamp("2015-01-02T15:04:35Z")', T.TIMESTAMP),
        ('duration("10s")', T.DURATION),
        ('dnsName("istio.io")', T.DNS_NAME),
        ('email("a@istio.io")', T.EMAIL_ADDRESS),
        ('uri("http://istio.io")', T.URI),
        ('match(request.path, "/api*")', T.BOOL),
        ('"^/api".matches(request.path)', T.BOOL),
        ('request.path.startsWith("/")', T.BOOL),
        ('request.path.endsWith("/")', T.BOOL),
        ("emptyStringMap()", T.STRING_MAP),
        ('toLower("A")', T.STRING),
        ('size("A")', T.INT64),
        ("size(request.headers)", T.INT64),
        ('reverse("ab")', T.STRING),
        ('"ab".reverse()', T.STRING),
        ("string(response.code)", T.STRING),
        ("string(source.ip)", T.STRING),
        ('dnsName("a.io") == dnsName("A.IO.")', T.BOOL),
    ],
)
def test_result_types(text: str, value_type: ValueType) -> None:
    assert compile_expression(text).type is value_type


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("source.foo", "unknown attribute 'source.foo'", 1),
        ('1 == "1"', "'==' needs operands of one type, got INT64 and STRING", 3),
        ("1 == 1.0", "'==' needs operands of one type, got INT64 and DOUBLE", 3),
        ('request.size | "x"', "'|' needs operands of one type, got INT64 and STRING", 14),
        ("connection.mtls < true", "'<' cannot order BOOL values", 17),
        ("source.labels < source.labels", "'<' cannot order STRING_MAP values", 15),
        ("source.ip + source.ip", "'+' cannot add IP_ADDRESS values", 11),
        ('source.name["x"]', "cannot index a STRING: only string maps", 12),
        ("source.labels[1]", "a map key must be a STRING, not INT64", 15),
        ("source.name && true", "'&&' needs BOOL operands, not STRING", 1),
        ("true || 1", "'||' needs BOOL operands, not INT64", 9),
        ("!source.name", "'!' does not apply to STRING", 1),
        ('-"x"', "'-' does not apply to STRING", 1),
        ('nope("x")', "unknown function 'nope'", 1),
        ('startsWith("a", "b")', "startsWith is a method: write x.startsWith(...)", 1),
        ('matches("a", "b")', "matches is a method", 1),
        ('"x".ip()', "ip is a function: write ip(x, ...)", 5),
        ('ip("a", "b")', "ip takes 1 argument(s), got 2", 1),
        ('"a".startsWith()', "startsWith takes 1 argument(s), got 0", 5),
        ("ip(1)", "ip cannot take (INT64): it takes (STRING)", 1),
        ("size(1)", "size cannot take (INT64): it takes (STRING); (BYTES); (STRING_MAP)", 1),
        ("string(source.labels)", "string cannot take (STRING_MAP)", 1),
        ('conditional(1, "a", "b")', "the condition must be BOOL, not INT64", 13),
        ('conditional(true, "a", 1)', "'conditional' needs operands of one type", 1),
        ('conditional(true, "a")', "conditional takes 3 arguments, got 2", 1),
        ("conditionalString(true, 1, 2)", "conditionalString needs STRING values, not INT64", 1),
        ('ip("10.0.0.300")', "could not convert '10.0.0.300' to IP_ADDRESS", 1),
        ('timestamp("2015-01-02")', "could not convert '2015-01-02' to TIMESTAMP", 1),
        ('duration("10")', "could not convert '10' to DURATION", 1),
        ('email("Bob <bob@x.io>")', "to EMAIL_ADDRESS", 1),
        ('dnsName("a..b")', "to DNS_NAME", 1),
        ('uri("")', "could not convert an empty string to URI", 1),
        ('"(".matches(request.path)', "invalid regular expression '('", 5),
    ],
)
def test_type_errors_say_where(text: str, message: str, column: int) -> None:
    with pytest.raises(TypeCheckError) as caught:
        compile_expression(text)
    assert message in caught.value.message
    assert (caught.value.line, caught.value.column) == (1, column)


@pytest.mark.parametrize(
    ("text", "expected", "message"),
    [
        ("request.size", T.BOOL, "expression has type INT64, expected BOOL"),
        ('"10s"', T.STRING, None),
        ('"10s"', T.DURATION, None),
        ("source.ip", frozenset({T.STRING, T.IP_ADDRESS}), None),
        ("1", frozenset({T.STRING, T.BOOL}), "expected BOOL or STRING"),
    ],
)
def test_expected_type(
    text: str, expected: ValueType | frozenset[ValueType], message: str | None
) -> None:
    if message is None:
        compiled = compile_expression(text, expected=expected)
        assert compiled.type in (expected if isinstance(expected, frozenset) else {expected})
        return
    with pytest.raises(TypeCheckError, match=message):
        compile_expression(text, expected=expected)


def test_an_attribute_manifest_extends_the_vocabulary() -> None:
    vocabulary = ISTIO_VOCABULARY.extended({"my.score": T.DOUBLE})
    assert compile_expression("my.score > 0.5", vocabulary).type is T.BOOL
    with pytest.raises(TypeCheckError, match=r"unknown attribute 'my\.score'"):
        compile_expression("my.score > 0.5")


def test_compiled_expression_lists_its_attributes() -> None:
    compiled = compile_expression('(source.labels["app"] | destination.service.name) == "x"')
    assert compiled.attributes == {"source.labels", "destination.service.name"}
    assert compiled.text == '(source.labels["app"] | destination.service.name) == "x"'
