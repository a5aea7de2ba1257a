"""redisquota: rate limits counted in Redis, so every Mixer replica shares one allowance.

Params as Istio 1.4's: `redisServerUrl` (`host:port` or a `redis://` URL),
`connectionPoolSize`, and `quotas`, each with the instance it counts (`name`, fully
qualified), `maxAmount`, `validDuration` (the window), `bucketDuration` (the rolling window's
resolution), `rateLimitAlgorithm` (`FIXED_WINDOW`, the default, or `ROLLING_WINDOW`) and
`overrides` (the first whose `dimensions` all equal the instance's gets its own `maxAmount`).

Every allocation is one Lua script run in Redis, so reading what is used and charging it is
atomic across Mixers, and windows are timed by Redis' clock, not by each Mixer's:

- FIXED_WINDOW: one counter per set of dimension values that expires `validDuration` after
  its first allocation (a new window then starts with the next one).
- ROLLING_WINDOW: a hash of per-bucket amounts (bucket = Redis time // `bucketDuration`); an
  allocation counts the buckets of the last `validDuration` and drops older ones, so at most
  validDuration / bucketDuration + 1 fields live per key.

Redis is reached lazily (a handler whose server is unreachable still loads, as Istio's did);
commands are bounded by a socket timeout, and a Redis error answers UNAVAILABLE with nothing
granted, so the client's fail-open or fail-closed policy decides. Deduplication ids are not
used, as in Istio's redisquota. Template: quota.
"""

from __future__ import annotations

import datetime
import enum
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import redis.asyncio
from pydantic import BaseModel, Field, model_validator
from redis.exceptions import RedisError

from mixer.adapters.base import (
    PARAMS_CONFIG,
    RESOURCE_EXHAUSTED,
    UNAVAILABLE,
    DurationParam,
    Environment,
    Handler,
    Instance,
    QuotaArgs,
    QuotaResult,
    Status,
    parse_params,
)

log = logging.getLogger(__name__)

SOCKET_TIMEOUT = 1.0  # seconds a Redis command (or a connect) may take before UNAVAILABLE
POOL_WAIT = 1.0  # seconds an allocation waits for a free pooled connection
KEY_PREFIX = "mixer:redisquota:"

# ARGV: max amount, amount wanted, best effort (0/1), window ms. Returns {granted, ms left}.
FIXED_WINDOW_SCRIPT = """
local max, amount, best_effort, window = tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), tonumber(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local available = math.max(max - used, 0)
local granted = amount
if amount > available then
  granted = best_effort == 1 and available or 0
end
if granted > 0 then
  redis.call('INCRBY', KEYS[1], granted)
end
local left = redis.call('PTTL', KEYS[1])
if granted > 0 and left < 0 then
  redis.call('PEXPIRE', KEYS[1], window)
  left = window
end
return {granted, math.max(left, 0)}
"""

# ARGV as above, then bucket ms. Returns {granted, ms until the oldest counted bucket leaves}.
ROLLING_WINDOW_SCRIPT = """
local max, amount, best_effort, window, bucket_ms = tonumber(ARGV[1]), tonumber(ARGV[2]),
    tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local bucket = math.floor(now / bucket_ms)
local oldest = bucket - math.ceil(window / bucket_ms) + 1
local fields = redis.call('HGETALL', KEYS[1])
local used, first = 0, bucket
for i = 1, #fields, 2 do
  local b = tonumber(fields[i])
  if b < oldest then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    used = used + tonumber(fields[i + 1])
    first = math.min(first, b)
  end
end
local available = math.max(max - used, 0)
local granted = amount
if amount > available then
  granted = best_effort == 1 and available or 0
end
if granted > 0 then
  redis.call('HINCRBY', KEYS[1], bucket, granted)
  redis.call('PEXPIRE', KEYS[1], window + bucket_ms)
end
return {granted, (first + math.ceil(window / bucket_ms)) * bucket_ms - now}
"""


class Algorithm(enum.Enum):
    FIXED_WINDOW = "FIXED_WINDOW"
    ROLLING_WINDOW = "ROLLING_WINDOW"


class OverrideParams(BaseModel):
    model_config = PARAMS_CONFIG
    dimensions: dict[str, str] = Field(min_length=1)
    max_amount: int = Field(gt=0)


