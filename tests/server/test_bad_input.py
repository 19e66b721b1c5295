"""What bad input gets through the real API: a JSON 4xx naming the field and why, and no
side effect (no Event, Project or Job row).

The URL, branch and name tables are the shared ones in `tests.support.policy_cases`.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest

from projects.models import Event, Job, Project
from tests.support.api import clone_body, event_types
from tests.support.policy_cases import (
    OPT_IN_SCHEME_URLS,
    PRIVATE_URLS,
    REFUSED_BRANCHES,
    REFUSED_PROJECT_NAMES,
    REFUSED_URLS,
    VALID_BRANCHES,
    VALID_PROJECT_NAMES,
    VALID_URLS,
)

pytestmark = pytest.mark.django_db

CLONE = "/api/v1/projects/clone"

# Checks that run before Gitfleet's field rules, and answer in their own words: the parser's
# (NUL and lone surrogates, which PostgreSQL cannot store) and DRF's (blank, length).
CHECKED_FIRST = {
    "": "may not be blank",
    "\x00": "May not contain NUL",
    "too long": "no more than",
}


def _counts() -> dict[str, int]:
    return {
        "events": Event.objects.count(),
        "projects": Project.objects.count(),
        "jobs": Job.objects.count(),
    }


@contextmanager
def records_nothing():
    before = _counts()
    yield
    assert _counts() == before, "a refused request left rows behind"


def assert_refused(response, status: int, field: str, reason: str | None = None) -> dict:
    """A JSON error of `status` whose `fields` names `field` (and, if given, says `reason`)."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["code"], str) and body["code"]
    assert field in body.get("fields", {}), body
    reasons = body["fields"][field]
    assert reasons and all(isinstance(r, str) and r for r in reasons), body
    if reason is not None:
        assert any(reason in r for r in reasons), (reason, reasons)
    return body


def _first_reason(value: str, max_length: int) -> str | None:
    if value == "":
        return CHECKED_FIRST[""]
    if "\x00" in value:
        return CHECKED_FIRST["\x00"]
    if len(value) > max_length:
        return CHECKED_FIRST["too long"]
    return None


def post_clone(api, **overrides):
    return api.post(CLONE, clone_body(**overrides), format="json")


# --- Git URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
def test_refused_git_url_answers_400_naming_git_url(api, node, url, reason):
    with records_nothing():
        response = post_clone(api, git_url=url)

    assert_refused(response, 400, "git_url", _first_reason(url, 2048) or reason)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_host_is_refused_when_the_server_does_not_allow_it(api, node, settings, url):
    settings.GIT_ALLOW_PRIVATE_HOSTS = False

    with records_nothing():
        response = post_clone(api, git_url=url)

    assert_refused(response, 400, "git_url", "non-public hosts are not allowed on this server")


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_host_is_accepted_when_the_server_allows_it(api, node, settings, url):
    settings.GIT_ALLOW_PRIVATE_HOSTS = True

    response = post_clone(api, git_url=url)

    assert response.status_code == 202, response.content
    assert response.json()["project"]["git_url"] == url


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data",
        "https://[fe80::1]/x",
        "https://[fd00:ec2::254]/x",
        "https://metadata.google.internal/computeMetadata/v1",
        "https://[::ffff:169.254.169.254]/x",
    ],
)
@pytest.mark.parametrize("allow_private", [True, False])
def test_link_local_and_metadata_are_refused_whatever_the_server_allows(
    api, node, settings, url, allow_private
):
    settings.GIT_ALLOW_PRIVATE_HOSTS = allow_private

    with records_nothing():
        response = post_clone(api, git_url=url)

    assert_refused(response, 400, "git_url", "never allowed")


@pytest.mark.parametrize("url", OPT_IN_SCHEME_URLS)
def test_scheme_outside_git_allowed_schemes_is_refused(api, node, settings, url):
    settings.GIT_ALLOWED_SCHEMES = ["https", "ssh"]

    with records_nothing():
        response = post_clone(api, git_url=url)

    assert_refused(response, 400, "git_url", "is not allowed; use one of: https, ssh")


