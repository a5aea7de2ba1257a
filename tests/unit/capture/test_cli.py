"""`mesh-agent iptables`: istio-iptables' flags, the dry run, and the agent CLI's dispatch."""

from __future__ import annotations

import pytest

from agent.__main__ import main as agent_main
from agent.capture import cli
from agent.capture.iptables import NatTable
from agent.capture.rules import SETTINGS, CaptureConfig, build_rules


class FakeIptables:
    """The nat table in memory; `restore` records what it was given."""

    saved = "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    restored: list[str]

    def __init__(self) -> None:
        self.restored = []

    def nat_table(self) -> NatTable:
        return NatTable.parse(self.saved)

    def restore(self, text: str) -> None:
        self.restored.append(text)

    def apply(self, wanted: object) -> bool:
        self.restored.append(str(wanted))
        return len(self.restored) == 1

    def cleanup(self) -> bool:
        return False


@pytest.fixture
def iptables(monkeypatch: pytest.MonkeyPatch) -> FakeIptables:
    fake = FakeIptables()
    monkeypatch.setattr(cli, "Iptables", lambda: fake)
    return fake


def test_dry_run_prints_the_rules_and_touches_nothing(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent_main(["iptables", "--dry-run"]) == 0
    assert capsys.readouterr().out == build_rules(CaptureConfig()).restore_input()
    assert iptables.restored == []


def test_the_injectors_arguments_are_accepted(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    """What agent.injector's istio-init container runs: `-x ''` is an empty setting."""
    argv = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", ""]
    argv += ["-b", "*", "-d", "15090,15021,15020", "-o", "22", "-n"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "-A ISTIO_OUTPUT -p tcp -m tcp --dport 22 -j RETURN" in out
    assert out.replace("-A ISTIO_OUTPUT -p tcp -m tcp --dport 22 -j RETURN\n", "") == (
        build_rules(CaptureConfig()).restore_input()
    )


def test_an_empty_inbound_port_list_captures_no_inbound(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["-b", "", "-n"]) == 0
    assert "PREROUTING" not in capsys.readouterr().out


def test_apply_twice_says_it_had_nothing_to_do(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main([]) == 0
    assert "already in place" in capsys.readouterr().err


def test_check_reports_what_is_missing(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["--check"]) == 1
    assert "chain ISTIO_OUTPUT is missing" in capsys.readouterr().err
    iptables.saved = build_rules(CaptureConfig()).restore_input()
    assert cli.main(["--check"]) == 0


def test_cleanup_dry_run_prints_the_plan(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    iptables.saved = build_rules(CaptureConfig()).restore_input()
    assert cli.main(["--cleanup", "--dry-run"]) == 0
    assert "-X ISTIO_REDIRECT" in capsys.readouterr().out
    assert cli.main(["--cleanup"]) == 0
    assert "no capture rules to remove" in capsys.readouterr().err


def test_bad_settings_exit_2_with_the_reason(
    iptables: FakeIptables, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["-u", "istio-proxy"]) == 2
    assert "proxy_uid: 'istio-proxy' is not a numeric id" in capsys.readouterr().err


def test_tproxy_is_refused() -> None:
    with pytest.raises(SystemExit):
        cli.main(["-m", "TPROXY"])


def test_the_agent_without_a_subcommand_still_takes_its_flags() -> None:
    with pytest.raises(SystemExit) as exited:
        agent_main(["--pod", "p"])  # --ip is required: argparse of the agent itself
    assert exited.value.code == 2


def test_every_setting_has_a_flag() -> None:
    """The CLI's long options and the CNI plugin's `capture` keys are the same settings."""
    assert sorted(setting for *_, setting, _ in cli._FLAGS) == sorted(SETTINGS)
