"""The clone request's checkout options (ref, lfs, submodules, filter, sparse), pull with a ref,
and what the lease, the status and the node API show of them."""

from __future__ import annotations

import re

import pytest

from nodes.models import Node
from projects import domain
from projects.models import Event, Job, Project
from tests.support.api import AgentSession, assert_projections_match_log, clone_body
from tests.support.policy_cases import REFUSED_FILTERS, REFUSED_REFS, REFUSED_SPARSE

# The agent API's views are async and read through a connection of their own.
pytestmark = pytest.mark.django_db(transaction=True)

CLONE = "/api/v1/projects/clone"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def lfs_node(node) -> Node:
    Node.objects.filter(pk=node.pk).update(git_version="2.39.5", git_lfs_version="3.3.0")
    node.refresh_from_db()
    return node


@pytest.fixture
def session(agent) -> AgentSession:
    return AgentSession(agent)


def clone(api, **fields):
    body = clone_body(**fields)
    if "ref" in fields:
        body.pop("branch")
    return api.post(CLONE, body, format="json")


@pytest.mark.parametrize("ref", ["v1.4", "release/2026-01", COMMIT])
def test_clone_takes_a_tag_or_a_commit_as_ref(api, node, ref):
    response = clone(api, ref=ref)

    assert response.status_code == 202, response.content
    project = response.json()["project"]
    assert (project["ref"], project["branch"]) == (ref, ref)
    assert_projections_match_log()


def test_branch_stays_an_alias_of_ref(api, node):
    response = api.post(CLONE, clone_body(branch="dev"), format="json")

    assert response.status_code == 202
    assert response.json()["project"]["ref"] == "dev"


def test_ref_and_a_different_branch_answer_400_naming_ref(api, node):
    response = api.post(CLONE, clone_body(branch="dev", ref="main"), format="json")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"ref"}
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ref", "ABCDEF0123456789ABCDEF0123456789ABCDEF01"),
        ("ref", "-v1"),
        ("filter", "blob:some"),
        ("filter", "sparse:oid=HEAD:x"),
        ("filter", "blob:limit=99999999999g"),
        ("sparse", ["../etc"]),
        ("sparse", ["/abs"]),
        ("sparse", ["a\nb"]),
        ("sparse", ["ok", "ok"]),
        ("sparse", [f"d{i}" for i in range(101)]),
        ("sparse", ["x" * 256]),
        ("sparse", [".git/hooks"]),
        ("sparse", "models"),
        ("submodules", "all"),
        ("lfs", "yes"),
    ],
)
def test_bad_checkout_options_answer_400_naming_the_field(api, node, field, value):
    response = clone(api, **{field: value})

    assert response.status_code == 400, response.content
    assert any(name.split(".")[0] == field for name in response.json()["fields"])
    assert not Event.objects.exists()


def test_options_are_stored_shown_and_leased(api, lfs_node, session):
    response = clone(
        api, ref="v2", submodules="recursive", filter="blob:limit=1m", sparse=["models/a", "src"]
    )

    assert response.status_code == 202, response.content
    project = response.json()["project"]
    assert project["lfs"] is True  # the node has git-lfs: on by default
    assert (project["submodules"], project["filter"], project["sparse"]) == (
        "recursive", "blob:limit=1m", ["models/a", "src"]
    )  # fmt: skip
    job = session.lease().json()["job"]
    assert (job["ref"], job["branch"], job["lfs"], job["submodules"]) == (
        "v2", "v2", True, "recursive"
    )  # fmt: skip
    assert (job["filter"], job["sparse"]) == ("blob:limit=1m", ["models/a", "src"])
    assert_projections_match_log()


def test_lfs_defaults_to_off_on_a_node_without_git_lfs(api, node):
    assert clone(api).json()["project"]["lfs"] is False


def test_lfs_true_on_a_node_without_git_lfs_answers_409(api, node):
    response = clone(api, lfs=True)

    assert response.status_code == 409
    assert response.json()["code"] == "lfs_unavailable"
    assert "git-lfs" in response.json()["fields"]["lfs"][0]
    assert not Event.objects.exists()


def test_lfs_false_on_a_node_with_git_lfs_is_kept(api, lfs_node):
    assert clone(api, lfs=False).json()["project"]["lfs"] is False


def complete_clone(session, **result):
    lease = session.lease().json()
    body = {
        "lease_token": lease["lease"]["token"],
        "outcome": "succeeded",
        "result": {
            "commit": COMMIT, "branch": "", "local_path": "/data/projects/x", "duration_ms": 1,
            "size_bytes": 1, **result,
        },
    }  # fmt: skip
    url = f"/api/v1/agent/jobs/{lease['job']['id']}/complete"
    response = session.client.post(url, body, format="json")
    assert response.status_code == 200, response.content
    return lease


