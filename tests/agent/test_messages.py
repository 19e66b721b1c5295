"""What goes back to the server about git: parsed progress, error codes, scrubbed messages."""

from __future__ import annotations

import pytest

from agent.errors import MAX_MESSAGE_LENGTH, JobFailure, cap_message, scrub
from agent.git import Progress, classify_failure, parse_progress


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "Receiving objects:  42% (420/1000), 1.20 MiB | 1.00 MiB/s",
            Progress("receiving", 42, 420, int(1.2 * 2**20)),
        ),
        ("Receiving objects: 100% (3/3), done.", Progress("receiving", 100, 3, None)),
        (
            "Receiving objects:  10% (1/10), 512 bytes | 512.00 KiB/s",
            Progress("receiving", 10, 1, 512),
        ),
        (
            "Receiving objects:  7% (7/100), 2.50 GiB | 3 MiB/s",
            Progress("receiving", 7, 7, int(2.5 * 2**30)),
        ),
        ("Resolving deltas:  50% (1/2)", Progress("resolving", 50, 1, None)),
        ("remote: Counting objects:  33% (1/3)", Progress("counting", 33, 1, None)),
        ("remote: Compressing objects: 100% (2/2), done.", Progress("compressing", 100, 2, None)),
        ("Updating files:  60% (3/5)", Progress("checkout", 60, 3, None)),
        ("Unpacking objects:  50% (2/4)", Progress("unpacking", 50, 2, None)),
    ],
)
def test_progress_lines_are_parsed(line, expected):
    assert parse_progress(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "Cloning into '/data/projects/.tmp-x'...",
        "remote: Enumerating objects: 5, done.",
        "fatal: repository 'x' not found",
        "",
        "Receiving objects: lots",
    ],
)
def test_other_lines_are_not_progress(line):
    assert parse_progress(line) is None


HUGE = "9" * 5000


@pytest.mark.parametrize(
    "line",
    [
        f"remote: Counting objects: 100% ({HUGE}/1)",
        f"Receiving objects:  42% (1/{HUGE})",
        "Receiving objects:  42% (1234567890123456789/1)",
        "A" * 100_000 + ": 50% (1/2)",
        "Receiving objects:" + " " * 100_000 + "50% (1/2)",
    ],
    ids=["huge-done", "huge-total", "19-digits", "long-phase", "long-padding"],
)
def test_hostile_progress_lines_are_not_progress_and_do_not_raise(line):
    assert parse_progress(line) is None


@pytest.mark.parametrize(
    "amount", [HUGE, f"1.{HUGE}", f"{HUGE}.5"], ids=["huge", "long-fraction", "huge-integer-part"]
)
def test_a_hostile_amount_is_left_out_of_the_progress(amount):
    line = f"Receiving objects:  42% (420/1000), {amount} MiB | 1.00 MiB/s"

    assert parse_progress(line) == Progress("receiving", 42, 420, None)


def test_progress_numbers_stay_within_what_the_server_stores():
    progress = parse_progress(
        "Receiving objects: 100% (999999999999999999/999999999999999999), "
        "999999999999999999.999999 TiB | 1 MiB/s"
    )

    assert progress is not None
    assert progress.objects == 999_999_999_999_999_999
    assert progress.bytes == 2**63 - 1