class QuotaParams(BaseModel):
    model_config = PARAMS_CONFIG
    name: str = Field(min_length=1)
    max_amount: int = Field(gt=0)
    valid_duration: DurationParam
    bucket_duration: DurationParam = datetime.timedelta(0)
    rate_limit_algorithm: Algorithm = Algorithm.FIXED_WINDOW
    overrides: list[OverrideParams] = []

    @model_validator(mode="after")
    def _durations(self) -> QuotaParams:
        """Istio's checks: a window is needed, and a rolling one needs buckets inside it."""
        if self.valid_duration <= datetime.timedelta(0):
            raise ValueError("validDuration must be greater than zero")
        if self.rate_limit_algorithm is Algorithm.ROLLING_WINDOW and not (
            datetime.timedelta(0) < self.bucket_duration < self.valid_duration
        ):
            raise ValueError("ROLLING_WINDOW needs 0 < bucketDuration < validDuration")
        return self


class RedisQuotaParams(BaseModel):
    model_config = PARAMS_CONFIG
    redis_server_url: str = Field(min_length=1)
    connection_pool_size: int = Field(default=10, gt=0)
    quotas: list[QuotaParams] = []


def server_url(value: str) -> str:
    """Istio wrote `host:port`; redis-py wants a URL."""
    return value if "://" in value else f"redis://{value}"


def quota_key(name: str, dimensions: Mapping[str, str]) -> str:
    """One key per quota and set of dimension values, order-independent."""
    parts = ";".join(f"{k}={v}" for k, v in sorted(dimensions.items()))
    return f"{KEY_PREFIX}{name};{parts}"


class RedisQuotaHandler(Handler):
    def __init__(self, params: RedisQuotaParams) -> None:
        self._quotas = {quota.name: quota for quota in params.quotas}
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            server_url(params.redis_server_url),
            max_connections=params.connection_pool_size,
            timeout=POOL_WAIT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
        )
        self._client = redis.asyncio.Redis(connection_pool=pool)
        self._scripts = {
            Algorithm.FIXED_WINDOW: self._client.register_script(FIXED_WINDOW_SCRIPT),
            Algorithm.ROLLING_WINDOW: self._client.register_script(ROLLING_WINDOW_SCRIPT),
        }
        self._unknown_warned: set[str] = set()

    async def close(self) -> None:
        await self._client.aclose()

    @staticmethod
    def max_amount(quota: QuotaParams, dimensions: Mapping[str, str]) -> int:
        for override in quota.overrides:
            if all(dimensions.get(k) == v for k, v in override.dimensions.items()):
                return override.max_amount
        return quota.max_amount

    async def quota(self, instance: Instance, args: QuotaArgs) -> QuotaResult:
        quota = self._quotas.get(instance.name)
        if quota is None:
            if instance.name not in self._unknown_warned:
                self._unknown_warned.add(instance.name)
                log.warning("redisquota has no quota named %s: not limited", instance.name)
            return QuotaResult(args.amount)
        raw = instance.fields.get("dimensions") or {}
        dimensions = {str(k): v if isinstance(v, str) else str(v) for k, v in raw.items()}
        window_ms = _milliseconds(quota.valid_duration)
        argv = [self.max_amount(quota, dimensions), args.amount, int(args.best_effort), window_ms]
        if quota.rate_limit_algorithm is Algorithm.ROLLING_WINDOW:
            argv.append(_milliseconds(quota.bucket_duration))
        script = self._scripts[quota.rate_limit_algorithm]
        try:
            granted, left_ms = await script(keys=[quota_key(quota.name, dimensions)], args=argv)
        except (RedisError, OSError) as error:
            log.warning("redisquota allocation for %s failed: %s", quota.name, error)
            return QuotaResult(0, status=Status(UNAVAILABLE, f"redisquota: {error}"))
        valid = datetime.timedelta(milliseconds=int(left_ms))
        if granted < args.amount and not args.best_effort:
            return QuotaResult(0, valid, Status(RESOURCE_EXHAUSTED, f"quota {quota.name} exceeded"))
        return QuotaResult(int(granted), valid)


def _milliseconds(duration: datetime.timedelta) -> int:
    return max(int(duration.total_seconds() * 1000), 1)


class RedisQuota:
    name: ClassVar[str] = "redisquota"
    templates: ClassVar[frozenset[str]] = frozenset({"quota"})

    def build(self, params: Mapping[str, Any], env: Environment) -> Handler:
        return RedisQuotaHandler(parse_params(RedisQuotaParams, params))


ADAPTER = RedisQuota()
