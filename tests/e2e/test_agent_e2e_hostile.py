"""A hostile repository, cloned, pulled and deleted through the real server and a real agent.

The repository carries committed hooks, a `.gitmodules` with an `ext::` submodule and one whose
name climbs out with `../`, a filter driver, symlinks to /etc, to a folder outside the node's
storage and to another project's folder, and folders nested 1,500 deep. The served repository's own config sets
`core.hooksPath`, `core.fsmonitor`, `core.sshCommand`, `protocol.*.allow`, an `ext::` remote and
more, and its own hooks are armed. Everything it could run would create a file in `markers/`.

After each job: no marker exists, nothing outside the project's own folder changed (trees are
snapshotted before and after), and delete removes that folder and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.paths import remove_tree
from tests.support.fleet import ControlPlane, NodeAgents
from tests.support.gitservers import Upstream, git, start_http_git_server
from tests.support.jobs import make_deep_folders, read_deep_file

pytestmark = pytest.mark.e2e

HOOK_NAMES = (
    "post-checkout", "post-merge", "post-rewrite", "reference-transaction", "pre-auto-gc",
    "post-index-change", "fsmonitor-watchman", "pre-commit", "post-update", "pre-receive",
    "update", "push-to-checkout", "sendemail-validate", "p4-pre-submit",
)  # fmt: skip
FAKE_SUBMODULE_COMMIT = "1" * 40
DEEP_LEVELS = 1500


def marker_command(markers: Path, name: str) -> str:
    return f"touch '{markers}/{name}'"


def write_hooks(folder: Path, markers: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in HOOK_NAMES:
        hook = folder / name
        hook.write_text(f"#!/bin/sh\n{marker_command(markers, name)}\nexit 0\n")
        hook.chmod(0o755)


def walk(root: Path, *, skip: Path | None = None) -> list[Path]:
    """Every entry below `root`, symlinks not followed, without recursion (trees may be deep)."""
    found, folders = [], [root]
    while folders:
        for entry in os.scandir(folders.pop()):
            path = Path(entry.path)
            if path == skip:
                continue
            found.append(path)
            if entry.is_dir(follow_symlinks=False):
                folders.append(path)
    return sorted(found)


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, tuple[str, object]]:
    """Every entry below `root` (symlinks not followed) with its content and mode."""
    entries: dict[str, tuple[str, object]] = {}
    for path in walk(root, skip=skip):
        info = path.lstat()
        relative = str(path.relative_to(root))
        if path.is_symlink():
            entries[relative] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[relative] = ("dir", oct(info.st_mode))
        else:
            entries[relative] = (oct(info.st_mode), path.read_bytes())
    return entries


def etc_state() -> dict[str, tuple[int, int]]:
    """What the symlinks point at: /etc's entries (not recursively), by size and mtime."""
    state = {}
    for entry in os.scandir("/etc"):
        info = entry.stat(follow_symlinks=False)
        state[entry.name] = (info.st_size, info.st_mtime_ns)
    return state


