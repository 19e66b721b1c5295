"""Names people choose: branches, projects, and the folder a project's checkout lands in."""

from __future__ import annotations

import re

MAX_BRANCH_LENGTH = 255
MAX_PROJECT_NAME_LENGTH = 100
# \Z, not `$`: `$` also matches before a trailing newline, so "x\n" would pass.
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
# `{user_id}_{project_name}`, one folder directly under the node's projects root.
TARGET_NAME = re.compile(r"[0-9]{1,20}_[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")

_BRANCH_CHARS = re.compile(r"[A-Za-z0-9._/+@#=,-]+\Z")
# What git itself refuses anywhere in a ref name: ASCII controls, space, ~ ^ : ? * [ and \.
_GIT_REFUSED_BRANCH_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def validate_project_name(name: object) -> str:
    """Return `name` if it may name a project (and so a folder on a node), else raise
    ValueError saying why."""
    if not isinstance(name, str) or not PROJECT_NAME.match(name):
        raise ValueError(
            "Use 1-100 characters: letters, digits, '.', '_' and '-', starting with a letter or "
            "digit."
        )
    if name.endswith(".lock"):
        raise ValueError("A project name may not end with '.lock'.")
    return name


def validate_target_name(name: object) -> str:
    """Return `name` if it is a `{user_id}_{project_name}` folder name, else raise ValueError.

    A single component matched whole: no separator, no `.` or `..`, nothing option-like.
    """
    if not isinstance(name, str) or not TARGET_NAME.match(name):
        raise ValueError("must look like {user_id}_{project_name} (letters, digits, . _ -)")
    if name.endswith(".lock"):
        raise ValueError("must not end with .lock")
    return name


def validate_branch(branch: object) -> str:
    """The rules of `git check-ref-format --branch`, then a conservative character set and
    short names only; returns `branch` or raises ValueError saying why."""
    if not isinstance(branch, str):
        raise ValueError("A branch name must be a string.")
    if not branch:
        raise ValueError("A branch name may not be empty.")
    if len(branch) > MAX_BRANCH_LENGTH:
        raise ValueError(f"A branch name has at most {MAX_BRANCH_LENGTH} characters.")
    if branch.startswith("-"):
        raise ValueError("A branch name may not start with '-'.")
    if _GIT_REFUSED_BRANCH_CHARS.search(branch):
        raise ValueError(
            "A branch name may not contain spaces, control characters or any of ~ ^ : ? * [ \\."
        )
    if branch == "HEAD" or branch == "@" or branch.startswith("refs/"):
        raise ValueError("Give the branch's short name, not HEAD, @ or a refs/ path.")
    if "@{" in branch or ".." in branch or "//" in branch:
        raise ValueError("A branch name may not contain '..', '//' or '@{'.")
    if branch.startswith("/") or branch.endswith("/") or branch.endswith("."):
        raise ValueError("A branch name may not start or end with '/' or end with '.'.")
    for component in branch.split("/"):
        if component.startswith("."):
            raise ValueError("No part of a branch name may start with '.'.")
        if component.endswith(".lock"):
            raise ValueError("No part of a branch name may end with '.lock'.")
    if not _BRANCH_CHARS.match(branch):
        raise ValueError(
            "A branch name uses ASCII letters, digits and . _ / + @ # = , - only (no shell "
            "metacharacters, quotes or non-ASCII look-alikes)."
        )
    return branch
