"""The built-in functions of Mixer expressions, with their types and behaviour.

As in Istio 1.4: `ip`, `timestamp`, `dnsName`, `email` and `uri` turn text into typed values;
`match(str, "prefix*")` is a glob on one end; the methods `"regex".matches(str)`,
`str.startsWith(p)` and `str.endsWith(s)`; `emptyStringMap()`; `toLower`, `size`, `reverse`
(function or method); `conditionalString`; and `ip_equal`. Added beside them, because
configs need them and nothing in 1.4 spells them: `duration("10s")` and `string(x)`. The
generic `conditional(c, a, b)` is a special form of the checker and compiler, not listed here.

Equality is typed, as Istio defines it: IP addresses compare as addresses (an IPv4-mapped IPv6
address equals its IPv4 address), DNS names case-insensitively and without a trailing dot,
e-mail addresses by local part and DNS domain, URIs after normalising scheme and host.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from meshconfig.base import duration_seconds
from meshconfig.policy.attributes import IPAddress, ValueType

STRING = ValueType.STRING
INT64 = ValueType.INT64
BOOL = ValueType.BOOL

EMPTY_STRING_MAP: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Overload:
    params: tuple[ValueType, ...]
    result: ValueType
    impl: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Builtin:
    """A function (`f(x)`) or method (`x.f(y)`, the target is the first parameter).

    Every builtin is pure: a call whose arguments are all constants is computed when compiling.
    """

    name: str
    method: bool
    overloads: tuple[Overload, ...]


def to_ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"could not convert {text!r} to IP_ADDRESS") from None


def _ip_key(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_equal(a: IPAddress, b: IPAddress) -> bool:
    return a == b or _ip_key(a) == _ip_key(b)


def utc(value: datetime) -> datetime:
    """`value` with a time zone (UTC when it has none), so timestamps always compare."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def to_timestamp(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "t" not in text.lower():
        raise ValueError(
            f"could not convert {text!r} to TIMESTAMP: expected RFC 3339, like 2015-01-02T15:04:35Z"
        )
    return parsed


def to_duration(text: str) -> timedelta:
    sign = -1 if text.startswith("-") else 1
    try:
        seconds = duration_seconds(text.lstrip("+-"))
    except ValueError:
        raise ValueError(
            f"could not convert {text!r} to DURATION: expected like 10s or 1m30s"
        ) from None
    return timedelta(seconds=sign * seconds)


def is_duration_text(text: str) -> bool:
    """Whether a string literal reads as a duration ("10s"): Istio types those as DURATION."""
    try:
        to_duration(text)
    except ValueError:
        return False
    return True


_DNS_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def to_dns_name(text: str) -> str:
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name[:-1].split(".") if ascii_name.endswith(".") else ascii_name.split(".")
    if len(ascii_name) > 254 or not all(_DNS_LABEL.match(label) for label in labels):
        raise ValueError(f"could not convert {text!r} to DNS_NAME")
    return text


def dns_equal(a: str, b: str) -> bool:
    return a.lower().removesuffix(".") == b.lower().removesuffix(".")


def _email_parts(text: str) -> tuple[str, str]:
    name, address = parseaddr(text)
    if name or "@" not in address or address != text.strip():
        raise ValueError(f"could not convert {text!r} to EMAIL_ADDRESS")
    local, _, domain = address.rpartition("@")
    return local, domain


def to_email(text: str) -> str:
    _, domain = _email_parts(text)
    try:
        to_dns_name(domain)
    except ValueError:
        raise ValueError(f"could not convert {text!r} to EMAIL_ADDRESS: bad domain") from None
    return text


def email_equal(a: str, b: str) -> bool:
    local_a, domain_a = _email_parts(a)
    local_b, domain_b = _email_parts(b)
    return local_a == local_b and dns_equal(domain_a, domain_b)


def to_uri(text: str) -> str:
    if not text:
        raise ValueError("could not convert an empty string to URI")
    try:
        urlsplit(text)
    except ValueError as error:
        raise ValueError(f"could not convert {text!r} to URI: {error}") from None
    return text


def uri_equal(a: str, b: str) -> bool:
    first, second = urlsplit(a), urlsplit(b)
    if first.scheme.lower() != second.scheme.lower():
        return False
    if first.scheme.lower() in ("http", "https"):
        if not dns_equal(first.hostname or "", second.hostname or "") or first.port != second.port:
            return False
        first = first._replace(netloc=second.netloc)
    return first._replace(scheme=second.scheme) == second


def glob_match(text: str, pattern: str) -> bool:
    """Istio's `match`: a trailing `*` matches a prefix, a leading one a suffix."""
    if pattern.endswith("*"):
        return text.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return text.endswith(pattern[1:])
    return text == pattern


def regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regular expression {pattern!r}: {error}") from None


def regex_matches(pattern: str, text: str) -> bool:
    """Go's regexp.MatchString: does the pattern match anywhere in `text`."""
    return regex(pattern).search(text) is not None


def format_duration(value: timedelta) -> str:
    """A duration as Go prints it for whole units ("1h30m0s", "1.5s", "250ms")."""
    micros = value // timedelta(microseconds=1)
    sign, micros = ("-", -micros) if micros < 0 else ("", micros)
    if micros < 1_000_000:
        return f"{sign}{micros / 1000:g}ms" if micros else "0s"
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds = f"{rest / 1_000_000:.6f}".rstrip("0").rstrip(".")
    head = f"{hours}h{minutes}m" if hours else (f"{minutes}m" if minutes else "")
    return f"{sign}{head}{seconds}s"


def _text(value: Any) -> str:
    """`string(x)`: the text form of a scalar value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


def _reverse(text: str) -> str:
    return text[::-1]


def _size(text: str) -> int:
    return len(text.encode())


def _one(params: tuple[ValueType, ...], result: ValueType, impl: Callable[..., Any]) -> Overload:
    return Overload(params, result, impl)


_STRINGABLE = (
    ValueType.STRING,
    ValueType.INT64,
    ValueType.DOUBLE,
    ValueType.BOOL,
    ValueType.TIMESTAMP,
    ValueType.DURATION,
    ValueType.IP_ADDRESS,
    ValueType.EMAIL_ADDRESS,
    ValueType.DNS_NAME,
    ValueType.URI,
)

BUILTINS: Final[Mapping[tuple[str, bool], Builtin]] = MappingProxyType(
    {
        (b.name, b.method): b
        for b in (
            Builtin("ip", False, (_one((STRING,), ValueType.IP_ADDRESS, to_ip),)),
            Builtin(
                "ip_equal",
                False,
                (_one((ValueType.IP_ADDRESS, ValueType.IP_ADDRESS), BOOL, ip_equal),),
            ),
            Builtin("timestamp", False, (_one((STRING,), ValueType.TIMESTAMP, to_timestamp),)),
            Builtin("duration", False, (_one((STRING,), ValueType.DURATION, to_duration),)),
            Builtin("dnsName", False, (_one((STRING,), ValueType.DNS_NAME, to_dns_name),)),
            Builtin("email", False, (_one((STRING,), ValueType.EMAIL_ADDRESS, to_email),)),
            Builtin("uri", False, (_one((STRING,), ValueType.URI, to_uri),)),
            Builtin("match", False, (_one((STRING, STRING), BOOL, glob_match),)),
            Builtin("matches", True, (_one((STRING, STRING), BOOL, regex_matches),)),
            Builtin("startsWith", True, (_one((STRING, STRING), BOOL, str.startswith),)),
            Builtin("endsWith", True, (_one((STRING, STRING), BOOL, str.endswith),)),
            Builtin(
                "emptyStringMap", False, (_one((), ValueType.STRING_MAP, lambda: EMPTY_STRING_MAP),)
            ),
            Builtin("toLower", False, (_one((STRING,), STRING, str.lower),)),
            Builtin("reverse", False, (_one((STRING,), STRING, _reverse),)),
            Builtin("reverse", True, (_one((STRING,), STRING, _reverse),)),
            Builtin(
                "size",
                False,
                (
                    _one((STRING,), INT64, _size),
                    _one((ValueType.BYTES,), INT64, len),
                    _one((ValueType.STRING_MAP,), INT64, len),
                ),
            ),
            Builtin("string", False, tuple(_one((t,), STRING, _text) for t in _STRINGABLE)),
        )
    }
)

# `==` for the types whose equality is not Python's.
EQUALITY: Final[Mapping[ValueType, Callable[[Any, Any], bool]]] = MappingProxyType(
    {
        ValueType.IP_ADDRESS: ip_equal,
        ValueType.DNS_NAME: dns_equal,
        ValueType.EMAIL_ADDRESS: email_equal,
        ValueType.URI: uri_equal,
    }
)
# Types `<`, `<=`, `>`, `>=` accept; and `+` (strings concatenate, numbers add).
ORDERED: Final = frozenset(
    {ValueType.STRING, ValueType.INT64, ValueType.DOUBLE, ValueType.TIMESTAMP, ValueType.DURATION}
)
ADDABLE: Final = frozenset({ValueType.STRING, ValueType.INT64, ValueType.DOUBLE})
