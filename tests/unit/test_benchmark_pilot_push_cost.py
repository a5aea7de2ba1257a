"""Keep the in-process push-cost benchmark runnable and its accounting honest, tiny.

The benchmark raises unless every stream got exactly the responses each change calls for
(`EXPECTED`) and pilot took every ACK and subscription they caused; this runs it small and
checks what it counted, never the timings' values."""

from __future__ import annotations

from benchmarks import pilot_push_cost
from meshcore.xds.wire import length_delimited, string_field


def test_every_stream_gets_what_each_change_calls_for_and_the_costs_add_up() -> None:
    options = pilot_push_cost.Options(services=4, proxies=6, rounds=2)

    result = pilot_push_cost.run(options)

    assert result.streams == 6
    assert set(result.kinds) == {"connect", *pilot_push_cost.KINDS}
    for kind, cost in result.kinds.items():
        assert len(cost.total_s) == len(cost.streams_s) == (1 if kind == "connect" else 2)
        assert all(0 < own < total for own, total in zip(cost.streams_s, cost.total_s, strict=True))
        assert all(us > 0 for us in cost.pilot_us_per_stream(result.streams))
    report = pilot_push_cost.report(options, result)
    for kind in ("connect", "endpoint", "route", "service-add", "service-remove"):
        assert f"| {kind} |" in report


def test_the_breakdown_counts_pilots_functions_during_the_chosen_kind_only() -> None:
    options = pilot_push_cost.Options(services=4, proxies=6, rounds=2, breakdown="service-add")

    result = pilot_push_cost.run(options)

    assert result.breakdown is not None
    spent = result.breakdown.spent
    # A service added: every stream gets three responses, each written once by the stand-ins;
    # no endpoints-only push happens during it.
    assert spent["_Stream.write"].calls == 3 * 6 * 2
    assert spent["SnapshotGenerator.full"].calls == 6 * 2
    assert spent["SnapshotGenerator.endpoints_only"].calls == 0
    for owner, name in pilot_push_cost.BREAKDOWN_TARGETS:  # the timers are gone again
        assert not hasattr(vars(owner)[name], "__wrapped__")
    report = pilot_push_cost.report(options, result)
    assert "| SnapshotGenerator.full |" in report


def test_the_connect_breakdown_counts_the_connect_only() -> None:
    options = pilot_push_cost.Options(services=4, proxies=6, rounds=1, breakdown="connect")

    result = pilot_push_cost.run(options)

    assert result.breakdown is not None
    spent = result.breakdown.spent
    # Every stream's four first responses, and one snapshot made for each proxy.
    assert spent["_Stream.write"].calls == 4 * 6
    assert spent["SnapshotGenerator.full"].calls == 6
    assert spent["SnapshotGenerator._own_config"].calls == 6
    assert "| SnapshotGenerator._own_resources |" in pilot_push_cost.report(options, result)


def test_the_envelope_is_read_up_to_the_first_resource() -> None:
    payload = (
        string_field(1, "v7")
        + string_field(4, "type.googleapis.com/x")
        + string_field(5, "3-9")
        + length_delimited(2, string_field(5, "not the nonce"))
    )
    assert pilot_push_cost._envelope(payload, delta=False) == ("v7", "type.googleapis.com/x", "3-9")
    assert pilot_push_cost._envelope(payload, delta=True) == ("v7", "type.googleapis.com/x", "3-9")
