"""Where a job may touch the disk: one validated name directly under the projects root."""

from __future__ import annotations

import os
import re
import stat

TARGET_NAME_PATTERN = re.compile(r"[0-9]+_[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class UnsafePath(ValueError):
    """A path would leave the projects root or go through a symlink."""


def validate_target_name(name: object) -> str:
    """Return `name` if it is a `{user_id}_{project_name}` folder name, else raise ValueError."""
    if not isinstance(name, str):
        raise ValueError("must be a string")
    # fullmatch, not `$`: `$` also matches before a trailing newline.
    if not TARGET_NAME_PATTERN.fullmatch(name):
        raise ValueError("must look like {user_id}_{project_name} (letters, digits, . _ -)")
    if name in (".", "..") or "/" in name or os.sep in name:
        raise ValueError("must be a single folder name")
    if name.endswith(".lock"):
        raise ValueError("must not end with .lock")
    return name


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
    total = 0
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
            else:
                total += info.st_size
    return total
