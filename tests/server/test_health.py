"""`/healthz` says the process is up; `/readyz` says it can serve: database reachable, schema current."""

from __future__ import annotations

import httpx
import pytest

from tests.support.servers import ServerProcess, ServerSite


def test_healthz_answers_200_in_json_without_touching_the_database(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"status": "ok"}


def test_healthz_names_the_run_that_started_it(client, settings):
    settings.RUN_ID = "run-4f2a"

    assert client.get("/healthz").json() == {"status": "ok", "run": "run-4f2a"}


@pytest.mark.django_db
def test_readyz_answers_200_on_a_migrated_database(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_are_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/").status_code == 301


class _NewReleaseSite(ServerSite):
    """A database on which only some migrations ran, as after deploying code before `migrate`."""

    migrate_only = ("contenttypes",)


@pytest.fixture
def new_release_site(tmp_path):
    site = _NewReleaseSite(tmp_path)
    yield site
    site.close()


@pytest.mark.e2e
def test_readyz_answers_503_in_json_while_migrations_are_pending(new_release_site):
    server = ServerProcess(new_release_site)
    try:
        alive = httpx.get(f"{server.url}/healthz", timeout=10)
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
    finally:
        server.stop()

    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.headers["Content-Type"] == "application/json"
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["pending_migrations"] > 0


@pytest.mark.e2e
def test_readyz_answers_503_in_json_when_the_database_cannot_be_reached(new_release_site, tmp_path):
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'gitfleet.sqlite3'}"
    server = ServerProcess(new_release_site, DATABASE_URL=missing)
    try:
        alive = httpx.get(f"{server.url}/healthz", timeout=10)
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
    finally:
        server.stop()

    assert alive.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
