"""Schema-driven fuzzing: every operation in `openapi.yaml`, against a real uvicorn server.

schemathesis generates requests from the committed schema — valid ones and deliberately invalid
ones — and sends them over HTTP as a person (the owner of the seeded projects, and staff) and as
a node's agent. Every answer must be a documented status with a body that matches the schema,
never a 5xx; every invalid request must be refused; and an operation that answered 2xx must
refuse the same request without credentials or with invalid ones. A fixed number of derandomized
examples per operation keeps the run bounded and repeatable; the server holds a long poll for at
most one second.

Random ids and tokens would only ever be answered 404 or 409, so generation is steered a little
(`tests/fuzzing.py`): path ids are often ones that exist, a renew, complete or release often
carries a lease granted just before the call, and a clone often names an acceptable repository.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import strategies as st

from tests.support.fuzzing import (
    CHECKS,
    FUZZ_CONFIG,
    FUZZ_SERVER,
    LIVE_LEASE,
    Seeded,
    seed_site,
    server_errors,
    steer_body,
)
from tests.support.servers import ROOT, ServerProcess, ServerSite

pytestmark = pytest.mark.e2e

schema = schemathesis.openapi.from_path(ROOT / "openapi.yaml", config=FUZZ_CONFIG)
user_api = schema.exclude(tag="agent")
agent_api = schema.include(tag="agent")

# Filled in by the `server` fixture before any example is generated.
SEEDED = Seeded()
# Status codes answered, per operation, over every identity.
ANSWERED: defaultdict[str, Counter[int]] = defaultdict(Counter)


@schema.hook
def flatmap_path_parameters(context, path_parameters: dict | None) -> st.SearchStrategy:
    if not path_parameters:
        return st.just(path_parameters)
    deleting = context.operation is not None and context.operation.method.upper() == "DELETE"
    return st.fixed_dictionaries(
        {
            name: SEEDED.known(name, value, deleting=deleting)
            for name, value in path_parameters.items()
        }
    )


@schema.hook
def flatmap_body(context, body) -> st.SearchStrategy:
    return steer_body(body)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    site = ServerSite(tmp_path_factory.mktemp("fuzz"), **FUZZ_SERVER)
    process = ServerProcess(site)
    try:
        seed_site(site, process.url, SEEDED)
        yield process
    finally:
        SEEDED.close()
        process.stop()
        site.close()
    crashes = server_errors(process.log())
    assert not crashes, "".join(crashes)


def call_and_check(case: schemathesis.Case, server: ServerProcess, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    response = case.call(base_url=server.url, headers=headers, timeout=15)
    if case.method.upper() == case.operation.method.upper():  # not a probe with another method
        ANSWERED[case.operation.label][response.status_code] += 1
    case.validate_response(
        response,
        checks=CHECKS,
        headers=headers,
        transport_kwargs={"base_url": server.url, "headers": headers, "timeout": 15},
    )


@user_api.parametrize()
def test_user_api_as_owner(case: schemathesis.Case, server: ServerProcess) -> None:
    call_and_check(case, server, SEEDED.tokens["owner"])


@user_api.parametrize()
def test_user_api_as_staff(case: schemathesis.Case, server: ServerProcess) -> None:
    call_and_check(case, server, SEEDED.tokens["staff"])


@agent_api.parametrize()
def test_agent_api(case: schemathesis.Case, server: ServerProcess) -> None:
    live = isinstance(case.body, dict) and case.body.get("lease_token") == LIVE_LEASE
    if live and case.meta is not None and case.meta.generation.mode.is_positive:
        assert SEEDED.live is not None
        job_id, token = SEEDED.live.grant()
        case.path_parameters = {**(case.path_parameters or {}), "job_id": job_id}
        case.body = {**case.body, "lease_token": token}
    call_and_check(case, server, SEEDED.tokens["agent"])


def test_the_fuzz_got_past_validation_everywhere() -> None:
    """Every operation fuzzed above was accepted (2xx) or refused by the domain (409) at least
    once: the fuzz reached the work behind the input checks, not only the refusals."""
    if not ANSWERED:
        pytest.skip("no operation was fuzzed in this run")
    stopped_at_the_door = {
        operation: dict(statuses)
        for operation, statuses in ANSWERED.items()
        if not any(200 <= status < 300 or status == 409 for status in statuses)
        # Only a forge's signature opens this one; tests/server/test_push_hooks.py signs.
        and operation != "POST /api/v1/hooks/{hook_id}/deliveries"
    }
    assert stopped_at_the_door == {}
