"""Istio's semantic rules for networking strings: hosts, ports, headers, regexes and the like.

The CRD schemas only say "string" for host names, label selectors, regexes, header names and
the like; istiod's validating webhook then rejects values a proxy could not use. The rules here
restate that webhook's behaviour as small functions that return the reason a value is wrong (or
None); the networking models report those reasons as `meshconfig.base.CheckedModel` problems.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Annotated

from pydantic import AfterValidator

from meshconfig.base import Problem, duration_seconds

# --- durations -------------------------------------------------------------------------------


def _check_timeout(text: str) -> str:
    seconds = duration_seconds(text)
    if seconds < 0.001:
        raise ValueError(f"duration {text} must be at least 1ms")
    if abs(seconds * 1000 - round(seconds * 1000)) > 1e-6:
        raise ValueError(f"duration {text} is finer than the supported millisecond precision")
    return text


# Durations whose CRD rule is `duration(self) >= duration('1ms')`; istiod adds ms precision.
Timeout = Annotated[str, AfterValidator(_check_timeout)]


# --- DNS names, IPs and hosts ---------------------------------------------------------------

_DNS_LABEL = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_WILDCARD_LABEL = re.compile(r"\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?")
_QUALIFIED_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(
    r"(?:(?P<prefix>[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)*)/)?(?P<name>" + _QUALIFIED_NAME + ")"
)
_LABEL_VALUE = re.compile(f"(?:{_QUALIFIED_NAME})?")


def is_dns_label(text: str) -> bool:
    """Istio's DNS-1123 label test (it also admits upper case)."""
    return len(text) <= 63 and _DNS_LABEL.fullmatch(text) is not None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ip_or_cidr_error(text: str) -> str | None:
    if text.count("/") == 1:
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            return f"{text!r} is not a valid CIDR block"
        return None
    return None if is_ip(text) else f"{text!r} is not a valid IP address"


def _length_error(name: str) -> str | None:
    if not name:
        return "an empty domain name is not allowed"
    if len(name) > 255:
        return f"domain name {name!r} is longer than 255 characters"
    return None


def _labels_error(name: str, domain: str) -> str | None:
    parts = domain.split(".")
    if parts[-1].isdigit():
        return f"domain name {name!r} has an all-numeric top-level domain"
    for index, label in enumerate(parts):
        if index == len(parts) - 1 and label == "":
            return None  # a trailing dot ("istio.io.") is allowed
        if not is_dns_label(label):
            return f"domain name {name!r} has an invalid label {label!r}"
    return None


def fqdn_error(name: str) -> str | None:
    """Why `name` is not a DNS name without wildcards (short names are DNS names too)."""
    return _length_error(name) or _labels_error(name, name)


def wildcard_domain_error(name: str, sni: bool = False) -> str | None:
    """Why `name` is not a DNS name whose first label may be a wildcard (`*`, `*.example.com`)."""
    too_long = _length_error(name)
    if too_long:
        return too_long
    first, dot, rest = name.partition(".")
    if sni and first == "outbound_" and re.match(r"outbound_.([0-8].*).*", name):
        return None  # SNI names Istio generates for its own clusters
    if len(first) > 63 or not _WILDCARD_LABEL.fullmatch(first):
        return f"domain name {name!r} has an invalid label {first!r}"
    return _labels_error(name, rest) if dot else None


def partial_wildcard_error(name: str) -> str | None:
    if "*" in name and name != "*" and not name.startswith("*."):
        return f"partial wildcard {name!r} is not allowed"
    return None


def hosts_overlap(first: str, second: str) -> bool:
    """Whether two hosts (either possibly wildcarded) can match the same name."""
    if first.startswith("*") and second.startswith("*"):
        shorter, longer = sorted((first[1:], second[1:]), key=len)
        return longer.endswith(shorter)
    if first.startswith("*"):
        return second.endswith(first[1:])
    if second.startswith("*"):
        return first.endswith(second[1:])
    return first == second


def host_subset_of(host: str, of: str) -> bool:
    """Whether every name `host` matches is also matched by `of`."""
    if host.startswith("*") and of.startswith("*"):
        return len(host) >= len(of) and host[1:].endswith(of[1:])
    if of.startswith("*"):
        return host.endswith(of[1:])
    return host == of


def _host_part_errors(host: str, gateway: bool) -> list[str]:
    errors = []
    if host != "*" and "." not in host:
        errors.append(f"short name {host!r} is not allowed here; use a fully qualified name")
    invalid = wildcard_domain_error(host)
    if invalid and not (gateway and is_ip(host)):
        errors.append(invalid)
    partial = partial_wildcard_error(host)
    if partial:
        errors.append(partial)
    return errors


def namespaced_host_errors(host: str, gateway: bool) -> list[str]:
    """Rules for `namespace/dnsName` hosts of Gateway servers and Sidecar egress listeners.

    Gateways also accept a bare dnsName (the old form); sidecars require the namespace part,
    which may be `*`, `.`, a namespace name, or (sidecars only) `~`.
    """
    namespace, slash, name = host.partition("/")
    if not slash:
        if gateway:
            return _host_part_errors(host, gateway)
        return [f"host {host!r} must have the form namespace/dnsName"]
    errors = []
    if not namespace or not name:
        errors.append(f"host {host!r} must have a non-empty namespace and dnsName")
    allowed = {"*", "."} if gateway else {"*", ".", "~"}
    if namespace not in allowed and not is_dns_label(namespace):
        errors.append(f"invalid namespace {namespace!r} in host {host!r}")
    return errors + _host_part_errors(name, gateway)


