"""Install, check and remove the capture rules in a network namespace, idempotently.

Everything goes through `iptables-save -t nat` and one `iptables-restore --noflush`
transaction, so a change is atomic and every other rule in the namespace is left alone:

- `plan_apply` compares what is installed with the wanted `Ruleset`. Nothing to do when each
  capture chain holds exactly its rules and each jump is there: applying twice changes
  nothing (not even the counters). Otherwise the capture chains are declared (created, or
  flushed) and refilled, missing jumps appended and jumps to capture chains that are no
  longer wanted (an older configuration's) deleted.
- `plan_cleanup` deletes every jump into a capture chain, then flushes and deletes those
  chains: exactly what `apply` adds, whatever configuration added it.
- `problems` lists what differs from the wanted ruleset (the CNI plugin's CHECK).

`Iptables` runs the two commands, in the current network namespace or, given a namespace
path (the CNI plugin's CNI_NETNS), inside it through `nsenter`. Whichever `iptables` the
system selects (nf_tables or legacy) is used; the plans are the same for both.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.capture.rules import CHAINS, TABLE, Rule, Ruleset

BUILTIN_CHAINS = ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING")


class IptablesError(RuntimeError):
    """An iptables command failed or is missing; the message carries what it said."""


@dataclass
class NatTable:
    """The nat table as `iptables-save` prints it: each chain's rule specs, in order."""

    chains: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, saved: str) -> NatTable:
        table = cls()
        in_nat = False
        for line in saved.splitlines():
            if line.startswith("*"):
                in_nat = line == f"*{TABLE}"
            elif not in_nat or line.startswith("#") or line == "COMMIT":
                continue
            elif line.startswith(":"):
                table.chains.setdefault(line[1:].split(" ", 1)[0], [])
            elif line.startswith("-A "):
                chain, _, spec = line[3:].partition(" ")
                table.chains.setdefault(chain, []).append(spec)
        return table

    def jumps_to_capture(self) -> list[Rule]:
        """Rules of the built-in chains that jump into a capture chain."""
        return [
            Rule(chain, spec)
            for chain in BUILTIN_CHAINS
            for spec in self.chains.get(chain, [])
            if _jump_target(spec) in CHAINS
        ]


def plan_apply(wanted: Ruleset, current: NatTable) -> str | None:
    """`iptables-restore --noflush` input that makes `current` hold `wanted`, or None when
    it already does."""
    installed = current.jumps_to_capture()
    stale = [jump for jump in installed if jump not in wanted.jumps]
    missing = [jump for jump in wanted.jumps if jump not in installed]
    chains_differ = any(
        current.chains.get(chain) != wanted.chain_rules(chain) for chain in wanted.chains
    )
    if not (stale or missing or chains_differ):
        return None
    lines = [f"*{TABLE}", *(f"-D {jump.chain} {jump.spec}" for jump in stale)]
    if chains_differ:
        lines += [f":{chain} - [0:0]" for chain in wanted.chains]
        lines += [str(rule) for rule in wanted.rules]
    lines += [str(jump) for jump in missing]
    return "\n".join([*lines, "COMMIT", ""])


def plan_cleanup(current: NatTable) -> str | None:
    """Input that removes every capture jump and chain from `current`, or None if it has
    none."""
    jumps = current.jumps_to_capture()
    chains = [chain for chain in CHAINS if chain in current.chains]
    if not (jumps or chains):
        return None
    lines = [f"*{TABLE}", *(f"-D {jump.chain} {jump.spec}" for jump in jumps)]
    lines += [f":{chain} - [0:0]" for chain in chains]  # flush first: rules may cross-refer
    lines += [f"-X {chain}" for chain in chains]
    return "\n".join([*lines, "COMMIT", ""])


def problems(wanted: Ruleset, current: NatTable) -> list[str]:
    """How `current` differs from `wanted`; empty when the capture is in place."""
    found = []
    for chain in wanted.chains:
        rules = current.chains.get(chain)
        if rules is None:
            found.append(f"chain {chain} is missing")
        elif rules != wanted.chain_rules(chain):
            found.append(f"chain {chain} does not hold the capture rules")
    installed = current.jumps_to_capture()
    found += [f"rule '{jump}' is missing" for jump in wanted.jumps if jump not in installed]
    found += [f"rule '{jump}' is not wanted" for jump in installed if jump not in wanted.jumps]
    return found


class Iptables:
    """`iptables-save` and `iptables-restore` in this network namespace or in `netns`."""

    def __init__(self, netns: str | None = None) -> None:
        self._prefix: Sequence[str] = ("nsenter", f"--net={netns}") if netns else ()

    def nat_table(self) -> NatTable:
        return NatTable.parse(self._run("iptables-save", "-t", TABLE))

    def restore(self, text: str) -> None:
        self._run("iptables-restore", "--noflush", "--wait", stdin=text)

    def apply(self, wanted: Ruleset) -> bool:
        """Install `wanted`; False if it was already installed (nothing was touched)."""
        plan = plan_apply(wanted, self.nat_table())
        if plan is not None:
            self.restore(plan)
        return plan is not None

    def cleanup(self) -> bool:
        """Remove the capture; False if there was none."""
        plan = plan_cleanup(self.nat_table())
        if plan is not None:
            self.restore(plan)
        return plan is not None

    def _run(self, *command: str, stdin: str | None = None) -> str:
        argv = [*self._prefix, *command]
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        except FileNotFoundError as error:
            raise IptablesError(f"{error.filename} not found (is iptables installed?)") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            raise IptablesError(f"{' '.join(argv)} failed ({done.returncode}): {said}")
        return done.stdout


def _jump_target(spec: str) -> str:
    words = spec.split()
    for index, word in enumerate(words[:-1]):
        if word == "-j":
            return words[index + 1]
    return ""
