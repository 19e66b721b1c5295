"""Push webhooks in: registered hooks, deliveries signed as GitHub, GitLab and Gitea sign them,
pulls queued for the checkouts that track the pushed branch, and nothing for anything else."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from projects.models import Event, Job
from sync import signatures
from sync.models import HookDelivery
from sync.pulls import PullCause
from sync.repos import repository_key
from tests.support.credentials import fernet_key
from tests.support.sync import (
    finish_head_job,
    gitea_push,
    github_push,
    gitlab_push,
    ready_project,
)

FORGES = {"github": github_push, "gitlab": gitlab_push, "gitea": gitea_push}
HOSTS = {"github": "github.com", "gitlab": "gitlab.com", "gitea": "codeberg.org"}


@pytest.fixture(autouse=True)
def credential_keys(settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]


@pytest.fixture
def hook(api):
    response = api.post("/api/v1/hooks/", {"name": "forge"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def deliver(client, hook: dict, body: bytes, headers: dict):
    return client.post(
        f"/api/v1/hooks/{hook['id']}/deliveries",
        data=body,
        content_type="application/json",
        headers=headers,
    )


def pulls_of(project) -> list[Job]:
    return list(Job.objects.filter(project=project, kind="pull"))


def test_github_documented_example_signature_verifies():
    # From GitHub's "Validating webhook deliveries": this secret and payload give this header.
    headers = {
        "X-Hub-Signature-256": (
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        ),
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "1",
    }
    secret = "It's a Secret to Everybody"
    assert signatures.verify(headers, b"Hello, World!", secret) is not None
    assert signatures.verify(headers, b"Hello, World?", secret) is None


def test_the_https_ssh_and_scp_forms_of_one_repository_match():
    forms = [
        "https://github.com/Acme/Tool.git",
        "https://github.com/acme/tool",
        "ssh://git@github.com/acme/tool.git",
        "ssh://git@github.com:22/acme/tool.git",
        "git@github.com:acme/tool.git",
        "git@github.com:acme/tool/",
    ]
    assert {repository_key(form) for form in forms} == {"github.com/acme/tool"}
    assert repository_key("https://github.com/acme/tool2") != "github.com/acme/tool"


def test_registering_a_hook_shows_its_url_and_secret_once(api, hook):
    assert hook["url"].endswith(f"/api/v1/hooks/{hook['id']}/deliveries")
    assert len(hook["secret"]) >= 32
    listed = api.get("/api/v1/hooks/").json()["results"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]
    assert hook["secret"] not in api.get(f"/api/v1/hooks/{hook['id']}").content.decode()


@pytest.mark.parametrize("forge", sorted(FORGES))
def test_a_signed_push_queues_a_pull_of_every_ready_checkout_of_that_branch(
    client, user, node, hook, forge
):
    host = HOSTS[forge]
    https = ready_project(user, node, "a", f"https://{host}/acme/tool.git")
    scp = ready_project(user, node, "b", f"git@{host}:acme/tool.git")
    other_branch = ready_project(user, node, "c", f"https://{host}/acme/tool", branch="dev")
    other_repo = ready_project(user, node, "d", f"https://{host}/acme/other.git")
    body, headers = FORGES[forge](hook["secret"], repo="acme/tool", branch="main")

    response = deliver(client, hook, body, headers)

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["forge"] == forge and not answer["duplicate"]
    assert len(answer["pulls"]) == 2
    assert len(pulls_of(https)) == len(pulls_of(scp)) == 1
    assert pulls_of(other_branch) == pulls_of(other_repo) == []
    queued = Event.objects.get(project_id=https.pk, type="JobQueued", data__kind="pull")
    assert queued.meta["cause"] == {
        "kind": "hook",
        "hook_id": hook["id"],
        "delivery_id": answer["delivery_id"],
    }
    cause = PullCause.from_meta(queued.meta)
    assert cause == PullCause(kind="hook", hook_id=hook["id"], delivery_id=answer["delivery_id"])


def test_events_stored_without_a_cause_still_read(user, node):
    project = ready_project(user, node, "a", "https://github.com/acme/tool.git")
    clone = Event.objects.get(project_id=project.pk, type="JobQueued")
    assert "cause" not in clone.meta
    assert PullCause.from_meta(clone.meta) is None


def test_a_push_to_another_branch_queues_nothing(client, user, node, hook):
    project = ready_project(user, node, "a", "https://github.com/acme/tool.git")
    body, headers = github_push(hook["secret"], repo="acme/tool", branch="feature")
    response = deliver(client, hook, body, headers)
    assert response.status_code == 200
    assert response.json()["pulls"] == []
    assert pulls_of(project) == []


@pytest.mark.parametrize("forge", sorted(FORGES))
def test_a_wrong_signature_is_401_and_nothing_is_recorded(client, user, node, hook, forge):
    project = ready_project(user, node, "a", f"https://{HOSTS[forge]}/acme/tool.git")
    body, headers = FORGES[forge]("not-the-secret", repo="acme/tool", branch="main")
    response = deliver(client, hook, body, headers)
    assert response.status_code == 401
    assert response.json()["code"] == "bad_signature"
    assert not HookDelivery.objects.exists()
    assert pulls_of(project) == []


def test_an_unsigned_delivery_is_401(client, hook):
    response = deliver(client, hook, b'{"ref": "refs/heads/main"}', {"X-GitHub-Event": "push"})
    assert response.status_code == 401
    assert not HookDelivery.objects.exists()


def test_a_body_changed_after_signing_is_401(client, hook):
    body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")
    response = deliver(client, hook, body.replace(b"main", b"prod"), headers)
    assert response.status_code == 401


def test_a_replayed_delivery_is_acknowledged_and_ignored(client, user, node, hook):
    project = ready_project(user, node, "a", "https://github.com/acme/tool.git")
    body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")
    first = deliver(client, hook, body, headers)
    # The pull ran and the checkout is ready again: only the delivery id stops a second pull.
    finish_head_job(node, project)
    assert not Job.objects.filter(project=project, state__in=["queued", "leased"]).exists()
    replay = deliver(client, hook, body, headers)
    assert first.status_code == replay.status_code == 200
    assert replay.json()["duplicate"] is True and replay.json()["pulls"] == []
    assert Event.objects.filter(project_id=project.pk, data__kind="pull").count() == 1


def test_a_pull_already_queued_is_not_doubled(client, user, node, hook):
    project = ready_project(user, node, "a", "https://github.com/acme/tool.git")
    for _ in range(2):
        body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")
        assert deliver(client, hook, body, headers).status_code == 200
    assert len(pulls_of(project)) == 1


def test_other_peoples_projects_are_not_pulled(client, make_user, node, hook):
    someone = make_user("bob")
    theirs = ready_project(someone, node, "a", "https://github.com/acme/tool.git")
    body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")
    assert deliver(client, hook, body, headers).json()["pulls"] == []
    assert pulls_of(theirs) == []


def test_deliveries_beyond_the_rate_limit_are_429(client, hook, settings):
    settings.HOOK_DELIVERIES_PER_MINUTE = 2
    answers = []
    for _ in range(3):
        body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")
        answers.append(deliver(client, hook, body, headers).status_code)
    assert answers == [200, 200, 429]


def test_an_oversized_body_is_413_before_it_is_read(client, hook, settings):
    secret = hook["secret"]
    body = b'{"ref": "refs/heads/main", "pad": "' + b"x" * settings.MAX_REQUEST_BODY_BYTES + b'"}'
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "big",
        "X-Hub-Signature-256": signature,
    }
    assert deliver(client, hook, body, headers).status_code == 413


def test_a_ping_is_acknowledged_without_pulls(client, hook):
    body = b'{"zen": "Keep it logically awesome."}'
    signature = "sha256=" + hmac.new(hook["secret"].encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "p1",
        "X-Hub-Signature-256": signature,
    }
    response = deliver(client, hook, body, headers)
    assert response.status_code == 200
    assert response.json()["ignored"] and response.json()["pulls"] == []


def test_an_unknown_hook_is_404(client, hook):
    body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")
    response = client.post(
        "/api/v1/hooks/00000000-0000-4000-8000-000000000000/deliveries",
        data=body,
        content_type="application/json",
        headers=headers,
    )
    assert response.status_code == 404


def test_a_hook_is_only_its_owners(api_for, make_user, hook):
    other = api_for(make_user("bob"))
    assert other.get(f"/api/v1/hooks/{hook['id']}").status_code == 404
    assert other.delete(f"/api/v1/hooks/{hook['id']}").status_code == 404


def _stored_text() -> str:
    """Every event's data and meta and every delivery row, as text."""
    events = [f"{e.data!r} {e.meta!r}" for e in Event.objects.all()]
    deliveries = [repr(row) for row in HookDelivery.objects.values()]
    return "\n".join(events + deliveries)


def test_the_hook_secret_lands_in_no_event_delivery_row_log_or_later_answer(
    api, client, user, node, hook, caplog
):
    caplog.set_level("DEBUG")
    project = ready_project(user, node, "a", "https://github.com/acme/tool.git")
    body, headers = github_push(hook["secret"], repo="acme/tool", branch="main")

    assert deliver(client, hook, body, headers).status_code == 200
    assert len(pulls_of(project)) == 1  # the delivery went all the way through

    secret = hook["secret"]
    later_answers = [
        api.get("/api/v1/hooks/").content.decode(),
        api.get(f"/api/v1/hooks/{hook['id']}").content.decode(),
        api.get(f"/api/v1/projects/{project.pk}/events").content.decode(),
    ]
    assert all(secret not in answer for answer in later_answers)
    assert secret not in _stored_text()
    assert secret not in caplog.text
    assert "acme/tool" in caplog.text + _stored_text()  # the searches read real content
