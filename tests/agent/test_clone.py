"""clone: into a temporary folder inside the projects root, then renamed into place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import JobFailure
from agent.git import JobControl
from tests.support.gitservers import git
from tests.support.jobs import run_job


def leftovers(root: str) -> list[str]:
    return [name for name in os.listdir(root) if name.startswith((".tmp-", ".trash-"))]


def test_clone_puts_the_branch_on_disk_and_reports_it(config, upstream, git_daemon):
    control = JobControl()

    result = run_job(config, control, git_url=git_daemon.url(upstream.name))

    checkout = Path(config.projects_path) / "42_my-project"
    assert result.commit == upstream.head()
    assert result.branch == "main"
    assert result.local_path == str(checkout)
    assert os.path.isabs(result.local_path)
    assert (checkout / "README.md").read_text() == "hello\n"
    assert result.size_bytes > len("hello\n")
    assert result.duration_ms >= 0
    assert leftovers(config.projects_path) == []
    assert control.progress()["phase"] in ("receiving", "resolving", "checkout")


def test_clone_over_http(config, upstream, http_git):
    result = run_job(config, git_url=http_git.url("git", upstream.name))

    assert result.commit == upstream.head()


def test_clone_of_another_branch(config, upstream, git_daemon):
    feature = upstream.commit({"feature.txt": "f\n"}, branch="feature/x")

    result = run_job(config, git_url=git_daemon.url(upstream.name), branch="feature/x")

    assert (result.commit, result.branch) == (feature, "feature/x")
    assert (Path(result.local_path) / "feature.txt").exists()
    remote_branches = git("branch", "-r", cwd=result.local_path).split()
    assert remote_branches == ["origin/feature/x"]


def test_shallow_clone_with_depth(config, upstream, git_daemon):
    upstream.commit({"a": "1"})
    upstream.commit({"b": "2"})

    result = run_job(config, git_url=git_daemon.url(upstream.name), depth=1)

    assert result.commit == upstream.head()
    assert git("rev-list", "--count", "HEAD", cwd=result.local_path).strip() == "1"
    assert (Path(result.local_path) / ".git" / "shallow").exists()


def test_cloning_again_from_the_same_url_is_a_no_op_success(config, upstream, git_daemon):
    url = git_daemon.url(upstream.name)
    first = run_job(config, git_url=url)
    (Path(first.local_path) / "local-output.txt").write_text("kept")

    second = run_job(config, git_url=url)

    assert second.commit == first.commit
    assert second.local_path == first.local_path
    assert (Path(first.local_path) / "local-output.txt").read_text() == "kept"
    assert leftovers(config.projects_path) == []


def test_cloning_onto_a_clone_of_another_url_fails_target_exists(config, make_upstream, git_daemon):
    one, other = make_upstream("one"), make_upstream("other")
    run_job(config, git_url=git_daemon.url(one.name))

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(other.name))

    assert raised.value.code == "target_exists"
    assert git(
        "config", "remote.origin.url", cwd=Path(config.projects_path) / "42_my-project"
    ).strip() == git_daemon.url(one.name)


@pytest.mark.parametrize("kind", ["folder", "file", "empty folder"])
def test_cloning_onto_other_content_fails_target_exists(config, upstream, git_daemon, kind):
    target = Path(config.projects_path) / "42_my-project"
    if kind == "file":
        target.write_text("not a checkout")
    else:
        target.mkdir()
        if kind == "folder":
            (target / "data.csv").write_text("1,2\n")

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name))

    assert raised.value.code == "target_exists"
    assert leftovers(config.projects_path) == []


def test_cloning_onto_a_symlink_fails_unsafe_path(config, upstream, git_daemon, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (Path(config.projects_path) / "42_my-project").symlink_to(elsewhere)

    with pytest.raises(JobFailure) as raised:
        run_job(config, git_url=git_daemon.url(upstream.name))

    assert raised.value.code == "unsafe_path"
    assert list(elsewhere.iterdir()) == []


def test_the_projects_root_is_compared_by_components(make_config, upstream, git_daemon, tmp_path):
    config = make_config(AGENT_PROJECTS_PATH=str(tmp_path / "projects"))
    (tmp_path / "projects2").mkdir()

    result = run_job(config, git_url=git_daemon.url(upstream.name), target_path="7_p")

    assert result.local_path == str(tmp_path / "projects" / "7_p")
    assert list((tmp_path / "projects2").iterdir()) == []
