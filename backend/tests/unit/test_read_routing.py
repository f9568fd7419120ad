"""The barrier's single flight: a read only uses the primary's answer to a question sent after it began."""

from __future__ import annotations

import asyncio

import pytest

from app.services.read_routing import PrimaryPosition


class ScriptedPrimary:
    """A primary whose every answer the test gives: `next_question()`, then set its result."""

    def __init__(self) -> None:
        self.asked = 0
        self._questions: asyncio.Queue[asyncio.Future[int]] = asyncio.Queue()

    async def fetch(self) -> int:
        self.asked += 1
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self._questions.put(answer)
        return await answer

    async def next_question(self) -> asyncio.Future[int]:
        return await self._questions.get()


async def test_a_read_that_comes_while_a_question_is_on_its_way_waits_for_the_next_one() -> None:
    primary = ScriptedPrimary()
    position = PrimaryPosition(primary.fetch)
    first = asyncio.create_task(position.after_now())
    question = await primary.next_question()  # question 1 is on its way
    later = [asyncio.create_task(position.after_now()) for _ in range(5)]
    await asyncio.sleep(0)
    question.set_result(1)
    assert await first == 1
    (await primary.next_question()).set_result(2)
    # Every read that came while question 1 was out shares question 2, sent after all of them.
    assert await asyncio.gather(*later) == [2] * 5
    assert primary.asked == 2


async def test_reads_that_come_together_share_one_question() -> None:
    primary = ScriptedPrimary()
    position = PrimaryPosition(primary.fetch)
    reads = [asyncio.create_task(position.after_now()) for _ in range(3)]
    (await primary.next_question()).set_result(1)
    (await primary.next_question()).set_result(2)
    # The first read sent question 1; the two after it (queued while it was out) share question 2.
    assert await asyncio.gather(*reads) == [1, 2, 2]
    assert primary.asked == 2


async def test_a_failed_question_fails_its_reads_and_the_next_read_asks_again() -> None:
    answers: list[int | Exception] = [ConnectionError("primary gone"), 7]

    async def fetch() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    position = PrimaryPosition(fetch)
    with pytest.raises(ConnectionError):
        await position.after_now()
    assert await position.after_now() == 7


async def test_a_read_that_gives_up_leaves_the_others_their_answer() -> None:
    primary = ScriptedPrimary()
    position = PrimaryPosition(primary.fetch)
    impatient = asyncio.create_task(position.after_now())
    patient = asyncio.create_task(position.after_now())
    question = await primary.next_question()
    impatient.cancel()
    question.set_result(1)
    (await primary.next_question()).set_result(2)
    assert await patient == 2
    with pytest.raises(asyncio.CancelledError):
        await impatient
