"""The permit line (``--max-concurrent-requests`` in arrival order), stepped by hand, and its
event-loop view (waking, deadlines, cancellation)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tei_ort.serving.permits import Claim, PermitLine, Permits


def test_a_single_input_takes_its_permit_at_once_or_gets_none() -> None:
    line = PermitLine(2)
    first = line.try_claim(1)
    assert first is not None and first.granted == 1 and first.need == 0
    assert line.try_claim(2) is None  # one left: not enough, nothing taken
    assert line.try_claim(1) is not None and line.free == 0
    assert line.try_claim(1) is None


def test_the_oldest_request_gets_all_its_permits_before_a_younger_gets_any() -> None:
    line = PermitLine(4)
    old = line.join(6)
    assert (old.granted, old.need, line.free) == (4, 2, 0)
    assert line.take(old) == 4 and old.granted == 0
    young = line.join(3)
    younger = line.join(1)
    line.release(1)  # to the old request, not to the younger ones, though they need fewer
    assert (old.granted, old.need, young.granted) == (1, 1, 0)
    # two come back: the old request's last one, then the young one's first
    line.release(2)
    assert (old.need, old.granted, young.granted, young.need, younger.granted) == (0, 2, 1, 2, 0)
    line.release(3)
    assert (young.granted, younger.granted, line.free, len(line)) == (3, 1, 0, 0)


def test_while_anyone_waits_a_single_input_is_refused() -> None:
    line = PermitLine(2)
    batch = line.join(3)
    assert line.take(batch) == 2
    assert line.try_claim(1) is None
    line.release(1)  # goes to the batch, not to the free pool
    assert line.free == 0 and batch.granted == 1 and line.try_claim(1) is None
    line.release(1)
    assert line.free == 1 and line.try_claim(1) is not None


def test_leaving_returns_what_was_granted_and_not_taken_to_the_next_in_line() -> None:
    line = PermitLine(3)
    first = line.join(5)
    second = line.join(2)
    third = line.join(1)
    line.leave(second)  # from the middle of the line: never granted anything
    assert second.need == 0 and len(line) == 2  # the first and the third
    line.leave(first)  # its 3 untaken permits go on
    assert line.next_to_take() is third
    assert (third.granted, line.free) == (1, 2)
    line.leave(first)  # twice: nothing more
    assert line.free == 2
    line.leave(third)
    assert line.free == 3 and len(line) == 0


def test_a_request_larger_than_the_pool_runs_in_chunks() -> None:
    line = PermitLine(2)
    big = line.join(5)
    taken = [line.take(big)]
    while big.need or big.granted:
        line.release(taken[-1])  # the chunk ran
        taken.append(line.take(big))
    assert taken == [2, 2, 1] and line.free == 1


def test_places_of_one_body_are_side_by_side_whatever_arrives_between() -> None:
    permits = Permits(1)
    holder = permits.try_claim(1)
    assert holder is not None
    parts = permits.claims([2, 1])
    later = permits.claim(1)
    order: list[Claim] = []
    for _ in range(4):
        permits.release(1)
        for claim in (*parts, later):
            if claim.granted:
                permits.take(claim)
                order.append(claim)
    assert order == [parts[0], parts[0], parts[1], later]


def test_granted_permits_are_taken_in_grant_order() -> None:
    line = PermitLine(4)
    older, younger = line.join(2), line.join(2)  # both granted at once
    single = line.try_claim(1)
    assert single is None  # none free: a single input is refused at once
    assert line.may_take(older) and not line.may_take(younger)
    assert line.next_to_take() is older
    assert line.take(older) == 2
    assert line.may_take(younger) and line.next_to_take() is younger
    line.leave(younger)  # gives back its 2 untaken permits
    assert line.next_to_take() is None and line.free == 2
    now = line.try_claim(1)
    assert now is not None and line.may_take(now)  # a single input takes out of turn


def test_zero_inputs_take_no_place() -> None:
    line = PermitLine(1)
    claim = line.join(0)
    assert len(line) == 0 and claim.need == claim.granted == 0


async def settle() -> None:
    """Let woken tasks run (asyncio.wait wakes its caller through a callback or two)."""
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.anyio
async def test_waiting_wakes_the_granted_claim_only() -> None:
    permits = Permits(1)
    holder = permits.try_claim()
    assert holder is not None
    old, young = permits.claim(1), permits.claim(1)
    woken: list[str] = []

    async def wait(name: str, claim: Claim) -> None:
        assert await permits.wait(claim)
        woken.append(name)

    tasks = [asyncio.ensure_future(wait("young", young)), asyncio.ensure_future(wait("old", old))]
    await settle()
    permits.release(1)
    await settle()
    assert woken == ["old"] and permits.waiting == 1
    permits.take(old)
    permits.release(1)
    await asyncio.gather(*tasks)
    assert woken == ["old", "young"]


@pytest.mark.anyio
async def test_a_deadline_ends_the_wait_without_permits() -> None:
    permits = Permits(1)
    assert permits.try_claim() is not None
    claim = permits.claim(2)
    started = time.monotonic()
    assert not await permits.wait(claim, started + 0.05)
    assert time.monotonic() - started >= 0.04
    assert not await permits.wait(claim, started)  # past already: no wait
    permits.leave(claim)
    permits.release(1)
    assert permits.free == 1 and permits.waiting == 0


@pytest.mark.anyio
async def test_a_cancelled_wait_keeps_its_place_until_it_leaves() -> None:
    permits = Permits(1)
    assert permits.try_claim() is not None
    claim = permits.claim(1)
    task = asyncio.ensure_future(permits.wait(claim))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    permits.release(1)
    assert claim.granted == 1 and permits.free == 0  # granted while nobody waited
    permits.leave(claim)  # what the request does as it fails
    assert permits.free == 1 and permits.try_claim() is not None


def test_thousands_of_places_leave_without_disturbing_the_line() -> None:
    line = PermitLine(1)
    holder = line.try_claim(1)
    older = line.join(1)
    body = [line.join(1) for _ in range(20_000)]  # a /vertex body of one-text instances
    younger = line.join(1)
    for place in body:  # the body failed: every place leaves
        line.leave(place)
    assert len(line) == 2
    assert holder is not None
    line.release(1)
    assert older.granted == 1 and line.take(older) == 1
    line.release(1)
    assert younger.granted == 1  # the places that left are passed over
    assert line.take(younger) == 1 and len(line) == 0
    line.release(2)
    assert line.free == 2
    assert line.try_claim(2) is not None
