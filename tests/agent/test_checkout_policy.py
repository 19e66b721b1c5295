"""The checkout options' rules, from the shared table both sides run: what the agent accepts in
a job and how submodule URLs resolve (the server applies the same `gitpolicy` functions)."""

from __future__ import annotations

import pytest

import gitpolicy
from agent.validation import InvalidJob, parse_job
from tests.support.jobs import job_data
from tests.support.policy_cases import (
    REFUSED_FILTERS,
    REFUSED_REFS,
    REFUSED_SPARSE,
    STRICT,
    SUBMODULE_URLS,
    VALID_FILTERS,
    VALID_REFS,
    VALID_SPARSE,
)


def parse(**fields):
    return parse_job(job_data(**fields), allowed_schemes=("https",), allow_private_hosts=False)


@pytest.mark.parametrize("value", VALID_FILTERS)
def test_valid_filters_are_taken(value):
    assert parse(filter=value).filter == value


@pytest.mark.parametrize(("value", "reason"), REFUSED_FILTERS)
def test_refused_filters_name_the_field(value, reason):
    with pytest.raises(InvalidJob) as raised:
        parse(filter=value)
    assert (raised.value.field, reason in raised.value.reason) == ("filter", True)


@pytest.mark.parametrize("value", VALID_SPARSE)
def test_valid_sparse_folders_are_taken(value):
    assert parse(sparse=value).sparse == tuple(value)


@pytest.mark.parametrize(("value", "reason"), REFUSED_SPARSE)
def test_refused_sparse_folders_name_the_field(value, reason):
    with pytest.raises(InvalidJob) as raised:
        parse(sparse=value)
    assert raised.value.field == "sparse"
    assert reason in raised.value.reason


@pytest.mark.parametrize("value", VALID_REFS)
def test_valid_refs_are_taken(value):
    assert parse(ref=value).ref == value


@pytest.mark.parametrize(("value", "reason"), REFUSED_REFS)
def test_refused_refs_name_the_field(value, reason):
    with pytest.raises(InvalidJob) as raised:
        parse(ref=value)
    assert raised.value.field == "ref"
    assert reason in raised.value.reason


@pytest.mark.parametrize(("field", "value"), [("lfs", "yes"), ("submodules", "all")])
def test_other_bad_options_name_the_field(field, value):
    with pytest.raises(InvalidJob) as raised:
        parse(**{field: value})
    assert raised.value.field == field


@pytest.mark.parametrize(("url", "parent", "expected"), SUBMODULE_URLS)
def test_submodule_urls_resolve_against_the_parent_and_pass_the_policy(url, parent, expected):
    parent_url = gitpolicy.parse_git_url(parent, STRICT)
    if expected.startswith("https://"):
        assert gitpolicy.resolve_submodule_url(url, parent_url, STRICT).url == expected
    else:
        with pytest.raises(ValueError, match=expected):
            gitpolicy.resolve_submodule_url(url, parent_url, STRICT)
