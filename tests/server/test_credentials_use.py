"""Projects that use a credential: named at clone time by its owner alone, changed with PATCH,
recorded by id, and handed with its secret only to the agent holding the job's lease."""

from __future__ import annotations

import json
import uuid

import pytest
from django.contrib.auth.models import Permission

from credentials import services as credential_services
from credentials.models import Credential
from projects import domain
from projects.models import Event, Project
from tests.support.api import AgentSession, assert_projections_match_log, bearer_client, clone_body
from tests.support.credentials import TOKEN, fernet_key

# The agent API's database work runs on its own threads: they see only committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

HOST = "git.example.com"
LEASE = "/api/v1/agent/lease"


@pytest.fixture(autouse=True)
def credential_keys(settings):
    settings.CREDENTIAL_KEYS = [fernet_key()]
    settings.DEBUG = False
    settings.CREDENTIALS_ALLOW_INSECURE_TRANSPORT = False


def make_credential(owner, *, host: str = HOST, name: str = "ci-token") -> Credential:
    return credential_services.create_credential(
        owner=owner, name=name, kind="https-token", host=host, secret=TOKEN, username="alice"
    )


@pytest.fixture
def credential(user) -> Credential:
    return make_credential(user)


@pytest.fixture
def project(api, node, credential) -> dict:
    response = api.post(
        "/api/v1/projects/clone", clone_body(credential=str(credential.pk)), format="json"
    )
    assert response.status_code == 202, response.json()
    return response.json()["project"]


def secure_lease(agent, *, request_id: str | None = None, instance_id: str | None = None):
    body = {
        "instance_id": instance_id or str(uuid.uuid4()),
        "request_id": request_id or str(uuid.uuid4()),
        "wait": 0,
    }
    return agent.post(LEASE, body, format="json", secure=True), body


def test_a_clone_with_ones_own_credential_records_its_id_only(api, project, credential):
    [created] = Event.objects.filter(project_id=project["id"], type="ProjectCreated")

    assert created.data["credential_id"] == str(credential.pk)
    assert project["credential"] == {"id": str(credential.pk), "name": "ci-token"}
    assert TOKEN not in json.dumps([e.data for e in Event.objects.all()])
    shown = api.get(f"/api/v1/credentials/{credential.pk}").json()
    assert shown["projects"] == [{"id": project["id"], "name": "demo"}]
    assert_projections_match_log()


def test_another_persons_credential_is_not_found(make_user, api_for, node, credential):
    bob = api_for(make_user("bob"))

    response = bob.post(
        "/api/v1/projects/clone", clone_body(credential=str(credential.pk)), format="json"
    )

    assert response.status_code == 404
    assert "credential" in response.json()["fields"]
    assert not Project.objects.exists()


def test_a_revoked_credential_is_not_found(api, node, credential):
    credential_services.revoke_credential(credential=credential)

    response = api.post(
        "/api/v1/projects/clone", clone_body(credential=str(credential.pk)), format="json"
    )

    assert response.status_code == 404
    assert "credential" in response.json()["fields"]


