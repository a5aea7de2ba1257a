"""Istio's traffic capture as data: the nat rules of istio-iptables, built from its settings.

The `istio-init` role (`mesh-agent iptables`) and the CNI plugin (`mesh-cni`) install the same
rules, so both build them here and cannot drift apart. Each rule is kept in the exact form
`iptables-save` prints it: `iptables` compares what is installed with what is wanted line by
line (which makes applying twice change nothing) and removes exactly these lines again.

The rules are Istio's for REDIRECT mode, all in the nat table:

- `PREROUTING -p tcp -j ISTIO_INBOUND`. ISTIO_INBOUND returns for the tunnel port (15008) and
  the excluded inbound ports (Envoy's stats 15090, health 15021, 15020 by default), then sends
  every other port (`*`), or only the listed ones, to ISTIO_IN_REDIRECT: REDIRECT to 15006.
- `OUTPUT -p tcp -j ISTIO_OUTPUT`. ISTIO_OUTPUT returns for excluded outbound ports; for
  connections from 127.0.0.6 (Envoy's inbound passthrough source); sends the proxy's own
  connections over `lo` to a non-127.0.0.1 address (the application calling itself through its
  service: app -> Envoy outbound -> Envoy inbound -> app) to ISTIO_IN_REDIRECT; returns for
  anything else over `lo` that is not the proxy's (application to itself: not captured, unless
  the included ranges name a loopback range) and for all of the proxy's own traffic (uid and
  gid 1337: Envoy and the agent, so their connections to pilot and citadel go straight out);
  returns for 127.0.0.1 and the excluded ranges; then sends the included ports, and the
  included ranges (`*`: everything) to ISTIO_REDIRECT: REDIRECT to 15001.

TPROXY mode (mangle table, marks and policy routing) and IPv6 (ip6tables) are not modelled:
IPv6 ranges in the settings are left out, and IPv6 traffic is not captured.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

TABLE: Final = "nat"
ISTIO_INBOUND: Final = "ISTIO_INBOUND"
ISTIO_IN_REDIRECT: Final = "ISTIO_IN_REDIRECT"
ISTIO_OUTPUT: Final = "ISTIO_OUTPUT"
ISTIO_REDIRECT: Final = "ISTIO_REDIRECT"
CHAINS: Final = (ISTIO_INBOUND, ISTIO_IN_REDIRECT, ISTIO_OUTPUT, ISTIO_REDIRECT)
"""The chains the capture owns: created by `apply`, removed whole by `cleanup`."""

OUTBOUND_PORT: Final = 15001
INBOUND_PORT: Final = 15006
TUNNEL_PORT: Final = 15008
PROXY_ID: Final = 1337
PROXY_PORTS: Final = (15090, 15021, 15020)
"""Envoy's Prometheus stats, the agent's health and Istio's status port: never captured
inbound by default (what Istio's injector passes as `-d`)."""
INBOUND_PASSTHROUGH_SOURCE: Final = "127.0.0.6/32"
LOCALHOST: Final = "127.0.0.1/32"

ALL: Final = "*"
All = Literal["*"]


class CaptureSettingsError(ValueError):
    """A capture setting is not what iptables could take (the message names the setting)."""


@dataclass(frozen=True)
class CaptureConfig:
    """istio-iptables' settings. `ALL` captures every inbound port or outbound address; an
    empty tuple captures none."""

    proxy_port: int = OUTBOUND_PORT
    inbound_capture_port: int = INBOUND_PORT
    inbound_tunnel_port: int = TUNNEL_PORT
    proxy_uids: tuple[int, ...] = (PROXY_ID,)
    proxy_gids: tuple[int, ...] = (PROXY_ID,)
    inbound_ports: All | tuple[int, ...] = ALL
    exclude_inbound_ports: tuple[int, ...] = PROXY_PORTS
    include_outbound_cidrs: All | tuple[ipaddress.IPv4Network, ...] = ALL
    exclude_outbound_cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    include_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One `-A` line: `spec` is everything after the chain, in iptables-save's own form."""

    chain: str
    spec: str

    def __str__(self) -> str:
        return f"-A {self.chain} {self.spec}"


@dataclass(frozen=True)
class Ruleset:
    """What the capture installs: its chains' rules, and the jumps to them from the
    built-in chains."""

    jumps: tuple[Rule, ...]
    rules: tuple[Rule, ...]
    chains: tuple[str, ...] = field(default=CHAINS)

    def chain_rules(self, chain: str) -> list[str]:
        return [rule.spec for rule in self.rules if rule.chain == chain]

    def restore_input(self) -> str:
        """The whole ruleset as `iptables-restore --noflush` input (the dry run prints it)."""
        lines = [f"*{TABLE}", *(f":{chain} - [0:0]" for chain in self.chains)]
        lines += [str(rule) for rule in (*self.jumps, *self.rules)]
        return "\n".join([*lines, "COMMIT", ""])


def build_rules(config: CaptureConfig) -> Ruleset:
    """Istio's rules for `config`, in Istio's order (the order matters within a chain)."""
    jumps = [Rule("PREROUTING", f"-p tcp -j {ISTIO_INBOUND}")] if config.inbound_ports else []
    jumps.append(Rule("OUTPUT", f"-p tcp -j {ISTIO_OUTPUT}"))
    rules = [
        Rule(ISTIO_INBOUND, f"{_tcp_port(config.inbound_tunnel_port)} -j RETURN"),
        *_inbound(config),
        Rule(ISTIO_IN_REDIRECT, f"-p tcp -j REDIRECT --to-ports {config.inbound_capture_port}"),
        *_outbound(config),
        Rule(ISTIO_REDIRECT, f"-p tcp -j REDIRECT --to-ports {config.proxy_port}"),
    ]
    return Ruleset(tuple(jumps), tuple(rules))


def _inbound(config: CaptureConfig) -> Iterable[Rule]:
    if config.inbound_ports == ALL:
        for port in config.exclude_inbound_ports:
            yield Rule(ISTIO_INBOUND, f"{_tcp_port(port)} -j RETURN")
        yield Rule(ISTIO_INBOUND, f"-p tcp -j {ISTIO_IN_REDIRECT}")
        return
    for port in config.inbound_ports:
        yield Rule(ISTIO_INBOUND, f"{_tcp_port(port)} -j {ISTIO_IN_REDIRECT}")


def _outbound(config: CaptureConfig) -> Iterable[Rule]:
    for port in config.exclude_outbound_ports:
        yield Rule(ISTIO_OUTPUT, f"{_tcp_port(port)} -j RETURN")
    yield Rule(ISTIO_OUTPUT, f"-s {INBOUND_PASSTHROUGH_SOURCE} -o lo -j RETURN")
    # Loopback traffic of the application is its own business, unless the included ranges
    # explicitly name a loopback range (Istio's rule).
    included = config.include_outbound_cidrs
    loopback_included = included != ALL and any(cidr.is_loopback for cidr in included)
    owners = [("uid", owner) for owner in config.proxy_uids]
    owners += [("gid", owner) for owner in config.proxy_gids]
    tunnel = f"-m tcp ! --dport {config.inbound_tunnel_port}"
    for kind, owner in owners:
        yield Rule(
            ISTIO_OUTPUT,
            f"! -d {LOCALHOST} -o lo -p tcp {tunnel} -m owner --{kind}-owner {owner}"
            f" -j {ISTIO_IN_REDIRECT}",
        )
        if not loopback_included:
            yield Rule(ISTIO_OUTPUT, f"-o lo -m owner ! --{kind}-owner {owner} -j RETURN")
        yield Rule(ISTIO_OUTPUT, f"-m owner --{kind}-owner {owner} -j RETURN")
    yield Rule(ISTIO_OUTPUT, f"-d {LOCALHOST} -j RETURN")
    for cidr in config.exclude_outbound_cidrs:
        yield Rule(ISTIO_OUTPUT, f"-d {cidr} -j RETURN")
    for port in config.include_outbound_ports:
        yield Rule(ISTIO_OUTPUT, f"{_tcp_port(port)} -j {ISTIO_REDIRECT}")
    if included == ALL:
        yield Rule(ISTIO_OUTPUT, f"-j {ISTIO_REDIRECT}")
        return
    for cidr in included:
        yield Rule(ISTIO_OUTPUT, f"-d {cidr} -j {ISTIO_REDIRECT}")


def _tcp_port(port: int) -> str:
    return f"-p tcp -m tcp --dport {port}"


SETTINGS: Final = (
    "proxy_port",
    "inbound_capture_port",
    "proxy_uid",
    "proxy_gid",
    "inbound_ports",
    "exclude_inbound_ports",
    "include_outbound_cidrs",
    "exclude_outbound_cidrs",
    "include_outbound_ports",
    "exclude_outbound_ports",
)
"""The names of the settings, shared by `mesh-agent iptables` (its long options) and the CNI
plugin's `capture` configuration."""


def config_from_settings(settings: Mapping[str, object]) -> CaptureConfig:
    """A `CaptureConfig` from settings named as in `SETTINGS`, each a string (comma-separated
    lists; "*" for all where the setting allows it) or a number; unset ones keep Istio's
    defaults. Raises CaptureSettingsError naming the setting at fault."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise CaptureSettingsError(f"unknown capture settings: {', '.join(unknown)}")
    text = {name: str(value) for name, value in settings.items()}
    default = CaptureConfig()

    def ports(name: str, fallback: tuple[int, ...]) -> tuple[int, ...]:
        return _ports(text[name], name) if name in text else fallback

    def port(name: str, fallback: int) -> int:
        found = ports(name, (fallback,))
        if len(found) != 1:
            raise CaptureSettingsError(f"{name}: one port is needed")
        return found[0]

    def ids(name: str, fallback: tuple[int, ...]) -> tuple[int, ...]:
        return _ids(text[name], name) if name in text else fallback

    inbound: All | tuple[int, ...] = default.inbound_ports
    if "inbound_ports" in text:
        inbound = ALL if _is_all(text["inbound_ports"]) else ports("inbound_ports", ())
    included: All | tuple[ipaddress.IPv4Network, ...] = default.include_outbound_cidrs
    if "include_outbound_cidrs" in text:
        raw = text["include_outbound_cidrs"]
        included = ALL if _is_all(raw) else _cidrs(raw, "include_outbound_cidrs")
    excluded = default.exclude_outbound_cidrs
    if "exclude_outbound_cidrs" in text:
        excluded = _cidrs(text["exclude_outbound_cidrs"], "exclude_outbound_cidrs")
    return CaptureConfig(
        proxy_port=port("proxy_port", default.proxy_port),
        inbound_capture_port=port("inbound_capture_port", default.inbound_capture_port),
        proxy_uids=ids("proxy_uid", default.proxy_uids),
        # Istio's default gid is the proxy's uid.
        proxy_gids=ids("proxy_gid", ids("proxy_uid", default.proxy_gids)),
        inbound_ports=inbound,
        exclude_inbound_ports=ports("exclude_inbound_ports", default.exclude_inbound_ports),
        include_outbound_cidrs=included,
        exclude_outbound_cidrs=excluded,
        include_outbound_ports=ports("include_outbound_ports", default.include_outbound_ports),
        exclude_outbound_ports=ports("exclude_outbound_ports", default.exclude_outbound_ports),
    )


def _is_all(text: str) -> bool:
    return text.strip() == ALL


def _ports(text: str, setting: str) -> tuple[int, ...]:
    ports = []
    for item in _items(text):
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise CaptureSettingsError(f"{setting}: {item!r} is not a port (1-65535)")
        ports.append(int(item))
    return tuple(ports)


def _cidrs(text: str, setting: str) -> tuple[ipaddress.IPv4Network, ...]:
    """IPv6 ranges are left out: no ip6tables rules are installed."""
    cidrs = []
    for item in _items(text):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise CaptureSettingsError(f"{setting}: {item!r} is not an IP range (CIDR)") from None
        if isinstance(network, ipaddress.IPv4Network):
            cidrs.append(network)
    return tuple(cidrs)


def _ids(text: str, setting: str) -> tuple[int, ...]:
    """Numeric uids or gids: iptables-save prints numbers and the rules are compared as
    printed, so names are refused rather than resolved."""
    ids = []
    for item in _items(text):
        if not item.isdigit():
            raise CaptureSettingsError(f"{setting}: {item!r} is not a numeric id")
        ids.append(int(item))
    if not ids:
        raise CaptureSettingsError(f"{setting}: at least one id is needed")
    return tuple(ids)


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]
