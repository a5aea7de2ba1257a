"""The compiled-in adapters on their own: params as Istio wrote them, verdicts, quotas, metrics."""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from mixer.adapters import ADAPTERS
from mixer.adapters.base import (
    PERMISSION_DENIED,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    Environment,
    Instance,
    ParamsError,
    QuotaArgs,
)
from mixer.adapters.listchecker import ListHandler
from mixer.adapters.memquota import MemQuotaHandler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(value: object) -> Instance:
    return Instance("appversion.instance.default", "listentry", {"value": value})


async def test_denier_answers_its_status() -> None:
    handler = ADAPTERS["denier"].build(
        {"status": {"code": 7, "message": "Not allowed"}, "validDuration": "2s"}, Environment()
    )
    result = await handler.check(Instance("deny.instance.default", "checknothing", {}))
    assert (result.status.code, result.status.message) == (PERMISSION_DENIED, "Not allowed")
    assert result.valid_duration == datetime.timedelta(seconds=2)


def test_params_errors_name_the_field() -> None:
    with pytest.raises(ParamsError, match=r"status\.code"):
        ADAPTERS["denier"].build({"status": {"code": "seven"}}, Environment())
    with pytest.raises(ParamsError, match=r"validDuration: .*invalid duration"):
        ADAPTERS["denier"].build({"validDuration": "2"}, Environment())
    with pytest.raises(ParamsError, match=r"unknownField: Extra inputs"):
        ADAPTERS["memquota"].build({"unknownField": 1}, Environment())
    with pytest.raises(ParamsError, match="invalid IP"):
        ADAPTERS["listchecker"].build(
            {"overrides": ["10.0.0.0/33"], "entryType": "IP_ADDRESSES"}, Environment()
        )


async def test_whitelist_of_strings() -> None:
    handler = ADAPTERS["listchecker"].build(
        {"overrides": ["v1", "v2"], "blacklist": False}, Environment()
    )
    assert (await handler.check(entry("v1"))).status.ok
    denied = await handler.check(entry("v3"))
    assert (denied.status.code, denied.status.message) == (
        PERMISSION_DENIED,
        "v3 is not whitelisted",
    )


async def test_blacklist_of_ip_ranges_takes_addresses_and_text() -> None:
    handler = ADAPTERS["listchecker"].build(
        {
            "overrides": ["10.57.0.0/16", "127.0.0.9"],
            "blacklist": True,
            "entryType": "IP_ADDRESSES",
        },
        Environment(),
    )
    assert (await handler.check(entry(ipaddress.ip_address("10.57.3.4")))).status.code == (
        PERMISSION_DENIED
    )
    assert (await handler.check(entry("127.0.0.9"))).status.code == PERMISSION_DENIED
    assert (await handler.check(entry(ipaddress.ip_address("10.58.0.1")))).status.ok
    assert (await handler.check(entry("not an address"))).status.ok


async def test_regex_and_case_insensitive_lists() -> None:
    regex = ADAPTERS["listchecker"].build(
        {"overrides": ["^/admin", "secret$"], "entryType": "REGEX", "blacklist": True},
        Environment(),
    )
    assert not (await regex.check(entry("/admin/users"))).status.ok
    assert (await regex.check(entry("/public"))).status.ok
    folded = ADAPTERS["listchecker"].build(
        {"overrides": ["John"], "entryType": "CASE_INSENSITIVE_STRINGS"}, Environment()
    )
    assert (await folded.check(entry("JOHN"))).status.ok


async def test_list_from_a_file_is_refreshed(tmp_path: Path) -> None:
    listing = tmp_path / "versions.txt"
    listing.write_text("# allowed versions\nv1\n\nv2  # the new one\n")
    handler = ADAPTERS["listchecker"].build(
        {"providerUrl": f"file://{listing}", "refreshInterval": "60s"}, Environment()
    )
    assert isinstance(handler, ListHandler)
    await handler.start()
    try:
        assert (await handler.check(entry("v2"))).status.ok
        assert not (await handler.check(entry("v3"))).status.ok
        listing.write_text("v3\n")
        assert await handler.refresh()
        assert (await handler.check(entry("v3"))).status.ok
        listing.unlink()
        assert not await handler.refresh()  # the last list stays until its ttl
        assert (await handler.check(entry("v3"))).status.ok
    finally:
        await handler.close()


async def test_list_never_fetched_is_unavailable(tmp_path: Path) -> None:
    handler = ADAPTERS["listchecker"].build(
        {"providerUrl": str(tmp_path / "missing.txt")}, Environment()
    )
    await handler.start()
    try:
        assert (await handler.check(entry("v1"))).status.code == UNAVAILABLE
    finally:
        await handler.close()


QUOTA_PARAMS = {
    "quotas": [
        {
            "name": "requestcountquota.instance.istio-system",
            "maxAmount": 500,
            "validDuration": "1s",
            "overrides": [
                {"dimensions": {"destination": "reviews"}, "maxAmount": 1, "validDuration": "5s"},
                {
                    "dimensions": {"destination": "productpage"},
                    "maxAmount": 2,
                    "validDuration": "5s",
                },
            ],
        }
    ]
}


