"""Who sees which project: people see their own, staff see all, and another person's project
answers exactly like one that does not exist (404), for reads and actions alike.
"""

from __future__ import annotations

import uuid

import pytest

from projects.models import Event, Job, Project
from tests.support.api import clone_body, other_uuid_spellings

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(api, api_for, make_user, make_node, node):
    """alice: `a1` on node-1 and `a2` on node-2; bob: `b1` on node-1; root is staff."""
    node_2, _ = make_node("node-2")
    bob = api_for(make_user("bob"))
    root = api_for(make_user("root", staff=True))

    def clone(client, name, on="node-1"):
        response = client.post(
            "/api/v1/projects/clone", clone_body(name=name, node=on), format="json"
        )
        assert response.status_code == 202, response.content
        body = response.json()
        return {"id": body["project"]["id"], "job": body["job"]["id"]}

    return {
        "alice": api,
        "bob": bob,
        "root": root,
        "node_1": node,
        "node_2": node_2,
        "a1": clone(api, "a1"),
        "a2": clone(api, "a2", on="node-2"),
        "b1": clone(bob, "b1"),
    }


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return sorted(project["name"] for project in response.json()["results"])


def _counts() -> tuple[int, int, int]:
    return Event.objects.count(), Project.objects.count(), Job.objects.count()


# --- Listing ----------------------------------------------------------------------------------


def test_people_see_only_their_own_projects(world):
    assert names(world["alice"].get("/api/v1/projects/")) == ["a1", "a2"]
    assert names(world["bob"].get("/api/v1/projects/")) == ["b1"]


def test_staff_see_every_project(world):
    assert names(world["root"].get("/api/v1/projects/")) == ["a1", "a2", "b1"]


def test_the_count_and_pages_hold_only_ones_own_projects(world):
    response = world["bob"].get("/api/v1/projects/?limit=1&offset=0")

    assert response.json()["count"] == 1
    assert names(world["bob"].get("/api/v1/projects/?limit=10&offset=1")) == []


def test_someone_without_projects_sees_an_empty_list(api_for, make_user, world):
    carol = api_for(make_user("carol"))

    response = carol.get("/api/v1/projects/")

    assert names(response) == []
    assert response.json()["count"] == 0


# --- Another person's project answers 404 -----------------------------------------------------


def _requests(project: dict) -> list[tuple[str, str]]:
    base = f"/api/v1/projects/{project['id']}"
    return [
        ("get", base),
        ("get", f"{base}/status"),
        ("get", f"{base}/events"),
        ("post", f"{base}/pull"),
        ("delete", base),
        ("post", f"{base}/jobs/{project['job']}/cancel"),
        ("post", f"{base}/jobs/{project['job']}/retry"),
    ]


REQUEST_IDS = ["detail", "status", "events", "pull", "delete", "cancel", "retry"]


@pytest.mark.parametrize("index", range(len(REQUEST_IDS)), ids=REQUEST_IDS)
def test_another_persons_project_answers_404_and_changes_nothing(world, index):
    method, path = _requests(world["a1"])[index]
    before = _counts()

    response = getattr(world["bob"], method)(path)

    assert response.status_code == 404, response.content
    assert response.json() == {"error": "Not found.", "code": "not_found"}
    assert _counts() == before


@pytest.mark.parametrize("index", range(len(REQUEST_IDS)), ids=REQUEST_IDS)
def test_another_persons_project_looks_exactly_like_a_missing_one(world, index):
    method, other_path = _requests(world["a1"])[index]
    _, missing_path = _requests({"id": str(uuid.uuid4()), "job": str(uuid.uuid4())})[index]

    other = getattr(world["bob"], method)(other_path)
    missing = getattr(world["bob"], method)(missing_path)

    assert (other.status_code, other.json()) == (missing.status_code, missing.json())


def test_another_persons_job_under_ones_own_project_is_not_found(world):
    before = _counts()
    path = f"/api/v1/projects/{world['b1']['id']}/jobs/{world['a1']['job']}/cancel"

    response = world["bob"].post(path)

    assert response.status_code == 404, response.content
    assert _counts() == before
    assert Job.objects.get(pk=world["a1"]["job"]).state == "queued"


def test_the_owner_reaches_every_read_of_their_project(world):
    base = f"/api/v1/projects/{world['a1']['id']}"

    for path in (base, f"{base}/status", f"{base}/events"):
        assert world["alice"].get(path).status_code == 200, path


