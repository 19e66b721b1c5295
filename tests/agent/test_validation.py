"""Every job field is checked again on the agent before git runs.

URLs, hosts, branches and the target folder go through `gitpolicy`, and are run here against
the same table of cases as the server (`tests.support.policy_cases`): a job the server would
have refused fails with `invalid_job` naming the field. Ids and numbers are the agent's own.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.validation import InvalidJob, parse_job
from gitpolicy import PRIVATE_REFUSED, UrlPolicy, check_resolved_host, parse_git_url
from tests.support.gitservers import TEST_GIT_ENV
from tests.support.jobs import job_data
from tests.support.policy_cases import (
    OPEN,
    OPT_IN_SCHEME_URLS,
    PRIVATE_URLS,
    REFUSED_BRANCHES,
    REFUSED_PROJECT_NAMES,
    REFUSED_URLS,
    REVIEW_FINDING_URLS,
    STRICT,
    VALID_BRANCHES,
    VALID_PROJECT_NAMES,
    VALID_URLS,
)

POLICIES = pytest.mark.parametrize("policy", [STRICT, OPEN], ids=["strict", "open"])


def parse(policy: UrlPolicy, **overrides):
    return parse_job(
        job_data(**overrides),
        allowed_schemes=policy.allowed_schemes,
        allow_private_hosts=policy.allow_private_hosts,
    )


def refusal(policy: UrlPolicy, **overrides) -> InvalidJob:
    with pytest.raises(InvalidJob) as raised:
        parse(policy, **overrides)
    return raised.value


# --- Git URLs: the shared table ----------------------------------------------------------------


@pytest.mark.parametrize("url", VALID_URLS)
@POLICIES
def test_valid_url_is_accepted(url, policy):
    assert parse(policy, git_url=url).git_url == url


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
@POLICIES
def test_refused_url_fails_the_job_naming_git_url(url, reason, policy):
    refused = refusal(policy, git_url=url)

    assert refused.field == "git_url"
    assert reason in refused.reason


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_host_is_refused_unless_the_node_allows_it(url):
    refused = refusal(STRICT, git_url=url)

    assert (refused.field, refused.reason) == ("git_url", PRIVATE_REFUSED)
    assert parse(OPEN, git_url=url).git_url == url


@pytest.mark.parametrize("url", OPT_IN_SCHEME_URLS)
def test_scheme_outside_the_nodes_list_is_refused(url):
    assert "is not allowed; use one of: https, ssh" in refusal(STRICT, git_url=url).reason
    assert parse(OPEN, git_url=url).git_url == url


@pytest.mark.parametrize(("url", "reason"), REVIEW_FINDING_URLS)
def test_what_the_review_found_the_agent_accepting_is_refused(url, reason):
    refused = refusal(STRICT, git_url=url)

    assert refused.field == "git_url"
    assert reason in refused.reason


def test_every_review_finding_is_also_a_case_of_the_shared_tables():
    tables = set(REFUSED_URLS) | {(url, "not allowed on this server") for url in PRIVATE_URLS}

    assert set(REVIEW_FINDING_URLS) <= tables


@pytest.mark.parametrize("url", [None, 5, ["https://example.com/r.git"], {"url": "x"}])
def test_a_url_that_is_not_a_string_is_refused(url):
    assert refusal(STRICT, git_url=url).field == "git_url"


# --- Branches and target folders: the shared tables --------------------------------------------


@pytest.mark.parametrize("branch", VALID_BRANCHES)
def test_valid_branch_is_accepted(branch):
    assert parse(STRICT, branch=branch).branch == branch


@pytest.mark.parametrize(("branch", "reason"), REFUSED_BRANCHES)
def test_refused_branch_fails_the_job_naming_branch(branch, reason):
    refused = refusal(STRICT, branch=branch)

    assert refused.field == "branch"
    assert reason in refused.reason


@pytest.mark.parametrize("name", VALID_PROJECT_NAMES)
def test_the_folder_of_a_valid_project_name_is_accepted(name):
    assert parse(STRICT, target_path=f"42_{name}").target_path == f"42_{name}"


@pytest.mark.parametrize(("name", "reason"), REFUSED_PROJECT_NAMES)
def test_the_folder_of_a_refused_project_name_fails_the_job(name, reason):
    assert refusal(STRICT, target_path=f"42_{name}").field == "target_path"


# --- What only the agent does: file URLs, resolution --------------------------------------------

WITH_FILE = UrlPolicy(allowed_schemes=frozenset({"https", "file"}), allow_private_hosts=False)
SSH_AND_FILE = UrlPolicy(
    allowed_schemes=frozenset({"https", "ssh", "file"}), allow_private_hosts=False
)


def test_a_file_url_is_accepted_only_where_the_node_allows_file():
    assert (
        parse(WITH_FILE, git_url="file:///srv/git/repo.git").git_url == "file:///srv/git/repo.git"
    )
    assert "Scheme 'file' is not allowed" in refusal(STRICT, git_url="file:///srv/r.git").reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file://otherhost/srv/repo.git", "may not name a host"),
        ("file://localhost/srv/repo.git", "may not name a host"),
        ("file:///srv/../etc/repo.git", "'.' or '..' segments"),
        ("file:///srv/repo.git?x=1", "query string"),
        ("file:///", "no repository path"),
        ("FILE:///srv/repo.git", "lower case"),
    ],
)
def test_a_bad_file_url_is_refused(url, reason):
    assert reason in refusal(WITH_FILE, git_url=url).reason


@pytest.mark.parametrize(
    ("url", "scheme", "host", "port"),
    [
        ("https://GitHub.com:443/org/repo", "https", "github.com", 443),
        ("https://github.com./org/repo", "https", "github.com", None),
        ("ssh://git@example.com:2222/repo.git", "ssh", "example.com", 2222),
        ("git@github.com:org/repo.git", "ssh", "github.com", None),
        ("git@[2606:4700::1]:repo.git", "ssh", "2606:4700::1", None),
        ("https://[2606:4700::1]:8443/repo.git", "https", "2606:4700::1", 8443),
        ("file:///srv/git/repo.git", "file", "", None),
    ],
)
def test_the_host_the_agent_resolves_is_the_bare_lower_case_name(url, scheme, host, port):
    parsed = parse_git_url(url, SSH_AND_FILE)

    assert (parsed.scheme, parsed.host, parsed.port) == (scheme, host, port)


def test_a_name_that_resolves_to_loopback_is_refused_after_resolution():
    with pytest.raises(ValueError, match=r"localhost resolves to (127\.0\.0\.1|::1)\. Loopback"):
        check_resolved_host("localhost", 443, STRICT)
    check_resolved_host("localhost", 443, OPEN)
    check_resolved_host("does-not-resolve.invalid", 443, STRICT)


# --- Branches against git itself --------------------------------------------------------------


def git_accepts_branch(name: str) -> bool:
    completed = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        env=TEST_GIT_ENV, cwd="/", capture_output=True, check=False,
    )  # fmt: skip
    return completed.returncode == 0


# Printable ASCII without the space, and pieces that meet git's rules at their edges.
branch_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24
)
branch_like = st.lists(
    st.sampled_from(["a", "b", ".", "/", "-", "@", "{", "lock", "..", "~", "^", ":", "*", "_"]),
    min_size=1,
    max_size=8,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.one_of(branch_text, branch_like))
def test_every_branch_the_agent_accepts_git_accepts(name):
    try:
        parse(STRICT, branch=name)
    except InvalidJob:
        return
    assert git_accepts_branch(name), f"{name!r} passes the policy but not git check-ref-format"


# --- Ids and numbers ---------------------------------------------------------------------------


def test_parse_job_returns_a_job_with_canonical_ids():
    data = job_data(id="3F2504E0-4F89-11D3-9A0C-0305E82C3301", depth=1)

    job = parse_job(data, allowed_schemes=("https",), allow_private_hosts=False)

    assert job.id == "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert (job.kind, job.branch, job.target_path, job.depth) == (
        "clone",
        "main",
        "42_my-project",
        1,
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "rebase"}, "kind"),
        ({"kind": None}, "kind"),
        ({"id": "not-a-uuid"}, "id"),
        ({"id": 12}, "id"),
        ({"project_id": "3f2504e04f8911d39a0c0305e82c3301"}, "project_id"),
        ({"git_url": "ftp://example.com/r.git"}, "git_url"),
        ({"git_url": "https://127.0.0.1/r.git"}, "git_url"),
        ({"branch": "-f"}, "branch"),
        ({"branch": ""}, "branch"),
        ({"target_path": "../etc"}, "target_path"),
        ({"target_path": "42_x/../../etc"}, "target_path"),
        ({"depth": 0}, "depth"),
        ({"depth": -3}, "depth"),
        ({"depth": "1"}, "depth"),
        ({"depth": True}, "depth"),
        ({"depth": 1.5}, "depth"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"timeout_seconds": None}, "timeout_seconds"),
    ],
)
def test_parse_job_names_the_bad_field(overrides, field):
    with pytest.raises(InvalidJob) as raised:
        parse_job(job_data(**overrides), allowed_schemes=("https",), allow_private_hosts=False)

    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_a_delete_job_needs_no_url_or_branch():
    data = job_data(kind="delete", git_url="", branch="")

    job = parse_job(data, allowed_schemes=("https",), allow_private_hosts=False)

    assert (job.kind, job.git_url, job.branch) == ("delete", "", "")


def test_a_delete_job_with_a_url_still_has_it_checked():
    data = job_data(kind="delete", git_url="ext::sh")

    with pytest.raises(InvalidJob, match="git_url"):
        parse_job(data, allowed_schemes=("https",), allow_private_hosts=False)


def _parse(**overrides):
    return parse_job(job_data(**overrides), allowed_schemes=("https",), allow_private_hosts=False)


def test_strategy_and_force_default_when_an_older_server_leaves_them_out():
    job = _parse(kind="pull")

    assert (job.strategy, job.force) == ("ff-only", False)
    assert _parse(kind="pull", strategy="rebase").strategy == "rebase"
    assert _parse(kind="delete", force=True).force is True
    assert _parse(kind="inspect").kind == "inspect"


@pytest.mark.parametrize(
    ("field", "value"),
    [("strategy", "merge"), ("strategy", 1), ("strategy", ""), ("force", "true"), ("force", 1)],
)
def test_a_bad_strategy_or_force_fails_the_job_naming_the_field(field, value):
    with pytest.raises(InvalidJob) as raised:
        _parse(kind="pull", **{field: value})

    assert raised.value.field == field
