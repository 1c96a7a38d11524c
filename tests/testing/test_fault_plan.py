"""FaultPlan: forced faults first, then seeded random draws, counted per kind."""

from __future__ import annotations

import pytest

from xferkit.testing import Fault, FaultPlan


def draws(plan: FaultPlan, n: int) -> list[Fault | None]:
    return [plan.next_fault() for _ in range(n)]


def test_default_plan_injects_nothing() -> None:
    """A plan with the default rate of 0 never draws a fault."""
    plan = FaultPlan()
    assert draws(plan, 100) == [None] * 100
    assert sum(plan.injected.values()) == 0


def test_same_seed_same_faults() -> None:
    """Two plans with the same seed draw the same sequence, so a failing run replays."""
    first = draws(FaultPlan(rate=0.5, seed=42), 200)
    assert first == draws(FaultPlan(rate=0.5, seed=42), 200)
    assert first != draws(FaultPlan(rate=0.5, seed=43), 200)


def test_rate_is_roughly_honoured() -> None:
    """About ``rate`` of the requests draw a fault."""
    hits = sum(f is not None for f in draws(FaultPlan(rate=0.25, seed=1), 4000))
    assert 800 < hits < 1200


def test_kinds_restrict_random_draws() -> None:
    """Random draws only pick from ``kinds``."""
    kinds = {Fault.DROP_AFTER, Fault.RATE_LIMIT}
    drawn = set(draws(FaultPlan(rate=1.0, kinds=list(kinds), seed=3), 100))
    assert drawn == kinds


def test_forced_faults_come_first_in_order() -> None:
    """Forced faults are used before random ones, in the order forced, then random draws resume."""
    plan = FaultPlan(rate=1.0, kinds=[Fault.RATE_LIMIT], seed=0)
    plan.force(Fault.DROP_AFTER, times=2)
    plan.force(Fault.CLOCK_SKEW)
    assert draws(plan, 4) == [
        Fault.DROP_AFTER,
        Fault.DROP_AFTER,
        Fault.CLOCK_SKEW,
        Fault.RATE_LIMIT,
    ]


def test_disabled_plan_injects_nothing_and_keeps_forced_faults() -> None:
    """Turning a plan off stops every fault; forced ones wait until it is turned on again."""
    plan = FaultPlan(rate=1.0, seed=0)
    plan.force(Fault.DROP_BEFORE)
    plan.enabled = False
    assert draws(plan, 10) == [None] * 10
    assert plan.forced == (Fault.DROP_BEFORE,)
    plan.enabled = True
    assert plan.next_fault() is Fault.DROP_BEFORE


def test_injected_counts_every_kind() -> None:
    """``injected`` counts each fault handed out, with every kind present from the start."""
    plan = FaultPlan()
    plan.force(Fault.DROP_AFTER, times=2)
    plan.force(Fault.RATE_LIMIT)
    draws(plan, 5)
    assert plan.injected[Fault.DROP_AFTER] == 2
    assert plan.injected[Fault.RATE_LIMIT] == 1
    assert plan.injected[Fault.CLOCK_SKEW] == 0
    assert set(plan.injected) == set(Fault)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_rate_must_be_a_probability(rate: float) -> None:
    """A rate outside 0..1 is refused."""
    with pytest.raises(ValueError, match="rate"):
        FaultPlan(rate=rate)


def test_positive_rate_needs_kinds() -> None:
    """A plan that should inject faults but may choose none is refused."""
    with pytest.raises(ValueError, match="kind"):
        FaultPlan(rate=0.5, kinds=[])


def test_force_needs_a_positive_count() -> None:
    """Forcing a fault zero times is refused rather than silently ignored."""
    with pytest.raises(ValueError, match="times"):
        FaultPlan().force(Fault.DROP_AFTER, times=0)
