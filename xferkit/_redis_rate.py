"""The fleet's rate budgets in Redis, for fleets that have Redis and no PostgreSQL.

Same shape as the PostgreSQL budget (`xferkit._shared_rate`): one hash per venue account,
updated atomically per slot by one Lua script, judged by the Redis server's clock (``TIME``),
so hosts whose clocks disagree still share one timeline; no lock is held across HTTP. Needs
the ``redis`` extra (``pip install 'xferkit[redis]'``: redis-py's asyncio client).

Not ``limits``' async Redis storage: its windows are judged by the host's clock, it has no
adaptive rate or stored hold-off, and a caller cannot ask "a slot within this many seconds,
else take none".
"""

from __future__ import annotations

from typing import Any

from ._clock import Clock
from ._exceptions import InvalidRequestError
from ._shared_rate import DECREASE, FLOOR, RECOVERY_PER_SECOND, SharedLimiter

__all__ = ["RedisRateStore"]

# KEYS[1]: the account's hash. ARGV: configured rate, longest wait (negative: any). Returns the
# seconds until the slot (a string: Lua numbers become integers in replies), or nil (refused).
_TAKE = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local conf, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tat', 'hold', 'rate', 'last_change')
local tat, hold = tonumber(h[1]) or now, tonumber(h[2]) or now
local rate, last_change = tonumber(h[3]) or conf, tonumber(h[4]) or now
if rate < conf and now - last_change >= 1 then
  rate = math.min(conf, rate + conf * {RECOVERY_PER_SECOND} * math.floor(now - last_change))
  last_change = now
end
rate = math.min(rate, conf)
local slot = math.max(tat, hold, now)
if max_wait >= 0 and slot - now > max_wait then return nil end
redis.call('HSET', KEYS[1], 'tat', tostring(slot + 1 / rate), 'rate', tostring(rate),
           'last_change', tostring(last_change))
return tostring(slot - now)
"""

# ARGV: configured rate, halve (1/0), hold-off seconds (negative: the default).
_REPORT = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local conf, halve, pause = tonumber(ARGV[1]), tonumber(ARGV[2]) == 1, tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'hold', 'rate', 'last_change', 'last_decrease')
local hold, rate = tonumber(h[1]) or now, math.min(tonumber(h[2]) or conf, conf)
local last_change, last_decrease = tonumber(h[3]) or now, tonumber(h[4]) or -1e18
if pause < 0 then pause = halve and 1 / rate or 0 end
if halve and now - last_decrease >= 1 then
  rate = math.max(conf * {FLOOR}, rate * {DECREASE})
  last_decrease = now
end
if halve then last_change = math.max(last_change, now + pause) end
redis.call('HSET', KEYS[1], 'hold', tostring(math.max(hold, now + pause)),
           'rate', tostring(rate), 'last_change', tostring(last_change),
           'last_decrease', tostring(last_decrease))
return 1
"""

_STATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local h = redis.call('HMGET', KEYS[1], 'rate', 'hold')
return {h[1] or ARGV[1], tostring((tonumber(h[2]) or -1e18) - now)}
"""


class _RedisBudget:
    """One account's budget: a Redis hash."""

    def __init__(self, store: RedisRateStore, key: str) -> None:
        self._store = store
        self._key = key

    async def take(self, rate: float, max_wait: float | None) -> float | None:
        """One script run; the wait, or ``None`` if refused."""
        wait = await self._store.run(_TAKE, self._key, rate, -1.0 if max_wait is None else max_wait)
        return None if wait is None else float(wait)

    async def report(self, rate: float, *, halve: bool, pause: float | None) -> None:
        """One script run."""
        await self._store.run(
            _REPORT, self._key, rate, int(halve), -1.0 if pause is None else pause
        )

    async def state(self) -> tuple[float, float]:
        """The hash's rate and seconds until its hold-off ends."""
        rate, hold = await self._store.run(_STATE, self._key, 0.0)
        return float(rate), float(hold)


class RedisRateStore:
    """A `RateStore` in Redis: ``Client(..., rate_store="redis://host:6379/0")``.

    Args:
        url: a ``redis://`` or ``rediss://`` URL.
        prefix: the prefix of the budgets' keys (one hash per venue account).
    """

    def __init__(self, url: str, *, prefix: str = "xferkit:rate") -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidRequestError(f"a Redis rate store needs a redis:// URL, not {url!r}")
        self._url = url
        self._prefix = prefix
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RedisRateStore(prefix={self._prefix!r})"  # the URL may hold a password

    def rate_limiter(self, venue: str, account: str, rate: float, clock: Clock) -> SharedLimiter:
        """The fleet's limiter for ``(venue, account)``, kept in Redis."""
        budget = _RedisBudget(self, f"{self._prefix}:{venue}:{account}")
        return SharedLimiter(budget, rate=rate, clock=clock)

    async def run(self, script: str, key: str, *args: float) -> Any:
        """Run one of the budget scripts on ``key``, connecting on first use."""
        if self._redis is None:
            try:
                import redis.asyncio  # noqa: PLC0415
            except ImportError as exc:  # pragma: no cover - exercised without the extra
                raise InvalidRequestError(
                    "a Redis rate store needs redis: pip install 'xferkit[redis]'"
                ) from exc
            self._redis = redis.asyncio.from_url(self._url)
        if script not in self._scripts:
            self._scripts[script] = self._redis.register_script(script)
        return await self._scripts[script](keys=[key], args=[repr(float(a)) for a in args])

    async def aclose(self) -> None:
        """Close the connections; safe to call twice."""
        client, self._redis = self._redis, None
        self._scripts.clear()
        if client is not None:
            await client.aclose()
