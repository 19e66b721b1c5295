"""The database pool's queue: how long its oldest step has waited, and agent calls whose agent
hung up before their step started, which never run.

In process, against the real pool (`core.async_db`) and the agent API's real ASGI stack: the
pool's threads are kept busy by steps that wait on an event, so that a step queued behind them
waits for as long as the test says.
"""

from __future__ import annotations

import asyncio
import threading
from unittest import mock

from asgiref.testing import ApplicationCommunicator
from django.conf import settings

from config.handlers import AgentAPIHandler
from core.async_db import queue_delay, run_db
from projects.agent_api import AgentView

HEARTBEAT = {
    "type": "http",
    "method": "POST",
    "path": "/api/v1/agent/heartbeat",
    "query_string": b"",
    "headers": [(b"content-type", b"application/json"), (b"host", b"127.0.0.1")],
    "http_version": "1.1",
    "scheme": "http",
    "server": ("127.0.0.1", 80),
    "client": ("127.0.0.1", 1),
}


class BusyPool:
    """Every thread of the pool held by a step that waits for `release`, and `queued` more
    steps waiting behind them; the queued ones record that they ran."""

    def __init__(self, queued: int = 1) -> None:
        self.release = threading.Event()
        self.started = threading.Semaphore(0)
        self.ran: list[int] = []
        self.queued = queued
        self.tasks: list[asyncio.Task] = []

    def _hold(self) -> None:
        self.started.release()
        assert self.release.wait(10)

    async def __aenter__(self) -> BusyPool:
        for _ in range(settings.AGENT_DB_THREADS):
            self.tasks.append(asyncio.create_task(run_db(self._hold)))
        for _ in range(settings.AGENT_DB_THREADS):
            assert await asyncio.to_thread(self.started.acquire, True, 10)
        for number in range(self.queued):
            self.tasks.append(asyncio.create_task(run_db(self.ran.append, number)))
        await asyncio.sleep(0)  # the queued steps are submitted
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.release.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def test_queue_delay_is_the_wait_of_the_oldest_step_not_yet_started():
    async def scenario() -> tuple[float, float, float, list[int]]:
        before = queue_delay()
        async with BusyPool(queued=2) as pool:
            await asyncio.sleep(0.3)
            waiting = queue_delay()
        return before, waiting, queue_delay(), pool.ran

    before, waiting, after, ran = asyncio.run(scenario())

    assert before == 0.0
    assert 0.25 < waiting < 5
    assert after == 0.0  # every step started and ended
    assert ran == [0, 1]


def test_a_step_whose_caller_stopped_waiting_before_it_started_stops_counting():
    async def scenario() -> tuple[float, float, list[int]]:
        async with BusyPool(queued=1) as pool:
            await asyncio.sleep(0.1)
            waiting = queue_delay()
            given_up = pool.tasks[-1]
            given_up.cancel()
            await asyncio.gather(given_up, return_exceptions=True)
            after_cancel = queue_delay()
        return waiting, after_cancel, pool.ran

    waiting, after_cancel, ran = asyncio.run(scenario())

    assert waiting > 0.05
    assert after_cancel == 0.0
    assert ran == []  # the pool never ran it


def test_an_agent_call_whose_agent_hung_up_before_its_step_started_never_runs():
    """Past its capacity a process is behind on calls whose agents gave up; their work is
    dropped, not done for nobody (BENCHMARKS.md, finding 24)."""
    steps = []
    dispatch = AgentView._dispatch_rendered

    def counted(self, request, *args, **kwargs):
        steps.append(request.path)
        return dispatch(self, request, *args, **kwargs)

    async def scenario():
        app = AgentAPIHandler()
        async with BusyPool(queued=0):
            gone = ApplicationCommunicator(app, dict(HEARTBEAT))
            await gone.send_input({"type": "http.request", "body": b"{}"})
            stays = ApplicationCommunicator(app, dict(HEARTBEAT))
            await stays.send_input({"type": "http.request", "body": b"{}"})
            await asyncio.sleep(0.2)
            queued = queue_delay()
            await gone.send_input({"type": "http.disconnect"})
            await asyncio.sleep(0.1)
            ended_at_once = gone.future.done()  # not waiting for its step
            waiting_after_hang_up = queue_delay()
        await gone.wait(5)
        answer = await stays.receive_output(5)
        await stays.receive_output(5)
        return queued, ended_at_once, waiting_after_hang_up, answer["status"]

    with mock.patch.object(AgentView, "_dispatch_rendered", counted):
        queued, ended_at_once, waiting_after_hang_up, status = asyncio.run(scenario())

    assert queued > 0.1  # both calls' steps were waiting for a thread
    assert ended_at_once
    assert waiting_after_hang_up > 0  # the other one still is
    assert status == 401  # no token: its step ran and refused it
    assert steps == ["/api/v1/agent/heartbeat"]  # one step ran: the call still there