def quota_instance(destination: str) -> Instance:
    return Instance(
        "requestcountquota.instance.istio-system",
        "quota",
        {"dimensions": {"destination": destination, "source": "unknown"}},
    )


async def test_memquota_window_overrides_and_recovery() -> None:
    clock = Clock()
    handler = ADAPTERS["memquota"].build(QUOTA_PARAMS, Environment(clock=clock))
    one = QuotaArgs(1)
    granted = [(await handler.quota(quota_instance("productpage"), one)).granted for _ in range(3)]
    assert granted == [1, 1, 0]
    refused = await handler.quota(quota_instance("productpage"), one)
    assert refused.status.code == RESOURCE_EXHAUSTED
    assert refused.valid_duration == datetime.timedelta(seconds=5)
    assert (await handler.quota(quota_instance("details"), one)).granted == 1
    clock.now += 5.0
    assert (await handler.quota(quota_instance("productpage"), one)).granted == 1


async def test_memquota_best_effort_and_deduplication() -> None:
    clock = Clock()
    handler = ADAPTERS["memquota"].build(QUOTA_PARAMS, Environment(clock=clock))
    assert isinstance(handler, MemQuotaHandler)
    partial = await handler.quota(quota_instance("productpage"), QuotaArgs(5, best_effort=True))
    assert partial.granted == 2 and partial.status.ok
    clock.now += 5.0
    first = await handler.quota(quota_instance("reviews"), QuotaArgs(1, deduplication_id="a"))
    retry = await handler.quota(quota_instance("reviews"), QuotaArgs(1, deduplication_id="a"))
    assert first.granted == retry.granted == 1
    clock.now += 1.5  # past minDeduplicationDuration, within the 5s window
    again = await handler.quota(quota_instance("reviews"), QuotaArgs(1, deduplication_id="a"))
    assert again.granted == 0


def metric(name: str, value: object, **dimensions: object) -> Instance:
    return Instance(name, "metric", {"value": value, "dimensions": dimensions})


def test_prometheus_counters_and_histograms_survive_rebuilds() -> None:
    env = Environment()
    params = {
        "metrics": [
            {
                "name": "requests_total",
                "instance_name": "requestcount.instance.istio-system",
                "kind": "COUNTER",
                "label_names": ["response_code", "source_workload"],
            },
            {
                "name": "request_duration_milliseconds",
                "instanceName": "requestduration.instance.istio-system",
                "kind": "DISTRIBUTION",
                "labelNames": ["response_code"],
                "buckets": {"explicitBuckets": {"bounds": [1, 5, 10]}},
            },
        ]
    }
    handler = ADAPTERS["prometheus"].build(params, env)
    handler.report(
        [
            metric("requestcount.instance.istio-system", 1, response_code=200),
            metric("requestcount.instance.istio-system", 1, response_code=403),
            metric(
                "requestduration.instance.istio-system",
                datetime.timedelta(milliseconds=3),
                response_code=200,
            ),
        ]
    )
    ADAPTERS["prometheus"].build(params, env).report(
        [metric("requestcount.instance.istio-system", 1, response_code=200)]
    )
    text = generate_latest(env.registry).decode()
    assert 'istio_requests_total{response_code="200",source_workload="unknown"} 2.0' in text
    assert 'istio_requests_total{response_code="403",source_workload="unknown"} 1.0' in text
    assert 'istio_request_duration_milliseconds_bucket{le="5.0",response_code="200"} 1.0' in text
    assert 'istio_request_duration_milliseconds_sum{response_code="200"} 3.0' in text


def test_prometheus_series_expire() -> None:
    clock = Clock()
    env = Environment(clock=clock)
    params = {
        "metrics": [{"name": "hits", "instanceName": "hits.instance.default", "kind": "GAUGE"}],
        "metricsExpirationPolicy": {"metricsExpiryDuration": "10s"},
    }
    handler = ADAPTERS["prometheus"].build(params, env)
    handler.report([metric("hits.instance.default", 7)])
    assert "istio_hits 7.0" in generate_latest(env.registry).decode()
    clock.now += 30
    handler.report([])
    assert "istio_hits 7.0" not in generate_latest(env.registry).decode()


async def test_stdio_writes_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    handler = ADAPTERS["stdio"].build(
        {"logStream": "FILE", "outputPath": str(path), "severityLevels": {"warn": "WARNING"}},
        Environment(),
    )
    handler.report(
        [
            Instance(
                "accesslog.instance.istio-system",
                "logentry",
                {
                    "severity": "warn",
                    "timestamp": datetime.datetime(2024, 5, 1, tzinfo=datetime.UTC),
                    "variables": {
                        "sourceIp": ipaddress.ip_address("10.0.0.1"),
                        "latency": datetime.timedelta(milliseconds=1.5),
                        "responseCode": 200,
                    },
                },
            )
        ]
    )
    await handler.close()
    line = json.loads(path.read_text())
    assert line == {
        "level": "warning",
        "time": "2024-05-01T00:00:00+00:00",
        "instance": "accesslog.instance.istio-system",
        "sourceIp": "10.0.0.1",
        "latency": "1.500ms",
        "responseCode": 200,
    }