class World:
    """Everything outside the hostile project's folder that a job must leave as it was."""

    def __init__(self, storage: Path, outside: Path, hostile_folder: Path) -> None:
        self.storage, self.outside, self.hostile_folder = storage, outside, hostile_folder

    def capture(self) -> tuple[object, ...]:
        return (
            snapshot(self.storage, skip=self.hostile_folder),
            snapshot(self.outside),
            etc_state(),
        )


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    path = tmp_path / "markers"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the node's storage that the repository's symlinks point at."""
    path = tmp_path / "outside"
    (path / "deep").mkdir(parents=True)
    (path / "keep.txt").write_text("must not change\n")
    (path / "deep" / "keep.bin").write_bytes(b"\x00\x01")
    return path


def make_hostile(served: Path, markers: Path, outside: Path, sibling: str) -> Upstream:
    upstream = Upstream(served, "hostile")
    work = upstream.work
    write_hooks(work / ".githooks", markers)
    write_hooks(work / "hooks", markers)
    (work / ".gitmodules").write_text(
        '[submodule "evil"]\n\tpath = evil\n'
        f"\turl = ext::sh -c touch% {markers}/ext-submodule\n"
        '[submodule "../../../../../escape"]\n\tpath = escape\n'
        f"\turl = ext::sh -c touch% {markers}/dotdot-submodule\n"
        f"\tupdate = !sh -c 'touch {markers}/submodule-update'\n"
    )
    (work / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    (work / "README.md").write_text("innocent\n")
    (work / "etc").symlink_to("/etc")
    (work / "passwd").symlink_to("/etc/passwd")
    (work / "outside").symlink_to(outside)
    (work / "sibling").symlink_to(f"../{sibling}")
    (work / "up").symlink_to("../../../../../../..")
    # Deeper than Python's recursion limit: a recursive rmtree or walk of it fails.
    make_deep_folders(work, DEEP_LEVELS, "bottom.txt", b"deep\n")
    git("add", "--all", cwd=work)
    for path in ("evil", "escape"):
        git(
            "update-index",
            "--add",
            "--cacheinfo",
            f"160000,{FAKE_SUBMODULE_COMMIT},{path}",
            cwd=work,
        )
    git("commit", "--quiet", "-m", "hostile", cwd=work)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main", cwd=work)

    # The served repository's own config and hooks: whoever reads them must not obey them.
    bare = upstream.bare
    write_hooks(bare / "hooks", markers)
    write_hooks(bare / "evil-hooks", markers)
    settings = {
        "core.hooksPath": str(bare / "evil-hooks"),
        "core.fsmonitor": str(bare / "evil-hooks" / "fsmonitor-watchman"),
        "core.sshCommand": marker_command(markers, "ssh-command"),
        "core.gitProxy": str(bare / "evil-hooks" / "post-update"),
        "core.askPass": str(bare / "evil-hooks" / "post-update"),
        "protocol.allow": "always",
        "protocol.ext.allow": "always",
        "remote.origin.url": f"ext::sh -c touch% {markers}/ext-remote",
        f"url.ext::sh -c touch% {markers}/insteadof #.insteadOf": "git://",
        "uploadpack.packObjectsHook": str(bare / "evil-hooks" / "post-update"),
        "filter.evil.smudge": marker_command(markers, "smudge"),
        "filter.evil.process": marker_command(markers, "filter-process"),
        "merge.evil.driver": marker_command(markers, "merge-driver"),
        "credential.helper": f"!{marker_command(markers, 'credential-helper')}",
    }
    for key, value in settings.items():
        upstream.set_config(key, value)
    return upstream


def clear_markers_of_our_own_push(markers: Path) -> None:
    # Pushing the next commit runs the served repository's hooks on this machine: the test's
    # own git did that, not the agent.
    for made in markers.iterdir():
        made.unlink()


def assert_nothing_ran(markers: Path) -> None:
    assert sorted(os.listdir(markers)) == []


def assert_plain_checkout(checkout: Path, links: dict[str, str]) -> None:
    """Each link of the repository is a symlink as git makes it (AGENT_GIT_SYMLINKS defaults
    to true), pointing where the repository says and never dereferenced; nothing else is one."""
    found = {str(p.relative_to(checkout)) for p in walk(checkout) if p.is_symlink()}
    assert found == set(links)
    assert {name: os.readlink(checkout / name) for name in links} == links
    assert not (checkout / "evil").exists() or os.listdir(checkout / "evil") == []
    assert not (checkout / ".git" / "hooks").exists()
    assert not (checkout / ".git" / "modules").exists()
    keys = git("config", "--file", checkout / ".git" / "config", "--name-only", "--list").split()
    assert not [k for k in keys if k.startswith(("core.hooks", "core.fsmonitor", "protocol."))]
    assert not [k for k in keys if k.startswith(("filter.", "url.", "submodule.", "credential"))]
    assert git("status", "--porcelain", cwd=checkout) == ""


@pytest.fixture(params=["git", "http"])
def serve(request, git_daemon, served):
    """How the agent reaches the served repositories: git daemon, or git http-backend."""
    if request.param == "git":
        yield "git", git_daemon.url
        return
    server = start_http_git_server(served)
    yield "http", lambda name: server.url("git", name)
    server.stop()


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"))
    yield plane
    plane.close()


@pytest.fixture
def node(plane: ControlPlane, tmp_path: Path, served: Path) -> Iterator[NodeAgents]:
    """A node of its own; at the end, what may be nested 1,500 deep is removed with the agent's
    own walk (pytest's clean-up would recurse past Python's limit)."""
    node = NodeAgents(plane, tmp_path)
    yield node
    node.close()
    remove_tree(str(served.parent / "hostile-work"))
    if node.projects.is_dir():
        for name in os.listdir(node.projects):
            remove_tree(str(node.projects / name))


def wait_for(node: NodeAgents, project_id: str, predicate, what: str) -> dict:
    status = node.user.wait_until(
        project_id, lambda s: not s["active_job"] and s["status"] != "pending", what=what
    )
    assert predicate(status), (status["status"], status["last_error"], status)
    return status


def test_a_hostile_repository_is_cloned_pulled_and_deleted_without_running_anything(
    node, served, serve, make_upstream, markers, outside
):
    transport, url = serve
    benign = make_upstream("other")
    benign.commit({"data.txt": "another project's data\n"})
    node.start_online_agent()
    other = node.clone(f"other-{transport}", url("other.git"))["project"]
    wait_for(node, other["id"], lambda s: s["status"] == "ready", "the other project")
    hostile = make_hostile(served, markers, outside, other["target_path"])
    clear_markers_of_our_own_push(markers)
    projects = node.projects
    target = f"{other['target_path'].split('_')[0]}_hostile-{transport}"
    world = World(node.storage, outside, projects / target)
    before = world.capture()

    project = node.clone(f"hostile-{transport}", url("hostile.git"))["project"]
    assert project["target_path"] == target
    status = wait_for(node, project["id"], lambda s: s["status"] == "ready", "the clone")

    checkout = projects / target
    assert status["commit"] == hostile.head()
    assert_nothing_ran(markers)
    assert world.capture() == before
    links = {
        "etc": "/etc",
        "passwd": "/etc/passwd",
        "outside": str(outside),
        "sibling": f"../{other['target_path']}",
        "up": "../../../../../../..",
    }
    assert_plain_checkout(checkout, links)
    assert read_deep_file(checkout, DEEP_LEVELS, "bottom.txt") == b"deep\n"

    (hostile.work / "outside").unlink()
    (hostile.work / "outside").symlink_to(outside / "keep.txt")
    (hostile.work / "README.md").unlink()
    (hostile.work / "README.md").symlink_to(f"../{other['target_path']}/data.txt")
    write_hooks(hostile.work / ".git-hooks-again", markers)
    new = hostile.commit({"second.txt": "2\n"}, "second")
    clear_markers_of_our_own_push(markers)
    assert node.user.http.post(f"/api/v1/projects/{project['id']}/pull").status_code == 202
    status = wait_for(node, project["id"], lambda s: s["commit"] == new, "the pull")

    assert_nothing_ran(markers)
    assert world.capture() == before
    links |= {
        "outside": str(outside / "keep.txt"),
        "README.md": f"../{other['target_path']}/data.txt",
    }
    assert_plain_checkout(checkout, links)

    assert node.user.http.delete(f"/api/v1/projects/{project['id']}").status_code == 202
    wait_for(node, project["id"], lambda s: s["status"] == "deleted", "the delete")

    assert not checkout.exists()
    assert sorted(os.listdir(projects)) == [other["target_path"]]  # no trash folder either
    timeline = [event["type"] for event in node.user.events(project["id"])]
    assert "JobAttemptFailed" not in timeline and "JobFailed" not in timeline
    assert_nothing_ran(markers)
    assert world.capture() == before
    assert (projects / other["target_path"] / "data.txt").read_text() == (
        "another project's data\n"
    )
    assert Path("/etc/passwd").is_file()
    assert node.user.status(other["id"])["status"] == "ready"
