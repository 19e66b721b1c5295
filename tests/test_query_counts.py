"""Reads stay cheap as data grows: listing does not run a query per project."""

import pytest

from projects import services

pytestmark = pytest.mark.django_db


def test_listing_projects_runs_the_same_queries_for_3_or_30(
    api, user, node, django_assert_max_num_queries
):
    def make(count: int) -> None:
        for index in range(count):
            services.request_clone(
                owner=user,
                name=f"p{index}-{count}",
                git_url="https://h/r.git",
                branch="main",
                node=node,
            )

    make(3)
    with django_assert_max_num_queries(10) as few:
        assert api.get("/api/v1/projects/").status_code == 200
    make(27)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = api.get("/api/v1/projects/")

    assert response.json()["count"] == 30
    assert all(p["active_job"]["kind"] == "clone" for p in response.json()["results"])
