"""Parsing the command line: what each command accepts, and what it refuses with exit 2."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from gitfleet_cli.cli import (
    DEFAULT_WAIT_TIMEOUT,
    build_parser,
    clone_body,
    default_project_name,
    main,
    resolve_project,
    table,
)
from gitfleet_cli.errors import Refused, UsageError


def parse(*argv: str):
    return build_parser().parse_args(argv)


def run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(), environ=environ or {})
    return code, out.getvalue(), err.getvalue()


def test_clone_takes_a_url_a_node_and_options():
    args = parse("clone", "https://example.com/a/b.git", "--node", "n1", "--depth", "5", "--wait")

    assert args.git_url == "https://example.com/a/b.git"
    assert args.node == "n1"
    assert args.depth == 5
    assert args.wait is True
    assert args.branch is None  # main unless --ref: see clone_body
    assert args.name is None
    assert args.timeout == DEFAULT_WAIT_TIMEOUT


@pytest.mark.parametrize("argv", [("--json", "ls"), ("ls", "--json")])
def test_json_is_accepted_before_or_after_the_command(argv):
    assert parse(*argv).json is True


def test_json_is_off_unless_asked():
    assert parse("ls").json is False
    assert parse("tokens", "create", "x").json is False


@pytest.mark.parametrize(
    "argv",
    [
        ("clone", "https://example.com/x.git"),  # no --node
        ("clone", "--node", "n1"),  # no URL
        ("clone", "u", "--node", "n", "--depth", "0"),
        ("clone", "u", "--node", "n", "--depth", "-3"),
        ("clone", "u", "--node", "n", "--depth", "many"),
        ("watch", "p", "--timeout", "0"),
        ("watch", "p", "--timeout", "soon"),
        ("status",),
        ("ls", "--status", "sleeping"),
        ("tokens", "create"),
        ("tokens", "create", "x", "--expires", "tomorrow"),
        ("tokens", "burn", "x"),
        ("frobnicate",),
        (),
    ],
)
def test_bad_usage_exits_2(argv):
    code, out, err = run(*argv)

    assert code == 2
    assert out == ""
    assert "usage: gitfleet" in err


def test_login_takes_no_token_argument():
    # A token in argv is readable by every process on the machine (ps, /proc).
    code, _, err = run("login", "http://127.0.0.1:1", "--token", "secret")

    assert code == 2
    assert "unrecognized arguments: --token" in err


def test_help_lists_the_commands_and_the_exit_codes():
    code, out, _ = run("--help")

    assert code == 0
    for command in ("login", "clone", "ls", "status", "watch", "pull", "delete", "events"):
        assert command in out
    assert "nodes" in out and "tokens" in out
    for line in ("0  done", "1  the job failed", "2  bad usage", "3  the server refused",
                 "4  the server is unreachable"):  # fmt: skip
        assert line in out


def test_tokens_defaults_to_the_list():
    args = parse("tokens")

    assert args.handler.__name__ == "cmd_tokens_list"
    assert parse("tokens", "revoke", "12").token_id == "12"


def test_expiry_in_days_becomes_a_date_time():
    expires = datetime.fromisoformat(parse("tokens", "create", "ci", "--expires", "30d").expires)

    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    assert parse("tokens", "create", "ci", "--expires", "2027-01-31").expires == "2027-01-31"


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com/kubernetes/git-sync.git", "git-sync"),
        ("git@github.com:owner/repo.git", "repo"),
        ("ssh://git@host/owner/my.repo/", "my.repo"),
        ("git://127.0.0.1:9418/weird name!.git", "weird-name-"),
    ],
)
def test_a_project_name_is_made_from_the_url(url, name):
    assert default_project_name(url) == name


def test_a_url_without_a_usable_name_asks_for_one():
    with pytest.raises(UsageError, match="--name"):
        default_project_name("https://example.com/.git")


def test_a_project_id_is_used_as_given_without_asking_the_server():
    project_id = "0b8e7c9e-58a4-4f0e-9a35-7d6f8f3c1b2a"

    assert resolve_project(None, project_id.upper()) == project_id  # type: ignore[arg-type]


def test_something_neither_id_nor_name_is_bad_usage():
    with pytest.raises(UsageError, match="neither a project id nor a project name"):
        resolve_project(None, "../etc")  # type: ignore[arg-type]


def test_not_logged_in_is_bad_usage_and_says_how_to_log_in():
    code, out, err = run("ls")

    assert code == 2
    assert out == ""
    assert "gitfleet login" in err and "GITFLEET_TOKEN" in err


def test_errors_with_json_are_one_json_document_on_stdout():
    code, out, err = run("ls", "--json")

    assert code == 2
    assert err == ""
    assert '"exit_code": 2' in out


def test_a_refusal_prints_each_field_and_its_reason():
    refused = Refused(
        "Invalid input. branch: Not a valid branch name.",
        status=400,
        code="invalid",
        fields={"branch": ["Not a valid branch name."]},
    )

    assert str(refused) == "refused (400 invalid):\n  branch: Not a valid branch name."
    assert str(Refused("No such project.", status=404, code="not_found")) == (
        "refused (404 not_found): No such project."
    )


def test_table_columns_are_as_wide_as_their_widest_cell():
    assert table(["A", "BB"], [["xyz", "1"], ["q", ""]]) == ["A    BB", "xyz  1", "q"]


def test_pull_takes_a_strategy_and_delete_a_force():
    assert parse("pull", "demo").strategy is None
    assert parse("pull", "demo", "--strategy", "rebase").strategy == "rebase"
    assert parse("delete", "demo").force is False
    assert parse("delete", "demo", "--force").force is True
    assert parse("inspect", "demo", "--wait").wait is True


def test_an_unknown_strategy_is_bad_usage():
    code, _, err = run("pull", "demo", "--strategy", "merge")

    assert code == 2
    assert "strategy" in err


def test_clone_passes_on_only_the_checkout_options_given():
    plain = clone_body(parse("clone", "https://example.com/a/b.git", "--node", "n1"))

    assert plain == {"name": "b", "git_url": "https://example.com/a/b.git", "node": "n1",
                     "branch": "main"}  # fmt: skip


def test_clone_takes_ref_lfs_submodules_filter_sparse_and_a_credential_id():
    credential = "6f1c6a8e-5b1e-4a43-9a59-3f0f7d0c2b11"
    args = parse(
        "clone", "https://example.com/a/b.git", "--node", "n1", "--ref", "v1.4", "--no-lfs",
        "--submodules", "recursive", "--filter", "blob:none", "--sparse", "models",
        "--sparse", "data/small", "--credential", credential,
    )  # fmt: skip

    body = clone_body(args)

    assert body == {
        "name": "b", "git_url": "https://example.com/a/b.git", "node": "n1", "ref": "v1.4",
        "lfs": False, "submodules": "recursive", "filter": "blob:none",
        "sparse": ["models", "data/small"], "credential": credential,
    }  # fmt: skip
    assert clone_body(parse("clone", "u", "--node", "n", "--lfs"))["lfs"] is True


def test_ref_and_branch_together_are_bad_usage():
    code, _, err = run("clone", "u", "--node", "n", "--ref", "v1", "--branch", "main")

    assert code == 2
    assert "--ref" in err and "--branch" in err


def test_pull_takes_a_ref():
    assert parse("pull", "demo").ref is None
    assert parse("pull", "demo", "--ref", "v2").ref == "v2"