@pytest.mark.parametrize(
    "git_url",
    [
        "https://other.example.com/group/demo.git",
        "https://git.example.com:8443/group/demo.git",
        "ssh://git@git.example.org/group/demo.git",
        # The right host, the wrong kind: a token is no use to ssh.
        "ssh://git@git.example.com/group/demo.git",
        "git@git.example.com:group/demo.git",
    ],
)
def test_a_credential_for_another_host_is_refused_naming_it(api, node, credential, git_url):
    response = api.post(
        "/api/v1/projects/clone",
        clone_body(git_url=git_url, credential=str(credential.pk)),
        format="json",
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["credential"]


def test_the_lease_answer_carries_the_secret_to_the_holding_agent(agent, project, credential):
    response, _ = secure_lease(agent)

    assert response.status_code == 200, response.content
    carried = response.json()["job"]["credential"]
    assert carried == {
        "id": str(credential.pk),
        "name": "ci-token",
        "kind": "https-token",
        "host": HOST,
        "username": "alice",
        "secret": TOKEN,
        "known_hosts": "",
    }
    assert response.json()["job"]["use_node_credentials"] is False


def test_nothing_but_the_lease_answer_carries_the_secret(api, agent, project):
    leased, body = secure_lease(agent)
    job_id, token = leased.json()["job"]["id"], leased.json()["lease"]["token"]
    session = AgentSession(agent, body["instance_id"])

    answers = [
        session.renew(job_id, token, progress={"phase": "receiving", "percent": 5}),
        session.fail(job_id, token, code="auth_failed"),
        api.get(f"/api/v1/projects/{project['id']}"),
        api.get(f"/api/v1/projects/{project['id']}/status"),
        api.get(f"/api/v1/projects/{project['id']}/events"),
        api.get("/api/v1/projects/"),
        api.get("/api/v1/credentials/"),
    ]

    assert TOKEN in leased.content.decode()  # the search finds it where it must be
    for answer in answers:
        assert answer.status_code == 200, answer.content
        assert TOKEN not in answer.content.decode()


def test_a_retried_lease_gives_the_same_lease_to_the_same_instance_only(agent, make_node, project):
    first, body = secure_lease(agent)
    again, _ = secure_lease(agent, request_id=body["request_id"], instance_id=body["instance_id"])
    other_node = bearer_client(make_node("node-2")[1])
    elsewhere, _ = secure_lease(
        other_node, request_id=body["request_id"], instance_id=body["instance_id"]
    )
    restarted, _ = secure_lease(agent, request_id=body["request_id"])

    assert again.status_code == 200
    assert again.json()["lease"] == first.json()["lease"]
    assert elsewhere.status_code == 204
    # Another instance of the node is a restarted agent: the old lease ends, a new one begins.
    assert restarted.json()["lease"]["token"] != first.json()["lease"]["token"]


def test_over_plain_http_the_job_fails_instead_of_sending_the_secret(api, agent, project):
    response = agent.post(
        LEASE,
        {"instance_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()), "wait": 0},
        format="json",
    )

    assert response.status_code == 204
    assert TOKEN not in response.content.decode()
    status = api.get(f"/api/v1/projects/{project['id']}/status").json()
    assert status["status"] == "failed"
    assert status["last_error"]["code"] == "insecure_transport"
    assert "CREDENTIALS_ALLOW_INSECURE_TRANSPORT" in status["last_error"]["message"]


def test_behind_a_tls_proxy_the_forwarded_proto_counts(agent, project):
    response = agent.post(
        LEASE,
        {"instance_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()), "wait": 0},
        format="json",
        HTTP_X_FORWARDED_PROTO="https",
    )

    assert response.status_code == 200
    assert response.json()["job"]["credential"]["secret"] == TOKEN


def test_the_setting_allows_a_private_network_over_http(settings, agent, project):
    settings.CREDENTIALS_ALLOW_INSECURE_TRANSPORT = True

    response = agent.post(
        LEASE,
        {"instance_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4()), "wait": 0},
        format="json",
    )

    assert response.status_code == 200
    assert response.json()["job"]["credential"]["secret"] == TOKEN


def test_jobs_of_a_revoked_credential_fail_auth_failed_until_given_another(
    api, agent, user, project, credential
):
    credential_services.revoke_credential(credential=credential)

    refused, _ = secure_lease(agent)
    status = api.get(f"/api/v1/projects/{project['id']}/status").json()

    assert refused.status_code == 204
    assert status["last_error"]["code"] == "auth_failed"
    assert "'ci-token'" in status["last_error"]["message"]
    assert HOST in status["last_error"]["message"]

    replacement = make_credential(user, name="ci-token-2")
    patched = api.patch(
        f"/api/v1/projects/{project['id']}", {"credential": str(replacement.pk)}, format="json"
    )
    retried = api.post(
        f"/api/v1/projects/{project['id']}/jobs/{status['last_error']['job_id']}/retry"
    )
    leased, _ = secure_lease(agent)

    assert patched.status_code == 200, patched.content
    assert patched.json()["credential"] == {"id": str(replacement.pk), "name": "ci-token-2"}
    assert retried.status_code == 202, retried.content
    assert leased.json()["job"]["credential"]["id"] == str(replacement.pk)


def test_patch_changes_and_removes_the_credential_by_event(api, user, project, credential):
    other = make_credential(user, name="second")

    changed = api.patch(
        f"/api/v1/projects/{project['id']}", {"credential": str(other.pk)}, format="json"
    )
    removed = api.patch(f"/api/v1/projects/{project['id']}", {"credential": None}, format="json")

    assert changed.status_code == 200 and removed.status_code == 200
    assert removed.json()["credential"] is None
    events = Event.objects.filter(project_id=project["id"], type="ProjectCredentialChanged")
    assert [event.data for event in events.order_by("version")] == [
        {"credential_id": str(other.pk)},
        {"credential_id": None},
    ]
    assert_projections_match_log()


def test_patch_refuses_anothers_credential_a_wrong_host_and_unknown_fields(
    api, make_user, user, project
):
    bobs = make_credential(make_user("bob"))
    elsewhere = make_credential(user, name="elsewhere", host="other.example.com")
    url = f"/api/v1/projects/{project['id']}"

    assert api.patch(url, {"credential": str(bobs.pk)}, format="json").status_code == 404
    wrong_host = api.patch(url, {"credential": str(elsewhere.pk)}, format="json")
    assert wrong_host.status_code == 400
    assert list(wrong_host.json()["fields"]) == ["credential"]
    unknown = api.patch(url, {"credential": None, "git_url": "https://x/y"}, format="json")
    assert unknown.status_code == 400
    assert "git_url" in unknown.json()["fields"]


def test_someone_elses_project_cannot_be_patched(make_user, api_for, project):
    bob = api_for(make_user("bob"))

    response = bob.patch(f"/api/v1/projects/{project['id']}", {"credential": None}, format="json")

    assert response.status_code == 404


def test_only_granted_people_get_the_nodes_own_credentials(api, agent, user, node):
    api.post("/api/v1/projects/clone", clone_body(), format="json")
    plain, _ = secure_lease(agent)
    user.user_permissions.add(Permission.objects.get(codename="use_node_credentials"))
    api.post("/api/v1/projects/clone", clone_body(name="second"), format="json")
    AgentSession(agent).succeed(plain.json()["job"]["id"], plain.json()["lease"]["token"])
    granted, _ = secure_lease(agent)

    assert plain.json()["job"]["use_node_credentials"] is False
    assert granted.json()["job"]["use_node_credentials"] is True


def test_the_operators_known_hosts_go_with_every_job(settings, tmp_path, api, agent, node):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperator\n")
    settings.GIT_SSH_KNOWN_HOSTS = str(known_hosts)
    api.post("/api/v1/projects/clone", clone_body(), format="json")

    leased, _ = secure_lease(agent)

    assert leased.json()["job"]["ssh_known_hosts"] == known_hosts.read_text()


def test_the_admin_shows_the_grant_and_never_the_secret(make_user, project, credential):
    from django.test import Client

    admin = make_user("root", staff=True)
    admin.is_superuser = True
    admin.save()
    browser = Client()
    browser.force_login(admin)

    pages = [
        browser.get(f"/admin/auth/user/{admin.pk}/change/"),
        browser.get(f"/admin/projects/project/{project['id']}/change/"),
        browser.get("/admin/projects/project/"),
        browser.get(f"/admin/credentials/credential/{credential.pk}/change/"),
    ]

    assert "use the node" in pages[0].content.decode()
    assert f"ci-token ({credential.pk})" in pages[1].content.decode()
    for page in pages:
        assert page.status_code == 200
        assert TOKEN not in page.content.decode()


def test_giving_a_project_the_credential_it_has_records_nothing(api, project, credential):
    response = api.patch(
        f"/api/v1/projects/{project['id']}", {"credential": str(credential.pk)}, format="json"
    )

    assert response.status_code == 200
    assert not Event.objects.filter(type="ProjectCredentialChanged").exists()


def test_a_deleted_project_takes_no_credential(api, project, credential):
    state = domain.Project(id=project["id"], version=3, status=domain.ProjectStatus.DELETED)

    with pytest.raises(domain.Conflict):
        domain.decide(state, domain.ChangeCredential(credential_id=str(credential.pk)))
