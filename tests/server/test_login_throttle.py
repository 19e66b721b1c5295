"""Password logins, the admin's and the browsable API's, are throttled per account and per
address (django-axes): past `LOGIN_FAILURE_LIMIT` failures even the right password is refused
until the lockout ends."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

LOGIN_PAGES = ["/admin/login/", "/accounts/login/", "/api-auth/login/"]
PASSWORD = "correct horse battery staple"


@pytest.fixture
def person(db):
    return get_user_model().objects.create_user("carol", password=PASSWORD, is_staff=True)


def log_in(page: str, username: str, password: str, address: str = "192.0.2.1"):
    return Client(REMOTE_ADDR=address).post(
        page, {"username": username, "password": password, "next": "/api/v1/"}
    )


def logged_in(response) -> bool:
    return response.status_code == 302 and response.wsgi_request.user.is_authenticated


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_right_password_works_before_any_failure(person, page):
    assert logged_in(log_in(page, "carol", PASSWORD))


def test_a_failure_below_the_limit_is_the_usual_form_again(person):
    for page in LOGIN_PAGES:
        assert log_in(page, "carol", "wrong").status_code == 200


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_wrong_passwords_lock_the_account_even_from_other_addresses(person, settings, page):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(page, "carol", "wrong", address=f"192.0.2.{attempt + 10}")
    refused = log_in(page, "carol", PASSWORD, address="198.51.100.7")
    assert refused.status_code == 429
    assert not logged_in(refused)


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_wrong_passwords_lock_the_address_even_for_other_accounts(person, settings, page):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(page, f"guess-{attempt}", "wrong")
    refused = log_in(page, "carol", PASSWORD)
    assert refused.status_code == 429
    assert not logged_in(refused)
    assert logged_in(log_in(page, "carol", PASSWORD, address="198.51.100.7"))


def test_a_failure_on_one_page_counts_on_the_other(person, settings):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        log_in(LOGIN_PAGES[attempt % 2], "carol", "wrong", address=f"192.0.2.{attempt + 10}")
    for page in LOGIN_PAGES:
        assert log_in(page, "carol", PASSWORD, address="198.51.100.7").status_code == 429


@override_settings(AXES_COOLOFF_TIME=timedelta(seconds=1))
def test_the_lockout_ends_after_the_cool_off(person, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(LOGIN_PAGES[0], "carol", "wrong")
    assert log_in(LOGIN_PAGES[0], "carol", PASSWORD).status_code == 429
    time.sleep(1.2)
    assert logged_in(log_in(LOGIN_PAGES[0], "carol", PASSWORD))
