"""Whole repositories through the real system: a tag with LFS files from a real LFS server,
sparse folders, a skipped submodule, a pull that moves to a branch; checked on disk, in the
status and in the timeline, with `rebuild_projections --check` clean."""

from __future__ import annotations

import os

import pytest

from tests.support.gitservers import Upstream, git
from tests.support.lfsserver import commit_lfs_files, start_lfs_server

pytestmark = pytest.mark.e2e


def test_tag_with_lfs_sparse_and_a_skipped_submodule_then_a_move_to_a_branch(
    fleet, served, git_daemon, tmp_path
):
    lfs_server = start_lfs_server(tmp_path / "lfs-storage")
    try:
        upstream = Upstream(served, "ml")
        upstream.commit({"docs/readme.md": "docs\n", "models/config.json": "{}\n"}, "first")
        weights = os.urandom(200_000)
        git("update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/lib",
            cwd=upstream.work)  # fmt: skip
        (upstream.work / "vendor" / "lib").mkdir(parents=True)
        (upstream.work / ".gitmodules").write_text(
            '[submodule "lib"]\n\tpath = vendor/lib\n\turl = ../lib.git\n'
        )
        tagged = commit_lfs_files(upstream, lfs_server.endpoint(), {"models/weights.bin": weights})
        git("tag", "v1.0", cwd=upstream.work)
        git("push", "--quiet", "origin", "refs/tags/v1.0", cwd=upstream.work)
        fleet.start_agent()
        fleet.user.wait_for_node_online("node-1")

        project = fleet.user.clone(
            "ml", git_daemon.url(upstream.name), branch="v1.0", sparse=["models"]
        )["project"]
        assert project["lfs"] is True  # the agent reported git-lfs in its heartbeat
        status = fleet.user.wait_until(
            project["id"], lambda s: s["status"] != "pending", what="clone"
        )

        assert status["status"] == "ready", status
        assert (status["ref"], status["ref_kind"], status["commit"]) == ("v1.0", "tag", tagged)
        assert status["submodules_skipped"] == 1
        assert status["workspace"]["lfs"] == {"files": 1, "pointers_left": 0, "paths_left": []}
        assert status["workspace"]["submodules"] == {
            "count": 1, "initialised": 0,
            "modules": [{"path": "vendor/lib", "commit": "1" * 40, "checked_out": None}],
        }  # fmt: skip
        checkout = fleet.storage / "projects" / project["target_path"]
        assert (checkout / "models" / "weights.bin").read_bytes() == weights
        assert not (checkout / "docs").exists()

        newer = commit_lfs_files(
            upstream, lfs_server.endpoint(), {}, plain={"models/config.json": '{"v": 2}\n'}
        )
        moved = fleet.user.http.post(f"/api/v1/projects/{project['id']}/pull", json={"ref": "main"})
        assert moved.status_code == 202, moved.text
        status = fleet.user.wait_until(project["id"], lambda s: s["commit"] == newer, what="pull")
        assert (status["ref"], status["ref_kind"], status["branch"]) == ("main", "branch", "main")
        assert (checkout / "models" / "config.json").read_text() == '{"v": 2}\n'
        assert (checkout / "models" / "weights.bin").read_bytes() == weights

        timeline = [e["type"] for e in fleet.user.events(project["id"])]
        assert [t for t in timeline if t != "JobLeaseRenewed"] == [
            "ProjectCreated", "JobQueued", "JobLeased", "JobSucceeded",
            "JobQueued", "JobLeased", "JobSucceeded",
        ]  # fmt: skip
        fleet.site.manage("rebuild_projections", "--check")
    finally:
        lfs_server.stop()
