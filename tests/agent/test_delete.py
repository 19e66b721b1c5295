"""delete: rename into a trash name, remove without following symlinks; already gone is fine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.errors import JobFailure
from agent.operations import sweep_leftovers
from tests.support.jobs import make_deep_folders, run_job, snapshot


def delete(config, **overrides):
    return run_job(config, kind="delete", git_url="", branch="", **overrides)


def test_delete_removes_the_checkout(config, upstream, git_daemon):
    run_job(config, git_url=git_daemon.url(upstream.name))

    result = delete(config)

    assert not (Path(config.projects_path) / "42_my-project").exists()
    assert os.listdir(config.projects_path) == []
    assert (result.commit, result.size_bytes) == ("", 0)
    assert result.local_path == str(Path(config.projects_path) / "42_my-project")


def test_deleting_what_is_already_gone_succeeds(config):
    result = delete(config, target_path="5_never-cloned")

    assert result.local_path.endswith("/5_never-cloned")


def test_delete_refuses_a_symlink_and_leaves_its_target(config, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.bin").write_bytes(b"\x00keep")
    link = Path(config.projects_path) / "42_my-project"
    link.symlink_to(precious)
    before = snapshot(precious)

    with pytest.raises(JobFailure) as raised:
        delete(config)

    assert raised.value.code == "unsafe_path"
    assert link.is_symlink()
    assert snapshot(precious) == before


def test_delete_removes_symlinks_inside_without_following_them(
    config, upstream, git_daemon, tmp_path
):
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "sub" / "data.bin").write_bytes(b"keep")
    checkout = Path(run_job(config, git_url=git_daemon.url(upstream.name)).local_path)
    (checkout / "to-dir").symlink_to(precious)
    (checkout / "to-file").symlink_to(precious / "sub" / "data.bin")
    (checkout / "nested").mkdir()
    (checkout / "nested" / "up").symlink_to("../../..")
    before = snapshot(precious)

    delete(config, force=True)  # untracked links: only a forced delete removes them

    assert not checkout.exists()
    assert snapshot(precious) == before


def test_delete_of_a_plain_file_in_the_projects_root(config):
    (Path(config.projects_path) / "3_stray").write_text("x")

    delete(config, target_path="3_stray", force=True)

    assert os.listdir(config.projects_path) == []


def test_leftover_temporary_and_trash_folders_are_swept(config, tmp_path):
    root = Path(config.projects_path)
    (root / ".tmp-abc" / "sub").mkdir(parents=True)
    (root / ".trash-def").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("k")
    (root / ".tmp-link").symlink_to(outside)
    (root / "1_project").mkdir()

    swept = sweep_leftovers(str(root))

    assert sorted(swept) == [".tmp-abc", ".tmp-link", ".trash-def"]
    assert os.listdir(root) == ["1_project"]
    assert (outside / "keep").read_text() == "k"


def test_a_checkout_nested_deeper_than_the_recursion_limit_is_deleted(config, upstream, git_daemon):
    checkout = Path(run_job(config, git_url=git_daemon.url(upstream.name)).local_path)
    make_deep_folders(checkout, 1500, "bottom.txt", b"deep")

    delete(config, force=True)

    assert os.listdir(config.projects_path) == []


def test_a_deep_leftover_is_swept(config):
    root = Path(config.projects_path)
    (root / ".trash-deep").mkdir()
    make_deep_folders(root / ".trash-deep", 1500, "bottom.txt", b"deep")

    assert sweep_leftovers(str(root)) == [".trash-deep"]
    assert os.listdir(root) == []


def test_an_unforced_delete_of_what_is_not_a_checkout_is_refused(config):
    stray = Path(config.projects_path) / "3_stray"
    stray.write_bytes(b"not a checkout")

    with pytest.raises(JobFailure) as raised:
        delete(config, target_path="3_stray")

    assert raised.value.code == "local_changes"
    assert stray.read_bytes() == b"not a checkout"