def gateway_name_error(name: str) -> str | None:
    """A VirtualService gateway reference: `mesh`, `name`, or `namespace/name`."""
    namespace, slash, gateway = name.partition("/")
    if not slash:
        return fqdn_error(name)
    if not namespace or not gateway:
        return f"gateway {name!r} must have a non-empty namespace and name"
    if not is_dns_label(namespace):
        return f"invalid namespace {namespace!r} in gateway {name!r}"
    if not is_dns_label(gateway):
        return f"invalid gateway name {gateway!r} in {name!r}"
    return None


UNIX_PREFIX = "unix://"


def unix_path_error(path: str) -> str | None:
    """The part after `unix://`: an absolute file path or an abstract socket (`@name`)."""
    if not path:
        return "a unix domain socket address must not be empty"
    if path.startswith("@"):
        return None
    if not path.startswith("/") or path.endswith("/"):
        return f"{path!r} is not an absolute path to a file"
    return None


# --- labels ------------------------------------------------------------------------------------


def label_errors(labels: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """(key, reason) for each label whose key or value Kubernetes would not accept."""
    for key, value in labels.items():
        match = _LABEL_KEY.fullmatch(key)
        if match is None:
            yield key, f"invalid label key {key!r}"
        elif len(match["prefix"] or "") > 253 or len(match["name"]) > 63:
            yield key, f"label key {key!r} is too long"
        if not _LABEL_VALUE.fullmatch(value) or len(value) > 63:
            yield key, f"invalid label value {value!r}"


# --- protocols -------------------------------------------------------------------------------

_HTTP_PROTOCOLS = frozenset({"http", "http2", "http_proxy", "grpc", "grpc-web"})
_TLS_PROTOCOLS = frozenset({"https", "tls"})
_PROTOCOLS = _HTTP_PROTOCOLS | _TLS_PROTOCOLS | {"tcp", "udp", "mongo", "redis", "mysql"}


def protocol_error(protocol: str) -> str | None:
    """Port protocols are case-insensitive; empty means "detect"."""
    if protocol and protocol.lower() not in _PROTOCOLS:
        return (
            f"unsupported protocol {protocol!r}; supported: HTTP, HTTPS, HTTP2, GRPC, "
            "GRPC-WEB, HTTP_PROXY, TCP, TLS, UDP, MONGO, REDIS, MYSQL"
        )
    return None


def is_http_protocol(protocol: str | None) -> bool:
    return (protocol or "").lower() in _HTTP_PROTOCOLS


def is_tls_protocol(protocol: str | None) -> bool:
    return (protocol or "").lower() in _TLS_PROTOCOLS


def port_name_error(name: str) -> str | None:
    return None if is_dns_label(name) else f"invalid port name {name!r}"


# --- HTTP ----------------------------------------------------------------------------------------

_HEADER_NAME = re.compile(r"[-_A-Za-z0-9]+")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_JWT_CLAIM_PREFIX = "@request.auth.claims."
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)


def header_name_error(name: str, allow_star: bool = False, allow_claim: bool = False) -> str | None:
    if not name:
        return "header name must not be empty"
    if allow_star and name == "*":
        return None
    if allow_claim and is_jwt_claim(name):
        return None
    if not _HEADER_NAME.fullmatch(name):
        return f"{name!r} is not a valid header name"
    return None


def is_jwt_claim(name: str) -> bool:
    """`@request.auth.claims.<claim>`: route on a JWT claim (gateways only)."""
    return name.startswith(_JWT_CLAIM_PREFIX) and len(name) > len(_JWT_CLAIM_PREFIX)


def header_value_error(value: str) -> str | None:
    """Envoy header values: no control characters, and `%` only in `%%` or `%COMMAND%`."""
    if _HEADER_VALUE_FORBIDDEN.search(value):
        return f"header value {value!r} contains control characters"
    rest = value
    while "%" in rest:
        _, _, rest = rest.partition("%")
        if rest.startswith("%"):
            rest = rest[1:]
            continue
        command, closed, rest = rest.partition("%")
        if not closed or not command:
            return f"header value {value!r} has an unterminated %COMMAND% (write %% for a %)"
    return None


def regex_error(pattern: str) -> str | None:
    """Istio compiles match regexes as RE2; Python's engine is a close stand-in."""
    if not pattern:
        return "regex must not be empty"
    if len(pattern) > 1024:
        return "regex is longer than 1024 characters"
    try:
        re.compile(pattern)
    except re.error as error:
        return f"invalid regex {pattern!r}: {error}"
    return None


def is_retry_on_policy(policy: str) -> bool:
    """Envoy `x-envoy-retry-on`/`x-envoy-retry-grpc-on` names, or an HTTP status code."""
    if policy.isdigit():
        return int(policy) in HTTPStatus._value2member_map_
    return policy in _RETRY_ON


_RETRY_ON = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "envoy-ratelimited",
        "http3-post-connect-failure",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)

GRPC_STATUSES = frozenset(
    {
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)


# --- exportTo --------------------------------------------------------------------------------


def export_to_problems(values: Iterable[str], allow_nobody: bool) -> Iterator[Problem]:
    """`exportTo` entries: `.`, `*`, namespace names, and `~` (nobody) for ServiceEntry only."""
    values = list(values)
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            yield ("exportTo", index), f"duplicate entry {value!r}"
            continue
        seen.add(value)
        if value in {".", "*"} or (allow_nobody and value == "~") or is_dns_label(value):
            continue
        allowed = "'.', '*', '~' or a namespace" if allow_nobody else "'.', '*' or a namespace"
        yield ("exportTo", index), f"invalid entry {value!r}: expected {allowed}"
    if len(values) > 1 and "*" in seen:
        yield ("exportTo",), "'*' (everyone) cannot be combined with other entries"
    if len(values) > 1 and allow_nobody and "~" in seen:
        yield ("exportTo",), "'~' (nobody) cannot be combined with other entries"