def test_status_shows_the_ref_its_kind_and_skipped_submodules(api, node, session):
    project_id = clone(api, ref="v1.4").json()["project"]["id"]
    complete_clone(session, ref="v1.4", ref_kind="tag", submodules_skipped=2)

    status = api.get(f"/api/v1/projects/{project_id}/status").json()

    assert (status["ref"], status["ref_kind"], status["commit"], status["branch"]) == (
        "v1.4", "tag", COMMIT, ""
    )  # fmt: skip
    assert status["submodules_skipped"] == 2
    assert_projections_match_log()


def test_pull_with_a_ref_moves_the_project_to_it(api, node, session):
    project_id = clone(api, ref="main").json()["project"]["id"]
    complete_clone(session, ref="main", ref_kind="branch", branch="main")

    response = api.post(f"/api/v1/projects/{project_id}/pull", {"ref": "v1.4"}, format="json")

    assert response.status_code == 202, response.content
    assert response.json()["job"]["options"] == {"ref": "v1.4"}
    lease = complete_clone(session, ref="v1.4", ref_kind="tag")
    assert (lease["job"]["branch"], lease["job"]["ref"]) == ("main", "v1.4")
    status = api.get(f"/api/v1/projects/{project_id}/status").json()
    assert (status["ref"], status["ref_kind"]) == ("v1.4", "tag")
    assert Job.objects.filter(project_id=project_id, kind="pull").get().options == {"ref": "v1.4"}
    assert_projections_match_log()


def test_pull_without_a_body_keeps_the_ref(api, node, session):
    project_id = clone(api, ref="v1.4").json()["project"]["id"]
    complete_clone(session, ref="v1.4", ref_kind="tag")

    assert api.post(f"/api/v1/projects/{project_id}/pull").status_code == 202
    lease = session.lease().json()
    assert (lease["job"]["branch"], lease["job"]["ref"]) == ("v1.4", "v1.4")


@pytest.mark.parametrize("body", [{"ref": "-x"}, {"ref": None}, {"branch": "main"}])
def test_pull_with_a_bad_body_answers_400(api, node, session, body):
    project_id = clone(api).json()["project"]["id"]
    complete_clone(session, branch="main")

    response = api.post(f"/api/v1/projects/{project_id}/pull", body, format="json")

    assert response.status_code == 400


def test_events_stored_before_the_options_still_load():
    stored = {
        "owner_id": 7, "name": "demo", "node_id": "n", "git_url": "https://h/x.git",
        "branch": "main", "depth": None, "target_path": "7_demo",
    }  # fmt: skip
    event = domain.ProjectCreated.from_data(stored)

    assert (event.lfs, event.submodules, event.filter, event.sparse) == (False, "none", "", ())
    assert event.to_data() == stored
    queued = domain.JobQueued.from_data({"job_id": "j", "kind": "pull", "max_attempts": 3})
    assert queued.options is None


def test_new_options_are_stored_in_the_event():
    event = domain.ProjectCreated(
        owner_id=7, name="demo", node_id="n", git_url="https://h/x.git", branch="v1",
        depth=None, target_path="7_demo", lfs=True, submodules="recursive", filter="tree:0",
        sparse=("a", "b/c"),
    )  # fmt: skip

    data = event.to_data()

    assert (data["lfs"], data["submodules"], data["filter"], data["sparse"]) == (
        True, "recursive", "tree:0", ["a", "b/c"]
    )  # fmt: skip
    assert domain.ProjectCreated.from_data(data).sparse == ["a", "b/c"]


def test_the_heartbeat_reports_git_and_git_lfs_versions(api, node, session):
    response = session.heartbeat(git_version="2.39.5", git_lfs_version="3.3.0")

    assert response.status_code == 200, response.content
    listed = api.get(f"/api/v1/nodes/{node.pk}").json()
    assert (listed["git_version"], listed["git_lfs_version"]) == ("2.39.5", "3.3.0")
    session.heartbeat()  # an older agent that does not say: the versions stay
    node.refresh_from_db()
    assert node.git_lfs_version == "3.3.0"
    assert Project.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("filter", value, reason) for value, reason in REFUSED_FILTERS]
    + [("sparse", value, reason) for value, reason in REFUSED_SPARSE]
    + [("ref", value, reason) for value, reason in REFUSED_REFS],
)
def test_the_shared_table_of_refused_options_is_refused_here_too(api, node, field, value, reason):
    response = clone(api, **{field: value})

    assert response.status_code == 400, response.content
    fields = response.json()["fields"]
    messages = [m for name, ms in fields.items() if re.split(r"[.[]", name)[0] == field for m in ms]
    assert messages, fields
    assert not Event.objects.exists()
