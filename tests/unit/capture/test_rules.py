"""The capture rules are Istio's (istio-iptables' REDIRECT mode), built from its settings."""

from __future__ import annotations

import ipaddress

import pytest

from agent.capture.rules import (
    CHAINS,
    CaptureConfig,
    CaptureSettingsError,
    build_rules,
    config_from_settings,
)

# istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020
# as Istio's injector runs it (its golden output in iptables-save form, TCP only).
ISTIO_DEFAULT = """\
*nat
:ISTIO_INBOUND - [0:0]
:ISTIO_IN_REDIRECT - [0:0]
:ISTIO_OUTPUT - [0:0]
:ISTIO_REDIRECT - [0:0]
-A PREROUTING -p tcp -j ISTIO_INBOUND
-A OUTPUT -p tcp -j ISTIO_OUTPUT
-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15021 -j RETURN
-A ISTIO_INBOUND -p tcp -m tcp --dport 15020 -j RETURN
-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT
-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --uid-owner 1337 \
-j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m tcp ! --dport 15008 -m owner --gid-owner 1337 \
-j ISTIO_IN_REDIRECT
-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN
-A ISTIO_OUTPUT -j ISTIO_REDIRECT
-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""


def test_default_rules_are_istios() -> None:
    assert build_rules(CaptureConfig()).restore_input() == ISTIO_DEFAULT


def test_settings_default_to_what_istios_injector_passes() -> None:
    assert config_from_settings({}) == CaptureConfig()
    injector = {
        "proxy_port": "15001",
        "inbound_capture_port": 15006,
        "proxy_uid": "1337",
        "include_outbound_cidrs": "*",
        "exclude_outbound_cidrs": "",
        "inbound_ports": "*",
        "exclude_inbound_ports": "15090,15021,15020",
    }
    assert config_from_settings(injector) == CaptureConfig()


def test_listed_inbound_ports_only() -> None:
    rules = build_rules(config_from_settings({"inbound_ports": "9080, 9090"}))
    assert rules.chain_rules("ISTIO_INBOUND") == [
        "-p tcp -m tcp --dport 15008 -j RETURN",
        "-p tcp -m tcp --dport 9080 -j ISTIO_IN_REDIRECT",
        "-p tcp -m tcp --dport 9090 -j ISTIO_IN_REDIRECT",
    ]


def test_no_inbound_capture_has_no_prerouting_jump() -> None:
    rules = build_rules(config_from_settings({"inbound_ports": ""}))
    assert [str(jump) for jump in rules.jumps] == ["-A OUTPUT -p tcp -j ISTIO_OUTPUT"]
    assert rules.chain_rules("ISTIO_INBOUND") == ["-p tcp -m tcp --dport 15008 -j RETURN"]


def test_outbound_ranges_and_ports() -> None:
    config = config_from_settings(
        {
            "include_outbound_cidrs": "10.0.0.0/8,fd00::/8",
            "exclude_outbound_cidrs": "10.96.0.1/32",
            "include_outbound_ports": "3306",
            "exclude_outbound_ports": "22,5432",
        }
    )
    output = build_rules(config).chain_rules("ISTIO_OUTPUT")
    assert output[:3] == [
        "-p tcp -m tcp --dport 22 -j RETURN",
        "-p tcp -m tcp --dport 5432 -j RETURN",
        "-s 127.0.0.6/32 -o lo -j RETURN",
    ]
    assert output[-4:] == [
        "-d 127.0.0.1/32 -j RETURN",
        "-d 10.96.0.1/32 -j RETURN",
        "-p tcp -m tcp --dport 3306 -j ISTIO_REDIRECT",
        "-d 10.0.0.0/8 -j ISTIO_REDIRECT",  # the IPv6 range is left out: no ip6tables
    ]
    assert "-j ISTIO_REDIRECT" not in output


def test_an_included_loopback_range_captures_the_applications_loopback_traffic() -> None:
    """Istio drops the `-o lo ! --uid-owner RETURN` rules when loopback is asked for."""
    looped = build_rules(config_from_settings({"include_outbound_cidrs": "127.0.0.0/8"}))
    assert not any("-o lo -m owner !" in rule for rule in looped.chain_rules("ISTIO_OUTPUT"))
    assert "-d 127.0.0.0/8 -j ISTIO_REDIRECT" in looped.chain_rules("ISTIO_OUTPUT")


def test_several_proxy_ids_and_gid_defaults_to_uid() -> None:
    config = config_from_settings({"proxy_uid": "1337,2000"})
    assert config.proxy_uids == config.proxy_gids == (1337, 2000)
    assert config_from_settings({"proxy_uid": "7", "proxy_gid": "8"}).proxy_gids == (8,)
    owner_rules = [r for r in build_rules(config).chain_rules("ISTIO_OUTPUT") if "owner" in r]
    assert len(owner_rules) == 12  # three rules per uid and per gid


def test_custom_redirect_ports() -> None:
    rules = build_rules(config_from_settings({"proxy_port": 16001, "inbound_capture_port": 16006}))
    assert rules.chain_rules("ISTIO_REDIRECT") == ["-p tcp -j REDIRECT --to-ports 16001"]
    assert rules.chain_rules("ISTIO_IN_REDIRECT") == ["-p tcp -j REDIRECT --to-ports 16006"]
    assert rules.chains == CHAINS


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"proxy_port": "0"}, "proxy_port: '0' is not a port"),
        ({"proxy_port": "1,2"}, "proxy_port: one port is needed"),
        ({"exclude_inbound_ports": "http"}, "exclude_inbound_ports: 'http' is not a port"),
        ({"exclude_outbound_ports": "*"}, "exclude_outbound_ports: '*' is not a port"),
        ({"proxy_uid": "istio-proxy"}, "proxy_uid: 'istio-proxy' is not a numeric id"),
        ({"proxy_gid": ""}, "proxy_gid: at least one id is needed"),
        ({"exclude_outbound_cidrs": "*"}, "exclude_outbound_cidrs: '*' is not an IP range"),
        ({"include_outbound_cidrs": "10.0.0.0/33"}, "'10.0.0.0/33' is not an IP range"),
        ({"mode": "TPROXY"}, "unknown capture settings: mode"),
    ],
)
def test_bad_settings_name_the_setting(settings: dict[str, object], message: str) -> None:
    with pytest.raises(CaptureSettingsError, match=message.replace("*", r"\*")):
        config_from_settings(settings)


def test_ranges_are_normalised() -> None:
    config = config_from_settings({"exclude_outbound_cidrs": "10.1.2.3/16"})
    assert config.exclude_outbound_cidrs == (ipaddress.IPv4Network("10.1.0.0/16"),)
