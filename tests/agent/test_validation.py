"""Every job field is checked again on the agent: URLs, hosts, branches, ids, numbers."""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.validation import (
    InvalidJob,
    check_resolved_host,
    parse_job,
    validate_branch,
    validate_git_url,
)
from tests.support.gitservers import TEST_GIT_ENV
from tests.support.jobs import job_data

ALL_SCHEMES = ("https", "ssh", "http", "git", "file")


def check_url(url, *, schemes=ALL_SCHEMES, private=False):
    return validate_git_url(url, allowed_schemes=schemes, allow_private_hosts=private)


@pytest.mark.parametrize(
    ("url", "scheme", "host"),
    [
        ("https://github.com/org/repo.git", "https", "github.com"),
        ("https://GitHub.com:443/org/repo", "https", "github.com"),
        ("http://example.com/repo.git", "http", "example.com"),
        ("git://example.com/repo.git", "git", "example.com"),
        ("ssh://git@example.com/org/repo.git", "ssh", "example.com"),
        ("ssh://example.com:2222/repo.git", "ssh", "example.com"),
        ("git@github.com:org/repo.git", "ssh", "github.com"),
        ("example.com:org/repo.git", "ssh", "example.com"),
        ("git@[2606:4700::1]:repo.git", "ssh", "2606:4700::1"),
        ("https://[2606:4700::1]/repo.git", "https", "2606:4700::1"),
        ("https://8.8.8.8/repo.git", "https", "8.8.8.8"),
        ("file:///srv/git/repo.git", "file", ""),
    ],
)
def test_good_urls_pass(url, scheme, host):
    parsed = check_url(url)

    assert (parsed.scheme, parsed.host) == (scheme, host)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        ("-uhttps://example.com/repo", "start with '-'"),
        ("--upload-pack=touch /tmp/x", "start with '-'"),
        ("https://example.com/re po", "whitespace"),
        ("https://example.com/repo\n", "whitespace"),
        ("https://example.com/repo\x00", "control"),
        ("https://example.com/\u200brepo", "control"),
        ("ext::sh -c touch% /tmp/pwned", "whitespace"),
        ("ext::sh", "remote-helper"),
        ("fd::17", "remote-helper"),
        ("https://user:secret@example.com/repo.git", "credentials"),
        ("https://ghp_abcdefghijklmnop@github.com/org/repo.git", "token"),
        ("https://oauth2@gitlab.com/org/repo.git", "token"),
        ("ssh://git:pw@example.com/repo.git", "credentials"),
        ("ssh://-oProxyCommand=x@example.com/repo", "'-'"),
        ("-oProxyCommand=x@example.com:repo", "'-'"),
        ("ssh://-oProxyCommand=x/repo", "'-'"),
        ("ftp://example.com/repo.git", "scheme 'ftp'"),
        ("svn://example.com/repo", "scheme 'svn'"),
        ("https://", "host"),
        ("https:///repo.git", "host"),
        ("https://example.com", "path"),
        ("https://example.com/", "path"),
        ("https://example.com:99999/repo", "valid URL"),
        ("git@example.com:", "path"),
        ("/srv/git/repo.git", "must be a URL"),
        ("./repo", "must be a URL"),
        ("file://otherhost/srv/repo.git", "host"),
        ("https://" + "a" * 2050 + ".com/r", "longer than"),
    ],
)
def test_bad_urls_are_refused(url, reason):
    with pytest.raises(ValueError) as raised:
        check_url(url)

    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://example.com/r.git", ("ssh",)),
        ("git@example.com:r.git", ("https",)),
        ("file:///srv/r.git", ("https", "ssh")),
        ("git://example.com/r.git", ("https", "ssh", "http")),
    ],
)
def test_schemes_outside_the_allowed_set_are_refused(url, allowed):
    with pytest.raises(ValueError, match="not allowed"):
        check_url(url, schemes=allowed)


# "0.0.0.0" is a host to refuse here, not an address to bind.
PRIVATE_HOSTS = [
    "127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1", "017700000001", "0.0.0.0", "localhost",  # noqa: S104
    "LOCALHOST.", "api.localhost", "10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1",
    "[::1]", "[::]", "[fc00::1]", "[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]",
]  # fmt: skip
ALWAYS_REFUSED_HOSTS = [
    "169.254.169.254", "169.254.0.1", "[fe80::1]", "[fe80::1%25eth0]", "[fd00:ec2::254]",
    "[::ffff:169.254.169.254]", "metadata.google.internal", "Metadata.Google.Internal.",
    "224.0.0.1",
]  # fmt: skip


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
def test_private_hosts_are_refused_unless_allowed(host):
    url = f"https://{host}/repo.git"

    with pytest.raises(ValueError, match=r"private|loopback"):
        check_url(url)
    assert check_url(url, private=True).scheme == "https"


@pytest.mark.parametrize("host", ALWAYS_REFUSED_HOSTS)
def test_link_local_and_metadata_hosts_are_always_refused(host):
    for url in (f"https://{host}/repo.git", f"git@{host}:repo.git"):
        with pytest.raises(ValueError):
            check_url(url, private=True)


def test_a_name_that_resolves_to_loopback_is_refused_after_resolution():
    with pytest.raises(ValueError, match="private"):
        check_resolved_host("localhost", 443, allow_private_hosts=False)
    check_resolved_host("localhost", 443, allow_private_hosts=True)
    check_resolved_host("does-not-resolve.invalid", 443, allow_private_hosts=False)


GOOD_BRANCHES = [
    "main", "feature/x", "release-1.2", "a.b", "v1", "HEAD-1", "@x", "x@y", "ü-branch",
    "a/b/c", "fix_#12", "x{y}", "a" * 255,
]  # fmt: skip
BAD_BRANCHES = [
    "", None, 5, "-x", "--force", "HEAD", "@", "a..b", "a b", "a\tb", "a\nb", "a~1", "a^",
    "a:b", "a?", "a*", "a[b", "a\\b", "/a", "a/", "a//b", "a.", ".a", "a/.b", "a.lock",
    "a/b.lock/c", "a@{1}", "@{-1}", "a\x7f", "a\x00", "a" * 256,
]  # fmt: skip


# Outside a repository git checks these literally; inside one `@` means HEAD.
STRICTER_THAN_GIT = ("HEAD", "@", "a" * 256)


@pytest.mark.parametrize("name", GOOD_BRANCHES)
def test_good_branch_names_pass(name):
    assert validate_branch(name) == name


@pytest.mark.parametrize("name", BAD_BRANCHES)
def test_bad_branch_names_are_refused(name):
    with pytest.raises(ValueError):
        validate_branch(name)


def git_accepts_branch(name: str) -> bool:
    completed = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        env=TEST_GIT_ENV, cwd="/", capture_output=True, check=False,
    )  # fmt: skip
    return completed.returncode == 0


@pytest.mark.parametrize("name", [n for n in GOOD_BRANCHES + BAD_BRANCHES if isinstance(n, str)])
def test_the_tables_agree_with_git_check_ref_format(name):
    ours = True
    try:
        validate_branch(name)
    except ValueError:
        ours = False
    # Ours is stricter on purpose only for names a repository reads as HEAD, and for length.
    if name not in STRICTER_THAN_GIT and "\x00" not in name:
        assert ours == git_accepts_branch(name)


# Printable ASCII without the space: where ours and git must agree exactly.
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
def test_validate_branch_matches_git_on_printable_names(name):
    try:
        validate_branch(name)
        ours = True
    except ValueError:
        ours = False
    if name not in STRICTER_THAN_GIT:
        assert ours == git_accepts_branch(name)


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