def test_staff_read_anyones_project(world):
    base = f"/api/v1/projects/{world['b1']['id']}"

    detail = world["root"].get(base)
    events = world["root"].get(f"{base}/events")

    assert detail.status_code == 200 and detail.json()["name"] == "b1"
    assert world["root"].get(f"{base}/status").status_code == 200
    assert [e["type"] for e in events.json()["results"]] == ["ProjectCreated", "JobQueued"]


def test_staff_may_cancel_anyones_job(world):
    path = f"/api/v1/projects/{world['b1']['id']}/jobs/{world['b1']['job']}/cancel"

    response = world["root"].post(path)

    assert response.status_code == 202, response.content
    assert response.json()["job"]["state"] == "cancelled"


# --- Filters ----------------------------------------------------------------------------------


def test_status_filter(world):
    assert names(world["alice"].get("/api/v1/projects/?status=pending")) == ["a1", "a2"]
    assert names(world["alice"].get("/api/v1/projects/?status=ready")) == []
    assert names(world["root"].get("/api/v1/projects/?status=pending")) == ["a1", "a2", "b1"]


@pytest.mark.parametrize(
    "value", ["", "bogus", "PENDING", "pending ", "' OR 1=1 --", "pending,ready", "p%00"]
)
def test_unknown_status_answers_400_naming_status(world, value):
    response = world["alice"].get("/api/v1/projects/", {"status": value})

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert body["fields"]["status"] == ["Use one of: pending, ready, failed, deleting, deleted."]


def test_node_filter_by_name_and_by_id(world):
    node_2 = world["node_2"]

    assert names(world["alice"].get("/api/v1/projects/?node=node-1")) == ["a1"]
    assert names(world["alice"].get("/api/v1/projects/?node=node-2")) == ["a2"]
    assert names(world["alice"].get(f"/api/v1/projects/?node={node_2.pk}")) == ["a2"]
    assert names(world["root"].get("/api/v1/projects/?node=node-1")) == ["a1", "b1"]


@pytest.mark.parametrize("value", ["nope", str(uuid.uuid4()), "' OR 1=1 --"])
def test_node_filter_for_no_such_node_lists_nothing(world, value):
    assert names(world["alice"].get("/api/v1/projects/", {"node": value})) == []


def test_node_filter_by_an_id_spelled_other_than_canonically_lists_nothing(world):
    for spelling in other_uuid_spellings(world["node_2"].pk):
        assert names(world["alice"].get("/api/v1/projects/", {"node": spelling})) == [], spelling


def test_node_filter_never_widens_what_one_sees(world):
    """The name-or-id filter is an OR: it must stay inside the person's own projects."""
    assert names(world["bob"].get("/api/v1/projects/?node=node-2")) == []
    assert names(world["bob"].get(f"/api/v1/projects/?node={world['node_2'].pk}")) == []
    assert names(world["bob"].get(f"/api/v1/projects/?node={world['node_1'].pk}")) == ["b1"]
    assert names(world["bob"].get("/api/v1/projects/?node=node-1&status=pending")) == ["b1"]


def test_status_and_node_filters_combine(world):
    response = world["alice"].get("/api/v1/projects/?status=pending&node=node-2")

    assert names(response) == ["a2"]


# --- The global event feed --------------------------------------------------------------------


def test_event_feed_is_for_staff_only(world):
    response = world["alice"].get("/api/v1/events/")

    assert response.status_code == 403, response.content
    assert response.json()["code"] == "permission_denied"


def test_event_feed_needs_authentication(world, client):
    response = client.get("/api/v1/events/")

    assert response.status_code == 401
    assert response.json()["fields"]["Authorization"]


def test_staff_read_every_projects_events_in_order(world):
    response = world["root"].get("/api/v1/events/")

    assert response.status_code == 200, response.content
    events = response.json()["results"]
    assert len(events) == Event.objects.count() == 6
    assert [e["position"] for e in events] == sorted(e["position"] for e in events)
    assert {e["project_id"] for e in events} == {world[p]["id"] for p in ("a1", "a2", "b1")}


def test_event_feed_after_must_be_a_whole_number(world):
    response = world["root"].get("/api/v1/events/?after=-1")

    assert response.status_code == 400
    assert response.json()["fields"]["after"] == ["A non-negative whole number."]


def test_event_feed_reads_after_a_position(world):
    first = world["root"].get("/api/v1/events/").json()["results"][0]["position"]

    response = world["root"].get(f"/api/v1/events/?after={first}")

    assert first not in [e["position"] for e in response.json()["results"]]
    assert len(response.json()["results"]) == 5
