"""Mixer fed by a real galley watching a directory: bad Mixer config stops at galley.

Galley validates Mixer's config across files before it distributes it (a rule's expression
against the attribute vocabulary, the handler and instances it names), so a bad rule written
to the directory is refused there, shown on galley's /debug/errors, and never reaches Mixer,
which keeps enforcing the rules it has. Mixer is asked over its own API (istio.mixer.v1 Check,
compressed attributes, real gRPC), as Istio's Mixer clients asked; Istio 1.4's bookinfo
deny-label sample (reviews v3 may not call ratings) is read unchanged. Loopback only, a block
of addresses per test, every wait bounded.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import grpc
import pytest

from galley.server import Galley, GalleyOptions
from mixer.server import Mixer, MixerOptions
from tests.integration.mesh import allocate_block, eventually
from tests.integration.test_mixer_api import Client, no_tasks_left, request_attributes
from tests.support.shared import ISTIO_1_4
from tests.unit.galley.galley_mixer_config import handler, instance, rule
from tests.unit.galley.galley_test_kind import documents

DENY_LABEL = ISTIO_1_4 / "samples" / "bookinfo" / "policy" / "mixer-rule-deny-label.yaml"
PERMISSION_DENIED = 7
WAIT_S = 10.0


@dataclass
class Setup:
    config: Path
    galley: Galley
    mixer: Mixer
    client: Client

    async def status(self, version: str) -> int:
        """The Check verdict for reviews `version` calling ratings."""
        response = await self.client.check(request_attributes("reviews", version))
        code: int = response.precondition.status.code
        return code

    async def enforced(self, denied: set[str], what: str) -> None:
        """Wait until exactly the reviews versions in `denied` are denied."""

        async def probe() -> bool | None:
            for version in ("v1", "v2", "v3"):
                expected = PERMISSION_DENIED if version in denied else 0
                if await self.status(version) != expected:
                    return None
            return True

        await eventually(probe, what)

    async def galley_errors(self) -> dict[str, str]:
        url = f"http://{self.galley.monitoring.host}:{self.galley.monitoring.port}/debug/errors"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            errors: dict[str, str] = await response.json()
            return errors

    async def refused(self, file: Path) -> str:
        """Wait until galley lists `file` as refused; its message."""

        async def probe() -> str | None:
            return (await self.galley_errors()).get(str(file))

        return await eventually(probe, f"galley to refuse {file.name}")


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(DENY_LABEL, config / "deny.yaml")
    block = allocate_block()
    galley_options = GalleyOptions(
        config_dir=config, host=f"{block}.1", grpc_port=0, monitoring_port=0
    )
    async with Galley(galley_options) as galley:
        assert galley.directory is not None
        await asyncio.wait_for(galley.directory.watching.wait(), WAIT_S)
        mixer_options = MixerOptions(
            galley=galley.address, host=f"{block}.2", port=0, monitoring_port=0, telemetry_port=0
        )
        async with Mixer(mixer_options) as mixer, grpc.aio.insecure_channel(mixer.address) as ch:
            ready = Setup(config, galley, mixer, Client(ch))
            await ready.enforced({"v3"}, "mixer to enforce deny-label from galley")
            yield ready
    await no_tasks_left()


async def test_a_bad_rule_is_refused_by_galley_and_mixer_keeps_the_rules_in_force(
    setup: Setup,
) -> None:
    version = setup.galley.store.snapshot.version
    deny = setup.config / "deny.yaml"
    original = deny.read_text()
    # The rule now denies v2 instead, but compares a string with a number: a type error.
    broken = original.replace('source.labels["version"] == "v3"', 'source.labels["version"] == 2')
    assert broken != original
    deny.write_text(broken)

    message = await setup.refused(deny)

    assert message.startswith(f"{deny}: rule default/denyreviewsv3: spec.match: line 1, column ")
    assert "'==' needs operands of one type, got STRING and INT64" in message
    assert setup.galley.store.snapshot.version == version
    await setup.enforced({"v3"}, "mixer to keep denying reviews v3 only")
    # Mixer never saw the bad rule: it refused nothing itself.
    assert setup.mixer.config_error == ""

    # A rule naming a handler that exists nowhere is refused the same way.
    dangling = setup.config / "dangling.yaml"
    dangling.write_text(
        rule(
            "deny-v1",
            match='source.labels["version"] == "v1"',
            handler="nope",
            instances=("denyreviewsv3request",),
        )
    )
    message = await setup.refused(dangling)
    assert message == (
        f"{dangling}: rule default/deny-v1: spec.actions[0].handler: handler 'nope' not found "
        "(as nope.handler.default)"
    )
    await setup.enforced({"v3"}, "mixer to keep denying reviews v3 only")

    # Fixed, the edit goes through galley to mixer.
    deny.write_text(original.replace('"v3"', '"v2"'))
    await setup.enforced({"v2"}, "mixer to deny reviews v2 after the fix")
    assert str(deny) not in await setup.galley_errors()


async def test_deleting_a_handler_a_rule_still_uses_is_refused(setup: Setup) -> None:
    handlers = setup.config / "handlers.yaml"
    handlers.write_text(documents(handler("deny-v1"), instance("nothing-v1")))
    rules = setup.config / "rule-v1.yaml"
    rules.write_text(
        rule(
            "deny-v1",
            match='source.labels["version"] == "v1"',
            handler="deny-v1",
            instances=("nothing-v1",),
        )
    )
    await setup.enforced({"v1", "v3"}, "mixer to deny reviews v1 too")

    handlers.unlink()

    message = await setup.refused(handlers)
    assert message.startswith(f"{handlers}: deleting it breaks rule default/deny-v1 (from {rules})")
    await setup.enforced({"v1", "v3"}, "mixer to keep denying reviews v1 and v3")

    rules.unlink()  # the rule goes, and the handler with it
    await setup.enforced({"v3"}, "mixer to deny reviews v3 only")

    async def gone() -> bool | None:
        return True if str(handlers) not in await setup.galley_errors() else None

    await eventually(gone, "galley to take the handler file's deletion")
    kinds = {key[0] for key in setup.galley.store.snapshot.resources}
    assert "config.istio.io/handler" in kinds  # deny.yaml's handler
    assert ("config.istio.io/handler", "default", "deny-v1") not in (
        setup.galley.store.snapshot.resources
    )