@pytest.mark.parametrize("url", [*VALID_URLS, *OPT_IN_SCHEME_URLS, "git://127.0.0.1:9418/repo"])
def test_valid_git_url_is_accepted(api, node, url):
    response = post_clone(api, git_url=url)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["project"]["git_url"] == url
    assert event_types(body["project"]["id"]) == ["ProjectCreated", "JobQueued"]


# --- Branch names -----------------------------------------------------------------------------


@pytest.mark.parametrize(("branch", "reason"), REFUSED_BRANCHES)
def test_refused_branch_answers_400_naming_branch(api, node, branch, reason):
    with records_nothing():
        response = post_clone(api, branch=branch)

    assert_refused(response, 400, "branch", _first_reason(branch, 255) or reason)


@pytest.mark.parametrize("branch", VALID_BRANCHES)
def test_valid_branch_is_accepted(api, node, branch):
    response = post_clone(api, branch=branch)

    assert response.status_code == 202, response.content
    assert response.json()["project"]["branch"] == branch


# --- Project names ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "reason"), REFUSED_PROJECT_NAMES)
def test_refused_project_name_answers_400_naming_name(api, node, name, reason):
    with records_nothing():
        response = post_clone(api, name=name)

    assert_refused(response, 400, "name", _first_reason(name, 100) or reason)


@pytest.mark.parametrize("name", VALID_PROJECT_NAMES)
def test_valid_project_name_is_accepted_and_becomes_the_target_folder(api, node, user, name):
    response = post_clone(api, name=name)

    assert response.status_code == 202, response.content
    assert response.json()["project"]["target_path"] == f"{user.pk}_{name}"


def test_duplicate_project_name_answers_409_naming_name(api, node):
    assert post_clone(api, name="demo").status_code == 202

    with records_nothing():
        response = post_clone(api, name="demo", git_url="https://github.com/org/other.git")

    body = assert_refused(response, 409, "name", "already have a project named 'demo'")
    assert body["code"] == "duplicate_name"


# --- Field types and unknown fields -----------------------------------------------------------


@pytest.mark.parametrize("field", ["name", "git_url", "branch", "node"])
@pytest.mark.parametrize("value", [None, ["x"], {"x": "y"}, True], ids=repr)
def test_field_of_the_wrong_type_answers_400_naming_it(api, node, field, value):
    with records_nothing():
        response = post_clone(api, **{field: value})

    assert_refused(response, 400, field)


@pytest.mark.parametrize("value", [0, -1, 1.5, "many", True, 10**400, 1_000_001])
def test_bad_depth_answers_400_naming_depth(api, node, value):
    with records_nothing():
        response = post_clone(api, depth=value)

    assert_refused(response, 400, "depth")


def test_missing_fields_are_each_named(api, node):
    with records_nothing():
        response = api.post(CLONE, {}, format="json")

    body = assert_refused(response, 400, "name", "This field is required.")
    assert set(body["fields"]) == {"name", "git_url", "ref", "node"}


@pytest.mark.parametrize(
    "field", ["owner", "owner_id", "node_path", "target_path", "status", "id", "version"]
)
def test_field_that_tries_to_set_server_state_answers_400_naming_it(api, node, field):
    with records_nothing():
        response = post_clone(api, **{field: "1"})

    assert_refused(response, 400, field, "Unknown field")


def test_every_unknown_field_is_named_at_once(api, node):
    extra = {
        "owner": 2,
        "node_path": "/data/projects/2_x",
        "target_path": "../2_x",
        "status": "ready",
    }

    with records_nothing():
        response = post_clone(api, id="00000000-0000-0000-0000-000000000000", **extra)

    body = assert_refused(response, 400, "owner", "Unknown field")
    assert set(body["fields"]) == {"owner", "node_path", "target_path", "status", "id"}


