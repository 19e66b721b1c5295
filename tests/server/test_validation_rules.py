"""The rules in `gitpolicy`, case by case: git URLs, branch names, project names.

Pure functions, no database. The tables in `tests.support.policy_cases` also drive the API
tests in `test_bad_input.py` and the agent's in `tests/agent/test_validation.py`. Each refused
case names a fragment of the reason the user is shown.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from gitpolicy import (
    MAX_URL_LENGTH,
    UrlPolicy,
    validate_branch,
    validate_git_url,
    validate_project_name,
)
from tests.support.policy_cases import (
    OPEN,
    OPT_IN_SCHEME_URLS,
    PRIVATE_URLS,
    REFUSED_BRANCHES,
    REFUSED_BY_GIT_RULES,
    REFUSED_PROJECT_NAMES,
    REFUSED_URLS,
    STRICT,
    VALID_BRANCHES,
    VALID_PROJECT_NAMES,
    VALID_URLS,
)


@pytest.mark.parametrize("url", VALID_URLS)
@pytest.mark.parametrize("policy", [STRICT, OPEN], ids=["strict", "open"])
def test_valid_url_is_accepted_unchanged(url, policy):
    assert validate_git_url(url, policy) == url


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
@pytest.mark.parametrize("policy", [STRICT, OPEN], ids=["strict", "open"])
def test_url_is_refused_under_every_policy(url, reason, policy):
    with pytest.raises(ValueError, match=_fragment(reason)):
        validate_git_url(url, policy)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_host_is_refused_by_default(url):
    with pytest.raises(ValueError, match="non-public hosts are not allowed on this server"):
        validate_git_url(url, STRICT)


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_host_is_accepted_when_the_operator_allows_it(url):
    assert validate_git_url(url, OPEN) == url


@pytest.mark.parametrize("url", OPT_IN_SCHEME_URLS)
def test_opt_in_scheme_is_refused_unless_listed(url):
    scheme = url.split("://")[0]
    with pytest.raises(ValueError, match=f"Scheme '{scheme}' is not allowed; use one of: https"):
        validate_git_url(url, STRICT)
    assert validate_git_url(url, OPEN) == url


def test_scp_like_url_needs_ssh_to_be_allowed():
    https_only = UrlPolicy(allowed_schemes=frozenset({"https"}), allow_private_hosts=False)
    with pytest.raises(ValueError, match="ssh is not an allowed scheme"):
        validate_git_url("git@github.com:org/repo.git", https_only)


def test_local_git_daemon_url_is_accepted_when_allowed():
    assert validate_git_url("git://127.0.0.1:9418/repo", OPEN) == "git://127.0.0.1:9418/repo"
    with pytest.raises(ValueError, match="Scheme 'git' is not allowed"):
        validate_git_url("git://127.0.0.1:9418/repo", STRICT)


def test_url_of_exactly_the_maximum_length_is_accepted():
    url = "https://host/" + "a" * (MAX_URL_LENGTH - len("https://host/"))
    assert validate_git_url(url, STRICT) == url


# --- Branch names -----------------------------------------------------------------------------


@pytest.mark.parametrize("branch", VALID_BRANCHES)
def test_valid_branch_is_accepted_unchanged(branch):
    assert validate_branch(branch) == branch


@pytest.mark.parametrize(("branch", "reason"), REFUSED_BRANCHES)
def test_branch_is_refused(branch, reason):
    with pytest.raises(ValueError, match=_fragment(reason)):
        validate_branch(branch)


def _git_accepts_branch(name: str, cwd) -> bool:
    if "\x00" in name:
        return False  # cannot even be passed to a program
    env = {"PATH": os.environ["PATH"], "GIT_CEILING_DIRECTORIES": str(cwd), "HOME": str(cwd)}
    done = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        cwd=cwd,
        env=env,
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.mark.parametrize(
    "branch", [name for name, _ in REFUSED_BRANCHES] + VALID_BRANCHES + ["FETCH_HEAD", "HEAD@"]
)
def test_every_accepted_branch_is_accepted_by_real_git(branch, tmp_path):
    """Outside any repository, so git does not expand `@{-1}` to the previous branch."""
    ours = _accepts(validate_branch, branch)
    theirs = _git_accepts_branch(branch, tmp_path)

    assert not ours or theirs, f"{branch!r} passes Gitfleet but not git check-ref-format"


@pytest.mark.parametrize(("branch", "reason"), REFUSED_BY_GIT_RULES)
def test_what_gits_rules_refuse_real_git_refuses_too(branch, reason, tmp_path):
    assert not _git_accepts_branch(branch, tmp_path)


# --- Project names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALID_PROJECT_NAMES)
def test_valid_project_name_is_accepted_unchanged(name):
    assert validate_project_name(name) == name


@pytest.mark.parametrize(("name", "reason"), REFUSED_PROJECT_NAMES)
def test_project_name_is_refused(name, reason):
    with pytest.raises(ValueError, match=_fragment(reason)):
        validate_project_name(name)


# --- helpers ----------------------------------------------------------------------------------


def _fragment(reason: str) -> str:
    return re.escape(reason)


def _accepts(rule, value) -> bool:
    try:
        rule(value)
    except ValueError:
        return False
    return True