@pytest.mark.parametrize(
    ("stderr", "code", "retryable"),
    [
        (
            "fatal: could not read Username for 'https://h': terminal prompts disabled",
            "auth_failed",
            False,
        ),
        (
            "git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.",
            "auth_failed",
            False,
        ),
        (
            "remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://h/r'",
            "auth_failed",
            False,
        ),
        (
            "remote: Repository not found.\nfatal: repository 'https://h/r/' not found",
            "repository_not_found",
            False,
        ),
        (
            "fatal: remote error: access denied or repository not exported: /x.git",
            "repository_not_found",
            False,
        ),
        ("fatal: '/srv/x' does not appear to be a git repository", "repository_not_found", False),
        (
            "warning: Could not find remote branch nope to clone.\nfatal: Remote branch nope not found in upstream origin",
            "branch_not_found",
            False,
        ),
        ("fatal: couldn't find remote ref refs/heads/nope", "branch_not_found", False),
        ("fatal: unable to access 'https://h/': Could not resolve host: h", "network_error", True),
        (
            "fatal: unable to connect to 127.0.0.1:\n127.0.0.1[0: 127.0.0.1]: errno=Connection refused",
            "network_error",
            True,
        ),
        (
            "error: RPC failed; curl 56 GnuTLS recv error (-9)\nfatal: early EOF",
            "network_error",
            True,
        ),
        (
            "fatal: unable to access 'https://h/r/': The requested URL returned error: 503",
            "network_error",
            True,
        ),
        ("fatal: write error: No space left on device", "disk_full", False),
        (
            "fatal: could not create work tree dir '/p/x': Permission denied",
            "permission_denied",
            False,
        ),
        ("fatal: cannot mkdir: Read-only file system", "permission_denied", False),
        ("fatal: transport 'ext' not allowed", "git_error", False),
        ("", "git_error", False),
    ],
)
def test_git_failures_map_to_protocol_codes(stderr, code, retryable):
    failure = classify_failure(stderr, returncode=128)

    assert (failure.code, failure.retryable) == (code, retryable)
    assert failure.message


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("fatal: unable to access 'https://alice:s3cr3t-pw@example.com/r.git/'", "s3cr3t-pw"),
        (
            "fatal: unable to access 'https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/'",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        (
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 leaked",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        ),
        (
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz in text",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        ),
        ("see glpat-AbCdEfGhIjKlMnOpQrSt here", "glpat-AbCdEfGhIjKlMnOpQrSt"),
        ("agent token gfa_Zx9Yw8Vu7Ts6Rq5Po4 seen", "gfa_Zx9Yw8Vu7Ts6Rq5Po4"),
        ("user token gfu_0123456789abcdef seen", "gfu_0123456789abcdef"),
        ("> Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("> authorization: Basic YWxpY2U6czNjcjN0", "YWxpY2U6czNjcjN0"),
        ("Proxy-Authorization: Basic YWxpY2U6czNjcjN0", "YWxpY2U6czNjcjN0"),
        (
            "GET /r.git?private_token=3f9a0c1b2d4e5f60718293a4b5c6d7e8 HTTP/1.1",
            "3f9a0c1b2d4e5f60718293a4b5c6d7e8",
        ),
        ("url: https://h/r?token=QWxhZGRpbjpvcGVuIHNlc2FtZQ==&x=1", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ("password=hunter2hunter2", "hunter2hunter2"),
        ('secret: "a very secret value"', "a very secret value"),
        ("ssh://deploy:pa55w0rd@h/r.git", "pa55w0rd"),
    ],
)
def test_credentials_are_scrubbed(text, secret):
    cleaned = scrub(text)

    assert secret not in cleaned
    assert "***" in cleaned


def test_scrubbing_keeps_the_useful_part():
    text = "fatal: repository 'https://alice:pw@example.com/r.git/' not found (commit 0123456789abcdef0123456789abcdef01234567)"

    assert scrub(text) == (
        "fatal: repository 'https://***@example.com/r.git/' not found "
        "(commit 0123456789abcdef0123456789abcdef01234567)"
    )


def test_messages_are_capped_keeping_the_end():
    text = "noise\n" * 1000 + "fatal: the real reason"

    capped = cap_message(text)

    assert len(capped) == MAX_MESSAGE_LENGTH
    assert capped.endswith("fatal: the real reason")


def test_a_job_failure_scrubs_and_caps_its_message():
    failure = JobFailure("git_error", "x" * 5000 + " https://u:p4ss@h/r Authorization: Bearer abc")

    assert len(failure.message) <= MAX_MESSAGE_LENGTH
    assert "p4ss" not in failure.message and "abc" not in failure.message
    assert failure.as_dict() == {
        "code": "git_error",
        "message": failure.message,
        "retryable": False,
    }


def test_unknown_error_codes_are_a_programming_error():
    with pytest.raises(ValueError):
        JobFailure("oops", "x")
