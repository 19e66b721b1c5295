"""The services validate what they are given, so every entry point (API, admin, commands,
benchmarks) reaches the same checks: git input through `gitpolicy`, refused with `Invalid`
naming the field and nothing recorded."""

from __future__ import annotations

import uuid

import pytest

from core.exceptions import Invalid, NotFound
from projects import services
from projects.models import Event, Job, Project
from tests.support.api import clone_body, other_uuid_spellings
from tests.support.policy_cases import (
    PRIVATE,
    PRIVATE_URLS,
    REFUSED_BRANCHES,
    REFUSED_PROJECT_NAMES,
    REFUSED_URLS,
    VALID_URLS,
)

pytestmark = pytest.mark.django_db


def clone(user, node, **overrides):
    fields = {"name": "demo", "git_url": "https://git.example.com/g/demo.git", "branch": "main"}
    return services.request_clone(owner=user, node=node, **{**fields, **overrides})


def refusal(user, node, **overrides) -> Invalid:
    with pytest.raises(Invalid) as raised:
        clone(user, node, **overrides)
    assert Event.objects.count() == Project.objects.count() == Job.objects.count() == 0
    return raised.value


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_refused_url_is_invalid_naming_git_url(user, node, url, reason):
    refused = refusal(user, node, git_url=url)

    assert refused.field == "git_url"
    assert reason in refused.message


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_host_is_invalid_unless_the_server_allows_it(user, node, settings, url):
    settings.GIT_ALLOW_PRIVATE_HOSTS = False
    assert PRIVATE in refusal(user, node, git_url=url).message

    settings.GIT_ALLOW_PRIVATE_HOSTS = True
    assert clone(user, node, git_url=url).git_url == url


@pytest.mark.parametrize(("branch", "reason"), REFUSED_BRANCHES)
def test_refused_branch_is_invalid_naming_branch(user, node, branch, reason):
    refused = refusal(user, node, branch=branch)

    assert refused.field == "branch"
    assert reason in refused.message


@pytest.mark.parametrize(("name", "reason"), REFUSED_PROJECT_NAMES)
def test_refused_project_name_is_invalid_naming_name(user, node, name, reason):
    refused = refusal(user, node, name=name)

    assert refused.field == "name"
    assert reason in refused.message


@pytest.mark.parametrize("depth", [0, -1, 1_000_001, True, 1.5, "1"])
def test_depth_out_of_range_or_of_another_type_is_invalid(user, node, depth):
    assert refusal(user, node, depth=depth).field == "depth"


@pytest.mark.parametrize("url", VALID_URLS[:3])
def test_valid_input_creates_the_project(user, node, url):
    project = clone(user, node, git_url=url, depth=1_000_000)

    assert (project.git_url, project.depth) == (url, 1_000_000)


def test_file_urls_stay_refused_even_if_the_settings_list_file(user, node, settings):
    settings.GIT_ALLOWED_SCHEMES = ["https", "file"]

    refused = refusal(user, node, git_url="file:///srv/git/repo.git")

    assert refused.message == "Scheme 'file' is not allowed; use one of: https."


def test_the_api_answers_a_service_refusal_like_a_serializer_refusal(api, node):
    response = api.post(
        "/api/v1/projects/clone", clone_body(git_url="https://127.1/x"), format="json"
    )

    reason = "Write IPv4 addresses as four decimal numbers (a.b.c.d)."
    assert response.status_code == 400
    assert response.json() == {
        "error": f"Invalid input. git_url: {reason}",
        "code": "invalid",
        "fields": {"git_url": [reason]},
    }


@pytest.mark.parametrize("service", [services.cancel_job, services.retry_job])
def test_a_job_id_spelled_other_than_canonically_names_no_job(user, node, service):
    project = clone(user, node)
    job_id = project.jobs.get().pk
    events_before = Event.objects.count()

    for spelling in [*other_uuid_spellings(job_id), "", "not-a-uuid", 42]:
        with pytest.raises(NotFound) as raised:
            service(project=project, job_id=spelling, actor=user)
        assert raised.value.field == "job_id", spelling
    assert Event.objects.count() == events_before


def test_a_job_id_may_be_given_as_a_uuid(user, node):
    project = clone(user, node)

    job = services.cancel_job(
        project=project, job_id=uuid.UUID(str(project.jobs.get().pk)), actor=user
    )

    assert job.state == "cancelled"
