"""Evaluating compiled expressions: operators, `|` defaults, indexing, builtins, errors, and
which attributes an evaluation referenced."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from meshconfig.policy.attributes import AttributeBag, Reference
from meshconfig.policy.expr import EvaluationError, compile_expression

BAG = AttributeBag(
    {
        "source.ip": ipaddress.ip_address("10.57.1.2"),
        "destination.ip": ipaddress.ip_address("::ffff:10.57.1.2"),
        "source.labels": {"app": "reviews", "version": "v3"},
        "destination.labels": {"app": "ratings"},
        "request.headers": {"x-user": "john", "host": "Ratings.Default"},
        "request.path": "/ratings/0",
        "request.size": 120,
        "request.time": datetime(2020, 5, 1, 12, 0, tzinfo=UTC),
        "response.time": datetime(2020, 5, 1, 12, 0, 1),  # naive: read as UTC
        "response.code": 404,
        "response.duration": timedelta(milliseconds=250),
        "connection.mtls": True,
        "source.name": "not an ip",
        "source.owner": "(",
        "destination.service.host": "ratings.default.svc.cluster.local",
    }
)


def evaluate(text: str, bag: AttributeBag = BAG) -> Any:
    return compile_expression(text).evaluate(bag)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # literals and operators
        ('"x"', "x"),
        ("-3", -3),
        ("1 == 1", True),
        ("1 != 1", False),
        ('"a" == "a" && "b" == "c"', False),
        ('"a" == "b" || "b" == "b"', True),
        ("!connection.mtls", False),
        ("response.code >= 400 && response.code < 500", True),
        ("response.code > 404 || response.code <= 403", False),
        ("1.5 + 1.0", 2.5),
        ("request.size + 1", 121),
        ('request.path + "?q"', "/ratings/0?q"),
        ('"b" > "a"', True),
        ("-request.size", -120),
        ('response.duration < "1s"', True),
        ('response.duration == duration("250ms")', True),
        ("-response.duration", timedelta(milliseconds=-250)),
        ("request.time < response.time", True),
        ('request.time == timestamp("2020-05-01T14:00:00+02:00")', True),
        ('request.time >= timestamp("2020-05-01T12:00:00Z")', True),
        # typed equality
        ('source.ip == ip("10.57.1.2")', True),
        ("source.ip == destination.ip", True),
        ('source.ip != ip("10.57.1.3")', True),
        ('ip_equal(destination.ip, ip("10.57.1.2"))', True),
        ('dnsName("Istio.IO.") == dnsName("istio.io")', True),
        ('dnsName("istio.io") == dnsName("istio.com")', False),
        ('email("bob@Istio.io") == email("bob@istio.io")', True),
        ('email("Bob@istio.io") == email("bob@istio.io")', False),
        ('uri("HTTP://Istio.IO/a") == uri("http://istio.io/a")', True),
        ('uri("http://istio.io:80/a") == uri("http://istio.io/a")', False),
        ('uri("mailto:a@b") == uri("mailto:a@b")', True),
        # indexing and defaults
        ('source.labels["app"]', "reviews"),
        ('source.labels["nope"]', ""),
        ('source.labels["nope"] == ""', True),
        ('request.headers[source.labels["version"]]', ""),
        ('(source.labels["nope"] | "dflt")', "dflt"),
        ('source.labels["nope"] | source.labels["app"] | "x"', "reviews"),
        ('destination.labels["version"] | destination.service.name | "unknown"', "unknown"),
        ('(source.labels | emptyStringMap())["app"]', "reviews"),
        ('(destination.metadata | emptyStringMap())["x"]', ""),
        ('((destination.metadata | emptyStringMap())["x"] | "d")', "d"),
        ('(source.labels | emptyStringMap())["nope"] | "d"', "d"),
        ('request.headers[source.name | "x-user"]', ""),
        ('request.headers[source.principal | "x-user"]', "john"),
        ("response.code | 200", 404),
        ("request.total_size | 0", 0),
        ("context.reporter.kind | response.duration == response.duration", None),
        # builtins
        ('match(request.path, "/ratings*")', True),
        ('match(request.path, "*/0")', True),
        ('match(request.path, "/ratings")', False),
        ('match(request.path, "/ratings/0")', True),
        ('"^/rat.*/[0-9]+$".matches(request.path)', True),
        ('"ings".matches(request.path)', True),
        ('source.labels["app"].matches("^rev")', False),
        ('request.path.startsWith("/ratings")', True),
        ('request.path.endsWith("/1")', False),
        ('source.labels["app"].startsWith(source.labels["app"])', True),
        ('toLower(request.headers["host"])', "ratings.default"),
        ('size("admin")', 5),
        ('size("é")', 2),
        ("size(source.labels)", 2),
        ("size(emptyStringMap())", 0),
        ('reverse("abc")', "cba"),
        ('source.labels["app"].reverse()', "sweiver"),
        ("string(response.code)", "404"),
        ("string(1.5)", "1.5"),
        ("string(connection.mtls)", "true"),
        ("string(source.ip)", "10.57.1.2"),
        ("string(request.time)", "2020-05-01T12:00:00Z"),
        ("string(response.duration)", "250ms"),
        ('string(duration("1h30m"))', "1h30m0s"),
        ('string(duration("1.5s"))', "1.5s"),
        ('string(duration("0s"))', "0s"),
        ('string(duration("-90s"))', "-1m30s"),
        ('conditional(connection.mtls, "mutual_tls", "none")', "mutual_tls"),
        ('conditionalString(response.code == 200, "ok", "error")', "error"),
        ('conditional(context.reporter.kind | "inbound" == "outbound", 1, 2)', 2),
        ('ip("2001:db8::1")', ipaddress.ip_address("2001:db8::1")),
        ('email("a@istio.io")', "a@istio.io"),
        ('uri("http://istio.io")', "http://istio.io"),
        ('dnsName("bücher.de")', "bücher.de"),
        ("emptyStringMap()", {}),
    ],
)
def test_evaluates(text: str, value: Any) -> None:
    if value is None:  # expressions whose type check is the point, not the value
        with pytest.raises(Exception, match="needs operands of one type"):
            evaluate(text)
        return
    assert evaluate(text) == value


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("source.principal", "attribute 'source.principal' is absent (give a default with '|')", 1),
        ('source.principal == "x"', "attribute 'source.principal' is absent", 1),
        ('1 == 1 && request.auth.principal == "x"', "attribute 'request.auth.principal'", 11),
        ('destination.metadata["x"]', "attribute 'destination.metadata' is absent", 1),
        ('destination.metadata["x"] == "y"', "attribute 'destination.metadata' is absent", 1),
        ("request.headers[source.principal]", "attribute 'source.principal' is absent", 17),
        ('(source.principal | source.user) == "x"', "attribute 'source.user' is absent", 21),
        ("ip(source.name)", "could not convert 'not an ip' to IP_ADDRESS", 1),
        ('source.owner.matches("x")', "invalid regular expression '('", 14),
        ("conditional(connection.mtls, ip(source.name), source.ip)", "could not convert", 30),
        ('email(source.name) == email("a@b.io")', "to EMAIL_ADDRESS", 1),
    ],
)
def test_evaluation_errors_say_where(text: str, message: str, column: int) -> None:
    with pytest.raises(EvaluationError) as caught:
        evaluate(text)
    assert message in caught.value.message
    assert (caught.value.line, caught.value.column) == (1, column)


def test_only_absence_falls_through_the_default() -> None:
    # As in Istio: `|` guards absent attributes; a failing function call is still an error.
    with pytest.raises(EvaluationError, match="could not convert"):
        evaluate('ip(source.name) | ip("0.0.0.0")')
    assert evaluate('origin.ip | ip("0.0.0.0") == ip("0.0.0.0")') is True


def test_short_circuit_and_references() -> None:
    compiled = compile_expression(
        'destination.labels["app"] == "ratings" && source.labels["app"]=="reviews" '
        '&& source.labels["version"] == "v3"'
    )
    recording = BAG.recording()
    assert compiled.evaluate(recording) is True
    assert recording.referenced == {
        Reference("destination.labels", "app"),
        Reference("source.labels", "app"),
        Reference("source.labels", "version"),
    }
    other = AttributeBag({"destination.labels": {"app": "details"}, "source.labels": {}})
    recording = other.recording()
    assert compiled.evaluate(recording) is False
    assert recording.referenced == {Reference("destination.labels", "app")}


def test_references_record_absence_behind_defaults() -> None:
    compiled = compile_expression(
        '(source.labels["istio"] | "") == "ingressgateway" && '
        '(request.headers["x-user"] | "") == "john"'
    )
    gateway = AttributeBag(
        {"source.labels": {"istio": "ingressgateway"}, "request.headers": {"x-user": "john"}}
    )
    recording = gateway.recording()
    assert compiled.evaluate(recording) is True
    assert recording.referenced == {
        Reference("source.labels", "istio"),
        Reference("request.headers", "x-user"),
    }
    recording = AttributeBag({}).recording()
    assert compiled.evaluate(recording) is False
    assert recording.referenced == {Reference("source.labels", present=False)}
    recording = BAG.recording()
    compile_expression("response.size | request.size").evaluate(recording)
    assert recording.referenced == {
        Reference("response.size", present=False),
        Reference("request.size"),
    }


def test_compiled_once_evaluated_without_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_expression('source.labels["app"] | "x"')
    import meshconfig.policy.expr.parser

    def no_parsing(text: str) -> None:
        raise AssertionError("parsed at evaluation")

    monkeypatch.setattr(meshconfig.policy.expr.parser, "parse", no_parsing)
    monkeypatch.setattr(meshconfig.policy.expr.parser._Parser, "parse", no_parsing)
    assert compiled.evaluate(BAG) == "reviews"


def test_regex_and_glob_with_attribute_patterns() -> None:
    bag = AttributeBag({"request.path": "/api/v1", "source.name": "/api*", "source.uid": "^/api"})
    assert evaluate("match(request.path, source.name)", bag) is True
    assert evaluate("source.uid.matches(request.path)", bag) is True
    assert evaluate("request.path.startsWith(source.uid)", bag) is False
