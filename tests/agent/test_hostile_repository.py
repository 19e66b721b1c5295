"""A hostile repository runs nothing on the node and touches nothing outside the projects root.

The repository carries committed hooks, a submodule with an `ext::` URL, symlinks to /etc and
outside the root; the served repository's own config sets core.hooksPath and core.fsmonitor.
Every hook or command it could trigger would create a marker file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.errors import JobFailure
from agent.git import Git, JobControl
from tests.support.gitservers import Upstream, git
from tests.support.jobs import run_job, snapshot

HOOK_NAMES = (
    "post-checkout", "post-merge", "post-rewrite", "reference-transaction", "pre-auto-gc",
    "post-index-change", "fsmonitor-watchman", "pre-commit", "post-update",
)  # fmt: skip


def marker_script(markers: Path, name: str) -> str:
    return f"#!/bin/sh\ntouch '{markers}/{name}'\nexit 0\n"


def write_hooks(folder: Path, markers: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        hook = folder / name
        hook.write_text(marker_script(markers, name))
        hook.chmod(0o755)


@pytest.fixture
def markers(tmp_path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the projects root that symlinks in the repository point at."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "keep.txt").write_text("must not change\n")
    return path


@pytest.fixture
def hostile(served, markers, outside) -> Upstream:
    upstream = Upstream(served, "hostile")
    work = upstream.work
    write_hooks(work / ".githooks", markers)
    (work / ".gitmodules").write_text(
        f'[submodule "evil"]\n\tpath = evil\n\turl = ext::sh -c touch% {markers}/ext-submodule\n'
    )
    (work / ".gitattributes").write_text("* filter=evil diff=evil\n")
    (work / "README.md").write_text("innocent\n")
    (work / "etc").symlink_to("/etc")
    (work / "passwd").symlink_to("/etc/passwd")
    (work / "outside").symlink_to(outside)
    (work / "up").symlink_to("../../../../../../..")
    git("add", "--all", cwd=work)
    fake_commit = "1" * 40
    git("update-index", "--add", "--cacheinfo", f"160000,{fake_commit},evil", cwd=work)
    git("commit", "--quiet", "-m", "hostile", cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)
    # The served repository's own config and hooks, read by upload-pack on the other side.
    write_hooks(upstream.bare / "hooks", markers)
    write_hooks(upstream.bare / "evil-hooks", markers)
    upstream.set_config("core.hooksPath", str(upstream.bare / "evil-hooks"))
    upstream.set_config("core.fsmonitor", str(upstream.bare / "evil-hooks" / "fsmonitor-watchman"))
    upstream.set_config(
        "uploadpack.packObjectsHook", str(upstream.bare / "evil-hooks" / "post-update")
    )
    upstream.set_config("filter.evil.smudge", f"touch {markers}/smudge")
    return upstream


def urls(hostile: Upstream, git_daemon) -> dict[str, str]:
    return {"git": git_daemon.url(hostile.name), "file": f"file://{hostile.bare}"}


def assert_nothing_ran_and_nothing_outside_changed(markers, outside, before_outside) -> None:
    assert sorted(os.listdir(markers)) == []
    assert snapshot(outside) == before_outside


def symlinks_below(path: Path) -> dict[str, str]:
    """Every symlink below `path` and where it points, found without following any."""
    links = {}
    for folder, folders, files in os.walk(path):
        for name in folders + files:
            entry = Path(folder) / name
            if entry.is_symlink():
                links[str(entry.relative_to(path))] = os.readlink(entry)
    return links


@pytest.mark.parametrize("transport", ["git", "file"])
@pytest.mark.parametrize("symlinks", ["true", "false"])
def test_clone_pull_and_delete_of_a_hostile_repository_run_nothing(
    make_config, hostile, git_daemon, markers, outside, transport, symlinks
):
    config = make_config(AGENT_GIT_SYMLINKS=symlinks)
    url = urls(hostile, git_daemon)[transport]
    before_outside = snapshot(outside)

    cloned = run_job(config, git_url=url)

    checkout = Path(cloned.local_path)
    assert_nothing_ran_and_nothing_outside_changed(markers, outside, before_outside)
    links = {
        "etc": "/etc", "passwd": "/etc/passwd", "outside": str(outside),
        "up": "../../../../../../..",
    }  # fmt: skip
    if symlinks == "true":
        # Checked out as git does, and left as links: the agent dereferences none of them.
        assert symlinks_below(checkout) == links
    else:
        assert symlinks_below(checkout) == {}
        assert (checkout / "etc").read_text() == "/etc"
        assert (checkout / "outside").read_text() == str(outside)
    assert not (checkout / "evil").exists() or os.listdir(checkout / "evil") == []
    assert git("status", "--porcelain", cwd=checkout) == ""
    assert git("config", "core.symlinks", cwd=checkout).strip() == symlinks
    assert cloned.submodules_skipped == 1

    (hostile.work / "outside").unlink()
    (hostile.work / "outside").symlink_to(outside / "keep.txt")
    write_hooks(hostile.work / "hooks", markers)
    new = hostile.commit({"second.txt": "2\n"}, "second")
    for made_by_our_own_push in markers.iterdir():  # the served repository's hooks, on push
        made_by_our_own_push.unlink()
    pulled = run_job(config, kind="pull", git_url=url)

    assert pulled.commit == new
    assert_nothing_ran_and_nothing_outside_changed(markers, outside, before_outside)
    if symlinks == "true":
        assert symlinks_below(checkout) == {**links, "outside": str(outside / "keep.txt")}
    else:
        assert symlinks_below(checkout) == {}

    run_job(config, kind="delete", git_url="", branch="")

    assert not checkout.exists()
    assert_nothing_ran_and_nothing_outside_changed(markers, outside, before_outside)
    assert Path("/etc/passwd").exists()


def test_hooks_planted_in_a_checkout_do_not_run_on_pull(config, upstream, git_daemon, markers):
    checkout = Path(run_job(config, git_url=git_daemon.url(upstream.name)).local_path)
    write_hooks(checkout / ".git" / "hooks", markers)
    new = upstream.commit({"x": "1"})

    assert run_job(config, kind="pull", git_url=git_daemon.url(upstream.name)).commit == new
    assert os.listdir(markers) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("core.fsmonitor", "{hook}"),
        ("core.hooksPath", "{hooks}"),
        ("core.sshCommand", "{hook}"),
        ("include.path", "{markers}/included"),
        ("filter.evil.smudge", "{hook}"),
        ("remote.origin.uploadpack", "{hook}"),
        ("url.ext::sh -c touch% {markers}/insteadof #.insteadOf", "git://"),
    ],
)
def test_a_checkout_whose_config_could_run_code_is_refused_by_pull(
    config, upstream, git_daemon, markers, key, value
):
    checkout = Path(run_job(config, git_url=git_daemon.url(upstream.name)).local_path)
    write_hooks(markers.parent / "hooks", markers)
    hook = markers.parent / "hooks" / "post-merge"
    fill = {"hook": hook, "hooks": markers.parent / "hooks", "markers": markers}
    git("config", key.format(**fill), value.format(**fill), cwd=checkout)
    upstream.commit({"x": "1"})
    head_before = git("rev-parse", "HEAD", cwd=checkout)

    with pytest.raises(JobFailure) as raised:
        run_job(config, kind="pull", git_url=git_daemon.url(upstream.name))

    assert raised.value.code == "unsafe_path"
    assert os.listdir(markers) == []
    assert git("rev-parse", "HEAD", cwd=checkout) == head_before


def test_a_checkout_whose_git_dir_points_elsewhere_is_refused(
    config, upstream, git_daemon, tmp_path
):
    checkout = Path(run_job(config, git_url=git_daemon.url(upstream.name)).local_path)
    (checkout / ".git" / "commondir").write_text(str(tmp_path))

    with pytest.raises(JobFailure) as raised:
        run_job(config, kind="pull", git_url=git_daemon.url(upstream.name))

    assert raised.value.code == "unsafe_path"


def test_ext_transport_is_refused_even_if_the_scheme_check_were_bypassed(config, markers):
    runner = Git(config, control=JobControl(), deadline=time.monotonic() + 30)
    target = Path(config.projects_path) / ".tmp-ext"

    with pytest.raises(JobFailure) as raised:
        runner.run("clone", "--", f"ext::sh -c touch% {markers}/ext", str(target))

    assert "not allowed" in raised.value.message
    assert os.listdir(markers) == []
