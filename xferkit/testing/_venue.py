"""What `FakeXT` and `FakeHTX` share: clocks, balances, the request log, the audit and faults.

Each fake keeps its own wire format, signature check and business rules; this base keeps the
state both need, so a fix to how balances move or requests are logged is made once.
"""

from __future__ import annotations

import decimal
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal

from .._clock import SYSTEM_CLOCK, Clock
from ._faults import Fault, FaultPlan, after_processing, before_processing
from ._sim import Execution, ReceivedRequest, Refuse, SimAction, SimRequest, SimResponse

__all__ = ["MONEY", "SimulatedVenue", "initial_balances", "plain_decimal"]

# Exact money: an operation that would round raises instead of losing a digit.
MONEY = decimal.Context(prec=1000, traps=[decimal.Inexact, decimal.InvalidOperation])
_DEFAULT_FUNDS: Mapping[str, Decimal] = {"usdt": Decimal("1000000"), "btc": Decimal("100")}


def plain_decimal(text: str) -> Decimal:
    """Parse a JSON number with a fraction exactly; one with an exponent is not valid here.

    Use as ``json.loads(..., parse_float=plain_decimal)``: the venues take plain decimals only,
    and the ``ValueError`` makes the body unreadable, as it is to them.
    """
    if "e" in text.lower():
        raise ValueError(f"{text} has an exponent")
    return Decimal(text)


def initial_balances(
    balances: Mapping[str, Mapping[str, Decimal]] | None, accounts: Sequence[str], venue: str
) -> dict[str, dict[str, Decimal]]:
    """Every native account's funds: ``balances`` checked, or 1,000,000 usdt and 100 btc each."""
    if balances is None:
        return {account: dict(_DEFAULT_FUNDS) for account in accounts}
    result: dict[str, dict[str, Decimal]] = {account: {} for account in accounts}
    for account, funds in balances.items():
        if account not in result:
            raise ValueError(f"{account!r} is not an {venue} account; use one of {tuple(accounts)}")
        for currency, amount in funds.items():
            if currency != currency.lower() or not isinstance(amount, Decimal) or amount < 0:
                raise ValueError(
                    "balances need lowercase currencies and non-negative Decimal amounts, "
                    f"not {currency!r}: {amount!r}"
                )
            result[account][currency] = amount
    return result


class SimulatedVenue:
    """The state a simulated venue keeps besides its rules: subclass it, don't use it alone.

    Args:
        clock: the venue's clock; `skew_ms` is added to it.
        balances: native account to lowercase currency to amount (see `initial_balances`).
        accounts: the venue's native account names.
        faults: the plan that injects faults into transfer requests.
        host: the host the transport routes to this venue.
    """

    name = "venue"
    label = "venue"

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        balances: Mapping[str, Mapping[str, Decimal]] | None,
        accounts: Sequence[str],
        faults: FaultPlan | None,
        host: str,
    ) -> None:
        self.host = host
        self.faults = faults
        self.skew_ms = 0
        """Milliseconds the venue's clock runs ahead of ``clock`` (negative: behind)."""
        self._clock = clock
        self._balances = initial_balances(balances, accounts, self.label)
        self._currencies = frozenset(c for funds in self._balances.values() for c in funds)
        self._audit: list[Execution] = []
        self._requests: list[ReceivedRequest] = []
        # handle() never awaits, so tasks cannot interleave inside it; the lock is for a
        # loopback server run from another thread.
        self._lock = threading.Lock()

    @property
    def audit(self) -> Sequence[Execution]:
        """Every transfer that really executed, in order."""
        return tuple(self._audit)

    @property
    def requests(self) -> Sequence[ReceivedRequest]:
        """Every request that reached the venue, in order (refused connections excluded)."""
        return tuple(self._requests)

    def server_time_ms(self) -> int:
        """The venue's clock in Unix milliseconds, skew included."""
        return int(self._clock.time() * 1000) + self.skew_ms

    def _record(self, request: SimRequest, fault: Fault | None) -> None:
        received = ReceivedRequest(
            request=request, clock_time=self._clock.time(), real_time=time.time(), fault=fault
        )
        self._requests.append(received)

    def _strike(self, request: SimRequest) -> tuple[Fault | None, SimAction | None]:
        """Draw a transfer request's fault and record the request unless it never arrived.

        Returns the fault and, when the fault decides the answer before any processing (a
        refused or dropped connection, a 5xx, a 429...), that answer.
        """
        fault = self.faults.next_fault() if self.faults is not None else None
        early = before_processing(fault)
        if not isinstance(early, Refuse):
            self._record(request, fault)
        return fault, early

    def _skewed(self, fault: Fault | None) -> bool:
        """Whether ``fault`` is clock skew; if so the venue's clock jumps by the plan's skew."""
        if self.faults is None or fault is not Fault.CLOCK_SKEW:
            return False
        self.skew_ms += self.faults.skew_ms
        return True

    def _after(self, fault: Fault | None, answer: SimResponse) -> SimAction:
        """The answer as a fault that strikes after processing leaves it (lost, 5xx, slow)."""
        return answer if self.faults is None else after_processing(self.faults, fault, answer)

    def _move(
        self,
        *,
        source: str,
        target: str,
        currency: str,
        amount: Decimal,
        transfer_id: str,
        biz_id: str | None = None,
        symbol: str | None = None,
    ) -> Execution:
        """Move ``amount`` and audit it; both sides are computed before either is written."""
        debited = MONEY.subtract(self._balances[source].get(currency, Decimal(0)), amount)
        credited = MONEY.add(self._balances[target].get(currency, Decimal(0)), amount)
        self._balances[source][currency] = debited
        self._balances[target][currency] = credited
        execution = Execution(
            venue=self.name,
            biz_id=biz_id,
            from_account=source,
            to_account=target,
            currency=currency,
            amount=amount,
            transfer_id=transfer_id,
            executed_at=datetime.fromtimestamp(self._clock.time(), tz=timezone.utc),
            symbol=symbol,
        )
        self._audit.append(execution)
        return execution
