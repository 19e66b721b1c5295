"""Where a job may touch the disk: one validated folder name directly under the projects root."""

from __future__ import annotations

import os

import pytest

from agent.paths import (
    UnsafePath,
    child_path,
    is_within,
    refuse_symlink,
    remove_tree,
    target_path,
    tree_size,
)
from gitpolicy import validate_target_name
from tests.support.jobs import make_deep_folders, snapshot

# Deeper than Python's recursion limit (1000), and `d/` 2,100 times is past PATH_MAX (4096).
DEEPER_THAN_PATH_MAX = 2100


@pytest.mark.parametrize(
    "name", ["42_my-project", "1_a", "7_A.b_c-d", "123_x" + "y" * 99, "0_proj.git"]
)
def test_good_target_names_pass(name):
    assert validate_target_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "", ".", "..", "my-project", "_x", "42_", "42_-x", "42_.hidden", "42_a/b", "42_a\\b",
        "../42_x", "42_x/..", "/42_x", "42_x\n", "42_x\x00", "42_x y", "42_ü", "x42_a",
        "42_a.lock", "1_" + "a" * 101, None, 42,
    ],
)  # fmt: skip
def test_bad_target_names_are_refused(name):
    with pytest.raises(ValueError):
        validate_target_name(name)


def test_target_path_is_directly_under_the_root(tmp_path):
    root = tmp_path / "projects"

    assert target_path(str(root), "42_p") == str(root / "42_p")


def test_containment_compares_whole_components_not_string_prefixes():
    assert is_within("/data/projects", "/data/projects/42_p")
    assert is_within("/data/projects", "/data/projects")
    assert not is_within("/data/projects", "/data/projects2")
    assert not is_within("/data/projects", "/data/projects2/42_p")
    assert not is_within("/data/projects", "/data/projects/../projects2/42_p")
    assert not is_within("/data/projects", "/data")


@pytest.mark.parametrize("name", ["../projects2", "..", ".", "a/b", "/etc", ""])
def test_child_path_refuses_anything_but_one_level_down(name):
    with pytest.raises(UnsafePath):
        child_path("/data/projects", name)


def test_symlinks_are_refused_and_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = tmp_path / "42_link"
    link.symlink_to(outside)

    with pytest.raises(UnsafePath):
        refuse_symlink(str(link))
    assert refuse_symlink(str(outside)) is not None
    assert refuse_symlink(str(tmp_path / "missing")) is None


def test_dangling_symlinks_are_refused_too(tmp_path):
    link = tmp_path / "42_link"
    link.symlink_to(tmp_path / "nowhere")

    with pytest.raises(UnsafePath):
        refuse_symlink(str(link))


def test_tree_size_counts_files_and_does_not_follow_symlinks(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob").write_bytes(b"x" * 100_000)
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_bytes(b"12345")
    (tree / "sub" / "b").write_bytes(b"123")
    (tree / "link").symlink_to(big)

    assert tree_size(str(tree)) == 8 + os.lstat(tree / "link").st_size


def test_remove_tree_removes_everything_and_follows_no_symlink(tmp_path):
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "keep").write_text("k")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "file").write_text("x")
    (tree / "a" / "to-outside").symlink_to(outside)
    (tree / "a" / "b" / "to-file").symlink_to(outside / "sub" / "keep")
    before = snapshot(outside)

    remove_tree(str(tree))

    assert not tree.exists()
    assert snapshot(outside) == before


def test_remove_tree_of_a_symlink_removes_the_link_only(tmp_path):
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "keep").write_text("k")
    (tmp_path / "link").symlink_to(tmp_path / "target")

    remove_tree(str(tmp_path / "link"))

    assert sorted(os.listdir(tmp_path)) == ["target"]
    assert (tmp_path / "target" / "keep").read_text() == "k"


def test_trees_deeper_than_the_recursion_limit_and_path_max_are_measured_and_removed(tmp_path):
    tree = tmp_path / "deep"
    tree.mkdir()
    (tree / "top.txt").write_bytes(b"12")
    make_deep_folders(tree, DEEPER_THAN_PATH_MAX, "bottom.txt", b"12345")

    assert tree_size(str(tree)) == 2 + 5
    remove_tree(str(tree))

    assert os.listdir(tmp_path) == []
