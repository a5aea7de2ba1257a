"""redisquota without a server: params checked as Istio checked them, and Redis being
unreachable answers UNAVAILABLE rather than granting or hanging. Allocation against a real
redis-server is in tests/integration/test_mixer_redisquota.py."""

from __future__ import annotations

import socket

import pytest

from mixer.adapters import ADAPTERS
from mixer.adapters.base import UNAVAILABLE, Environment, Instance, ParamsError, QuotaArgs
from mixer.adapters.redisquota import quota_key, server_url


def params(**quota: object) -> dict[str, object]:
    return {
        "redisServerUrl": "127.0.0.1:6379",
        "quotas": [{"name": "q.instance.istio-system", "maxAmount": 1, **quota}],
    }


def test_params_need_a_window_and_rolling_buckets_inside_it() -> None:
    with pytest.raises(ParamsError, match="validDuration"):
        ADAPTERS["redisquota"].build(params(), Environment())
    with pytest.raises(ParamsError, match="bucketDuration"):
        ADAPTERS["redisquota"].build(
            params(validDuration="1s", rateLimitAlgorithm="ROLLING_WINDOW"), Environment()
        )
    with pytest.raises(ParamsError, match="bucketDuration"):
        ADAPTERS["redisquota"].build(
            params(validDuration="1s", bucketDuration="2s", rateLimitAlgorithm="ROLLING_WINDOW"),
            Environment(),
        )
    with pytest.raises(ParamsError, match="rateLimitAlgorithm"):
        ADAPTERS["redisquota"].build(
            params(validDuration="1s", rateLimitAlgorithm="LEAKY"), Environment()
        )
    with pytest.raises(ParamsError, match="redisServerUrl"):
        ADAPTERS["redisquota"].build({"quotas": []}, Environment())


def test_keys_ignore_dimension_order_and_urls_take_istio_addresses() -> None:
    assert quota_key("q", {"a": "1", "b": "2"}) == quota_key("q", {"b": "2", "a": "1"})
    assert quota_key("q", {"a": "1"}) != quota_key("q", {"a": "2"})
    assert server_url("redis-release-master:6379") == "redis://redis-release-master:6379"
    assert server_url("rediss://cache:6380/1") == "rediss://cache:6380/1"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_redis_is_unavailable_and_unknown_quotas_unlimited() -> None:
    handler = ADAPTERS["redisquota"].build(
        {
            "redisServerUrl": f"127.0.0.1:{closed_port()}",
            "quotas": [{"name": "q.instance.istio-system", "maxAmount": 5, "validDuration": "1s"}],
        },
        Environment(),
    )
    try:
        down = await handler.quota(
            Instance("q.instance.istio-system", "quota", {"dimensions": {}}), QuotaArgs(1)
        )
        other = await handler.quota(Instance("other.instance.x", "quota", {}), QuotaArgs(3))
    finally:
        await handler.close()
    assert (down.granted, down.status.code) == (0, UNAVAILABLE)
    assert (other.granted, other.status.ok) == (3, True)
