"""Where a job may touch the disk: one validated name directly under the projects root, and how
a tree there is measured and removed without ever following a symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass

from gitpolicy import validate_target_name


class UnsafePath(ValueError):
    """A path would leave the projects root or go through a symlink."""


def is_within(root: str, path: str) -> bool:
    """True if `path` is `root` or below it, comparing whole components of unresolved paths."""
    root, path = os.path.abspath(root), os.path.abspath(path)
    return os.path.commonpath([root, path]) == root


def child_path(root: str, name: str) -> str:
    """The absolute path of `name` directly inside `root`; UnsafePath if it would be elsewhere."""
    root = os.path.abspath(root)
    path = os.path.abspath(os.path.join(root, name))
    if path == root or not is_within(root, path) or os.path.dirname(path) != root:
        raise UnsafePath(f"{name!r} is not a folder directly inside {root}")
    return path


def target_path(projects_root: str, name: str) -> str:
    """Validate a job's `target_path` and return where it lives under the projects root."""
    return child_path(projects_root, validate_target_name(name))


def lstat_or_none(path: str) -> os.stat_result | None:
    """`os.lstat`, or None if nothing is there. Never follows a symlink."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def refuse_symlink(path: str) -> os.stat_result | None:
    """lstat `path`; raise UnsafePath if it is a symlink, return None if it does not exist."""
    info = lstat_or_none(path)
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{path} is a symlink")
    return info


def tree_size(path: str) -> int:
    """Bytes in the files below `path` (apparent sizes), without following any symlink."""
    return _walk_tree(path, remove=False)


def remove_tree(path: str) -> None:
    """Remove `path` and everything below it; a symlink is unlinked, never followed."""
    _walk_tree(path, remove=True)


# Folders are opened relative to the one above, never through a symlink, and never left open.
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CHILD_FOLDER_FLAGS = _FOLDER_FLAGS | os.O_NOFOLLOW


@dataclass
class _Level:
    """One folder on the way down: its name in the folder above, who it is, what is left."""

    name: str
    identity: tuple[int, int]
    subfolders: list[str]


def _identity(info: os.stat_result) -> tuple[int, int]:
    return (info.st_dev, info.st_ino)


def _walk_tree(path: str, *, remove: bool) -> int:
    """Visit the tree at `path`, summing the sizes of what is not a folder; with `remove`,
    delete each entry on the way and each folder once it is empty.

    No recursion and one open folder at a time, going back up through `..`: a repository can
    nest folders thousands deep, past Python's recursion limit (where `shutil.rmtree` and
    `os.walk` fail), the open-file limit and PATH_MAX. Each folder is opened relative to its
    parent with O_NOFOLLOW, so no symlink is followed, and every step up checks that it reached
    the folder it came from, so a folder moved meanwhile stops the walk instead of leading it
    elsewhere.
    """
    path = os.path.abspath(path)
    info = lstat_or_none(path)
    if info is None:
        return 0
    if not stat.S_ISDIR(info.st_mode):
        if remove:
            os.unlink(path)
        return info.st_size
    top = os.path.basename(path)
    parent = os.open(os.path.dirname(path), _FOLDER_FLAGS)
    fd = -1
    try:
        fd = os.open(top, _CHILD_FOLDER_FLAGS, dir_fd=parent)
        if _identity(os.fstat(fd)) != _identity(info):
            raise OSError(errno.ESTALE, f"{path} was replaced while being opened")
        total, subfolders = _take_entries(fd, remove=remove)
        levels = [_Level(top, _identity(info), subfolders)]
        while True:
            level = levels[-1]
            if level.subfolders:
                name = level.subfolders.pop()
                try:
                    inner = os.open(name, _CHILD_FOLDER_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    continue
                os.close(fd)
                fd = inner
                size, subfolders = _take_entries(fd, remove=remove)
                total += size
                levels.append(_Level(name, _identity(os.fstat(fd)), subfolders))
                continue
            levels.pop()
            if not levels:
                break
            up = os.open("..", _FOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = up
            if _identity(os.fstat(fd)) != levels[-1].identity:
                raise OSError(errno.ESTALE, f"a folder below {path} was moved during the walk")
            if remove:
                os.rmdir(level.name, dir_fd=fd)
        os.close(fd)
        fd = -1
        if remove:
            os.rmdir(top, dir_fd=parent)
        return total
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(parent)


def _take_entries(fd: int, *, remove: bool) -> tuple[int, list[str]]:
    """Sizes of the folder's non-folder entries (unlinked with `remove`), and its subfolders."""
    size, subfolders = 0, []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                subfolders.append(entry.name)
                continue
            size += info.st_size
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    return size, subfolders