def test_action_body_that_tries_to_set_something_answers_400(api, node):
    project_id = post_clone(api).json()["project"]["id"]

    with records_nothing():
        response = api.post(
            f"/api/v1/projects/{project_id}/pull", {"status": "ready"}, format="json"
        )

    assert_refused(response, 400, "status", "Unknown field")


# --- Bodies and headers -----------------------------------------------------------------------


def post_raw(api, body: bytes, content_type: str = "application/json", **extra):
    return api.generic("POST", CLONE, body, content_type=content_type, **extra)


def test_body_over_the_limit_answers_413_in_json(api, node, settings):
    body = json.dumps(clone_body(name="a" * (settings.MAX_REQUEST_BODY_BYTES + 1))).encode()

    with records_nothing():
        response = post_raw(api, body)

    body = assert_refused(response, 413, "body", f"At most {settings.MAX_REQUEST_BODY_BYTES}")
    assert body["code"] == "too_large"


def test_body_limit_follows_the_setting(api, node, settings):
    settings.MAX_REQUEST_BODY_BYTES = 100
    body = json.dumps(clone_body()).encode() + b" " * 100

    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 413, "body", "At most 100 bytes")


def test_djangos_own_body_cap_also_answers_413_in_json(api, node, settings):
    """Should DATA_UPLOAD_MAX_MEMORY_SIZE ever be below MAX_REQUEST_BODY_BYTES."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100

    with records_nothing():
        response = post_raw(api, json.dumps(clone_body()).encode() + b" " * 100)

    body = assert_refused(response, 413, "body", "larger than 100 bytes")
    assert body["code"] == "too_large"


@pytest.mark.parametrize("declared", ["lots", "-1", "+5", " 5", "0x10", "1e3", "\uff15", "9" * 20])
def test_content_length_that_is_not_plain_digits_answers_400_in_json(api, node, declared):
    with records_nothing():
        response = post_raw(api, json.dumps(clone_body()).encode(), CONTENT_LENGTH=declared)

    assert_refused(response, 400, "Content-Length", "Not a valid size")


def _nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("levels", [11, 100, 30_000])
def test_deeply_nested_json_answers_400(api, node, levels):
    body = b'{"name": "demo", "depth": ' + _nested(levels) + b"}"

    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body", "nested")


def test_nesting_of_100000_levels_is_too_large_by_default(api, node):
    with records_nothing():
        response = post_raw(api, _nested(100_000))

    assert_refused(response, 413, "body")


def test_nesting_of_100000_levels_answers_400_even_under_a_large_body_limit(api, node, settings):
    settings.MAX_REQUEST_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000

    with records_nothing():
        arrays = post_raw(api, _nested(100_000))
        objects = post_raw(api, b'{"a":' * 100_000 + b"1" + b"}" * 100_000)

    assert_refused(arrays, 400, "body", "nested")
    assert_refused(objects, 400, "body", "nested")


def test_json_nested_to_the_limit_still_parses(api, node, settings):
    """Depth 10 is allowed: the refusal is the field's, not the parser's."""
    body = json.dumps({**clone_body(), "depth": json.loads(_nested(settings.MAX_JSON_DEPTH - 1))})

    response = post_raw(api, body.encode())

    assert_refused(response, 400, "depth", "valid integer")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=latin-1",
        "application/json; charset=iso-8859-1",
        "application/json; charset=utf-16",
        "application/json; charset=windows-1252",
        "application/json; charset=no-such-charset",
        "application/json; Charset=latin-1",
        'application/json; charset="latin-1"',
    ],
)
def test_json_in_another_charset_answers_415(api, node, content_type):
    body = json.dumps(clone_body(name="café")).encode("latin-1")

    with records_nothing():
        response = post_raw(api, body, content_type)

    assert_refused(response, 415, "Content-Type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/json; charset=UTF-8", "application/json"],
)
def test_json_in_utf8_is_accepted(api, node, content_type):
    response = post_raw(api, json.dumps(clone_body()).encode(), content_type)

    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "caf\xe9", "git_url": "https://h/x", "branch": "main", "node": "node-1"}',
        b'{"name": "\xff\xfe"}',
        b'{"name": "\xc0\xaf"}',  # overlong encoding of '/'
        b'{"name": "\xed\xa0\x80"}',  # a UTF-16 surrogate
    ],
)
def test_invalid_utf8_answers_400_naming_the_body(api, node, body):
    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body", "UTF-8")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "",
    ],
)
def test_body_that_is_not_json_answers_415(api, node, content_type):
    body = json.dumps(clone_body()).encode()

    with records_nothing():
        response = post_raw(api, body, content_type)

    assert_refused(response, 415, "Content-Type")


def test_form_encoded_clone_answers_415(api, node):
    with records_nothing():
        response = api.post(CLONE, clone_body())  # the test client's default: multipart

    assert_refused(response, 415, "Content-Type")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_answer_400(api, node, constant):
    body = json.dumps(clone_body()).encode()[:-1] + b', "depth": ' + constant + b"}"

    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body", constant.decode().lstrip("-"))


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"name": }', b"{'name': 'demo'}", b'{"a": 1} {"b": 2}', b"\xef\xbb\xbf{}"],
    ids=["unclosed", "no-value", "single-quotes", "two-documents", "bom"],
)
def test_malformed_json_answers_400(api, node, body):
    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body")


def test_empty_body_answers_400_naming_every_required_field(api, node):
    with records_nothing():
        response = post_raw(api, b"")

    body = assert_refused(response, 400, "git_url", "This field is required.")
    assert set(body["fields"]) == {"name", "git_url", "ref", "node"}


UNSAFE_STRINGS = [
    ("name", r"de\u0000mo"),
    ("node", r"\u0000"),
    ("node", r"node-1\u0000"),
    ("node", r"\ud800"),
    ("branch", r"main\udfff"),
    ("git_url", r"https://h/x\ud83d"),  # half of an emoji
]


@pytest.mark.parametrize(("field", "escaped"), UNSAFE_STRINGS)
def test_nul_or_lone_surrogate_answers_400_naming_the_field(api, node, field, escaped):
    body = json.dumps(clone_body(**{field: "PLACEHOLDER"})).replace("PLACEHOLDER", escaped)

    with records_nothing():
        response = post_raw(api, body.encode())

    assert_refused(response, 400, field, "May not contain NUL (\\u0000) or a lone surrogate")


@pytest.mark.parametrize("key", [r"\u0000", r"\ud800", r"x\udc00y"])
def test_nul_or_lone_surrogate_in_a_key_answers_400_naming_the_body(api, node, key):
    body = json.dumps(clone_body()).encode()[:-1] + f', "{key}": 1}}'.encode()

    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body", "lone surrogate")


def test_a_paired_surrogate_escape_is_just_a_character(api, node):
    """`\\ud83d\\ude00` is one emoji: refused by the branch rules, not by the parser."""
    body = json.dumps(clone_body(branch="PLACEHOLDER")).replace("PLACEHOLDER", r"x\ud83d\ude00")

    with records_nothing():
        response = post_raw(api, body.encode())

    assert_refused(response, 400, "branch", "non-ASCII")


def test_number_with_too_many_digits_answers_400(api, node):
    body = json.dumps(clone_body()).encode()[:-1] + b', "depth": ' + b"9" * 5000 + b"}"

    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body")


@pytest.mark.parametrize(
    "body", [b"[]", b'[{"name": "demo"}]', b'"demo"', b"42", b"true", b"null"], ids=repr
)
def test_json_that_is_not_an_object_answers_400(api, node, body):
    with records_nothing():
        response = post_raw(api, body)

    assert_refused(response, 400, "body")


@pytest.mark.parametrize("path", ["/api/v1/projects/not-a-uuid", "/api/v1/no-such-thing"])
def test_unknown_api_url_answers_404_in_json(api, path):
    response = api.get(path)

    assert response.status_code == 404
    assert response.json() == {"error": "Not found.", "code": "not_found"}
