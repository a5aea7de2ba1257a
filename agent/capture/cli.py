"""`mesh-agent iptables`: Istio's istio-init role, the capture rules for the current namespace.

An init container (or `ip netns exec`) runs it once, as root, before the application and the
proxy start. It takes istio-iptables' flags, short and long, with the defaults Istio's
injector passes (every inbound port but the proxy's own, every outbound address), so the
arguments the injector writes work unchanged. Applying is idempotent; `--cleanup` removes
exactly what applying added (Istio's istio-clean-iptables); `--dry-run` prints what would be
done and changes nothing; `--check` exits 1 when the rules are not in place.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent.capture.iptables import Iptables, IptablesError, plan_cleanup, problems
from agent.capture.rules import CaptureSettingsError, build_rules, config_from_settings

# (short, long, setting, help); the short flags are istio-iptables'.
_FLAGS = (
    ("-p", "--proxy-port", "proxy_port", "where outbound TCP is redirected (15001)"),
    ("-z", "--inbound-capture-port", "inbound_capture_port", "where inbound is redirected (15006)"),
    ("-u", "--proxy-uid", "proxy_uid", "the proxy's uids, never captured (1337)"),
    ("-g", "--proxy-gid", "proxy_gid", "the proxy's gids, never captured (the uids)"),
    ("-b", "--inbound-ports", "inbound_ports", "inbound ports to capture, '*' for all (*)"),
    (
        "-d",
        "--exclude-inbound-ports",
        "exclude_inbound_ports",
        "with '*': inbound ports left alone (15090,15021,15020)",
    ),
    ("-i", "--include-outbound-cidrs", "include_outbound_cidrs", "ranges to capture (*)"),
    ("-x", "--exclude-outbound-cidrs", "exclude_outbound_cidrs", "ranges left alone"),
    ("-q", "--include-outbound-ports", "include_outbound_ports", "ports always captured"),
    ("-o", "--exclude-outbound-ports", "exclude_outbound_ports", "ports left alone"),
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mesh-agent iptables", description=__doc__.split("\n")[0])
    for short, long, setting, help_text in _FLAGS:
        parser.add_argument(short, long, dest=setting, help=help_text)
    parser.add_argument(
        "-m",
        "--inbound-interception-mode",
        default="REDIRECT",
        choices=["REDIRECT"],
        help="only REDIRECT: TPROXY is not supported",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--cleanup", action="store_true", help="remove the capture rules")
    action.add_argument("--check", action="store_true", help="exit 1 unless the rules are in")
    parser.add_argument("-n", "--dry-run", action="store_true", help="print, change nothing")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    # An empty value is a setting too: `-b ''` captures no inbound port.
    settings = {
        setting: value for *_, setting, _ in _FLAGS if (value := getattr(args, setting)) is not None
    }
    try:
        wanted = build_rules(config_from_settings(settings))
        iptables = Iptables()
        if args.check:
            found = problems(wanted, iptables.nat_table())
            for problem in found:
                print(problem, file=sys.stderr)
            return 1 if found else 0
        if args.cleanup:
            if args.dry_run:
                print(plan_cleanup(iptables.nat_table()) or "# no capture rules to remove")
            elif not iptables.cleanup():
                print("no capture rules to remove", file=sys.stderr)
            return 0
        if args.dry_run:
            print(wanted.restore_input(), end="")
        elif not iptables.apply(wanted):
            print("capture rules already in place", file=sys.stderr)
    except (CaptureSettingsError, IptablesError) as error:
        print(f"mesh-agent iptables: {error}", file=sys.stderr)
        return 2
    return 0
