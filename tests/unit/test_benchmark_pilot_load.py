"""Keep the pilot load benchmark runnable and honest, at a scale of a few proxies.

The numbers in BENCHMARKS.md only mean something if every simulated sidecar really converges
on every change, receives nothing it did not need, and ends with exactly the config pilot says
it serves. The benchmark checks all of that itself (it raises otherwise); this runs it tiny, one
change of each kind, and looks at what it counted, never at the timings.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import pilot_load, pilot_load_config
from pilot.config_files import load_config_directory
from tests.integration.mesh import allocate_block


def test_generated_mesh_is_valid_pilot_input(tmp_path: Path) -> None:
    mesh = pilot_load_config.Mesh(services=5, endpoints=2, proxies=12, namespaces=3)

    written = pilot_load_config.write_mesh(tmp_path, mesh)
    loaded = load_config_directory(tmp_path)

    assert written == 5 + 5 * 2 + 1  # ServiceEntries, WorkloadEntries, the VirtualService
    assert len(loaded.registry.services) == 5
    assert len(loaded.registry.workloads) == 10
    assert len(loaded.istio.virtual_services) == 1
    # Proxies past the services' workloads are clients of their own, in every namespace.
    clients = [w for w in mesh.proxy_workloads() if w.app == "client"]
    assert len(clients) == 2 and len({w.address for w in mesh.proxy_workloads()}) == 12


def test_every_proxy_converges_on_every_change_with_nothing_unneeded() -> None:
    options = pilot_load.Options(
        services=3,
        proxies=4,
        rounds=1,
        clients=1,
        verify=0,
        host=f"{allocate_block()}.250",
        connect_timeout=60,
        change_timeout=30,
    )

    result = pilot_load.run(options)

    assert len(result.connect_s) == 4
    assert set(result.kinds) == set(pilot_load.KINDS)
    for kind in result.kinds.values():
        assert len(kind.latencies_s) == 4 and len(kind.slowest_s) == 1
        assert len(kind.pilot_faults) == 1 and kind.pilot_faults[0] >= 0
    # Counted from /proc (it may be 0: pilot can open four streams in memory it already has).
    assert isinstance(result.connect_pilot_faults, int) and result.connect_pilot_faults >= 0
    assert result.redundant == 0
    assert (result.verified_syncz, result.verified_dump) == (4, 4)
    assert result.stall is not None and result.stall.node.startswith("sidecar~")
    # The bare server was measured after pilot, and every phase is set beside it.
    assert result.baseline is not None
    compared = result.against_baseline()
    assert [phase.label for phase in compared] == ["cold connect", *pilot_load.KINDS]
    assert all(phase.messages >= 1 for phase in compared)  # CPU: too little to read here
    assert "pilot's page faults (minor) per change: cold connect " in pilot_load.report(result)
