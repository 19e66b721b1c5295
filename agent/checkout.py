"""What a clone or pull checks out: a branch, a tag or a commit, with the job's options.

Both start from a checkout without files (`clone --no-checkout`, or the project's own), write
the sparse-checkout patterns themselves (cone mode, in `.git/info/sparse-checkout`, so no
`config.worktree` appears), move HEAD to the ref, fill the worktree, then fetch submodules
(`recursive` only) and LFS objects (`lfs` only) under the URL policy.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from agent import lfs, submodules
from agent.config import AgentConfig
from agent.errors import JobFailure
from agent.git import Git
from agent.listing import Listing, list_head
from agent.validation import Job
from agent.worktree import read_small_file
from gitpolicy import UrlPolicy, is_commit_id, parse_git_url

SPARSE_FILE = os.path.join(".git", "info", "sparse-checkout")
HEAD_MAX_BYTES = 1024
# A detached HEAD as the files backend writes it: the commit id (SHA-1 or SHA-256) alone.
_DETACHED_HEAD = re.compile(rb"(?:[0-9a-f]{40}|[0-9a-f]{64})\n")


@dataclass(frozen=True)
class Resolved:
    """The ref a job names, as the remote has it."""

    ref: str
    kind: str  # branch, tag or commit


@dataclass(frozen=True)
class Extras:
    """What a checkout did besides git's own work, for the job's result."""

    submodules: int = 0
    submodules_skipped: int = 0
    lfs_files: int = 0
    # HEAD's entries as listed to count the submodules, for the workspace summary.
    head: Listing | None = None


def policy(config: AgentConfig) -> UrlPolicy:
    return UrlPolicy(
        allowed_schemes=frozenset(config.git_allowed_schemes),
        allow_private_hosts=config.git_allow_private_hosts,
    )


def prepare(job: Job, git: Git) -> None:
    """Settings the job needs on every git command: the LFS filter when LFS is on."""
    if job.lfs:
        lfs.enable(git)


def resolve(job: Job, git: Git, *, cwd: str) -> Resolved:
    """Whether `job.ref` is a commit id, a branch or a tag (a branch wins over a tag of the same
    name, as with `git clone --branch`); raises JobFailure `branch_not_found` if neither."""
    if is_commit_id(job.ref):
        return Resolved(job.ref, "commit")
    listing = git.run(
        "ls-remote", "--", job.git_url, f"refs/heads/{job.ref}", f"refs/tags/{job.ref}", cwd=cwd
    ).stdout
    names = {line.split("\t", 1)[1] for line in listing.splitlines() if "\t" in line}
    if f"refs/heads/{job.ref}" in names:
        return Resolved(job.ref, "branch")
    if f"refs/tags/{job.ref}" in names:
        return Resolved(job.ref, "tag")
    raise _neither_branch_nor_tag(job.ref)


def clone(job: Job, config: AgentConfig, git: Git, repo: str, *, cwd: str) -> Resolved:
    """Clone into the empty folder `repo`, files not checked out yet, and say what was cloned.

    A branch or tag is looked up by `git clone --branch` itself, which takes a branch over a
    tag of the same name as `resolve` does, so no `ls-remote` (a connection and a git process
    of its own) goes before it; a ref that is neither fails `branch_not_found` as in `resolve`.
    """
    try:
        git.run(*clone_args(job, config), "--", job.git_url, repo, cwd=cwd)
    except JobFailure as failure:
        if failure.code == "branch_not_found" and not is_commit_id(job.ref):
            raise _neither_branch_nor_tag(job.ref) from None
        raise
    if is_commit_id(job.ref):
        return Resolved(job.ref, "commit")
    return _cloned_ref(job, git, repo)


def _cloned_ref(job: Job, git: Git, repo: str) -> Resolved:
    """Whether `git clone --branch` found `job.ref` as a branch (HEAD on it) or as a tag (HEAD
    detached at it). Read from the `.git/HEAD` the clone has just written, in either form the
    files backend writes; anything else is asked of git."""
    head = read_small_file(repo, ".git/HEAD", HEAD_MAX_BYTES)
    if head == f"ref: refs/heads/{job.ref}\n".encode():
        return Resolved(job.ref, "branch")
    if head is None or not _DETACHED_HEAD.fullmatch(head):
        symbolic = git.run("symbolic-ref", "--quiet", "HEAD", repo=repo, check=False)
        if symbolic.stdout.strip() == f"refs/heads/{job.ref}":
            return Resolved(job.ref, "branch")
    return Resolved(job.ref, "tag")


def _neither_branch_nor_tag(ref: str) -> JobFailure:
    return JobFailure("branch_not_found", f"{ref} is neither a branch nor a tag of the remote")


def clone_args(job: Job, config: AgentConfig) -> list[str]:
    """The `git clone` options: no files yet, one branch or tag unless a commit is wanted."""
    symlinks = "true" if config.git_symlinks else "false"
    args = ["clone", "--progress", "--no-recurse-submodules", "--no-checkout", "--template="]
    args.append(f"--config=core.symlinks={symlinks}")
    if config.checkout_gid is not None:
        args.append("--config=core.sharedRepository=group")
    if not is_commit_id(job.ref):
        args += ["--single-branch", f"--branch={job.ref}"]
    if job.depth is not None:
        args.append(f"--depth={job.depth}")
    if job.filter:
        args.append(f"--filter={job.filter}")
    return args


def finish_clone(job: Job, resolved: Resolved, config: AgentConfig, git: Git, repo: str) -> Extras:
    """Fill a fresh `--no-checkout` clone: sparse patterns, HEAD at the ref, files, extras."""
    if job.sparse:
        _write_sparse(git, repo, job.sparse)
    if resolved.kind == "commit":
        commit = _fetch_commit(job, git, repo)
        git.run("update-ref", "--no-deref", "HEAD", commit, repo=repo)
    git.run("read-tree", "-mu", "HEAD", repo=repo)
    return extras(job, config, git, repo)


def move(job: Job, resolved: Resolved, git: Git, repo: str) -> None:
    """Move an existing, clean checkout to another branch, a tag or a commit (pull with ref)."""
    source = fetch_source(job, git, repo)
    if resolved.kind == "branch":
        tracking = f"refs/remotes/origin/{resolved.ref}"
        git.run(
            "fetch", "--progress", "--no-tags", "--no-recurse-submodules",
            "--no-write-fetch-head", "--", source, f"+refs/heads/{resolved.ref}:{tracking}",
            repo=repo,
        )  # fmt: skip
        git.run("checkout", "--quiet", "-B", resolved.ref, tracking, repo=repo)
        return
    if resolved.kind == "tag":
        git.run(
            "fetch", "--progress", "--no-tags", "--no-recurse-submodules",
            "--no-write-fetch-head", "--", source,
            f"+refs/tags/{resolved.ref}:refs/tags/{resolved.ref}", repo=repo,
        )  # fmt: skip
        commit = git.run(
            "rev-parse", "--verify", f"refs/tags/{resolved.ref}^{{commit}}", repo=repo
        ).stdout.strip()
    else:
        commit = _fetch_commit(job, git, repo)
    git.run("checkout", "--quiet", "--detach", commit, repo=repo)


def extras(job: Job, config: AgentConfig, git: Git, repo: str) -> Extras:
    """Submodules and LFS objects of the checked-out commit."""
    url_policy = policy(config)
    parent = parse_git_url(job.git_url, url_policy)
    fetched = skipped = 0
    head = list_head(git, repo)
    if job.submodules == "recursive":
        fetched = submodules.update(git, repo, parent, url_policy)
    else:
        skipped = len(head.gitlinks)
    replaced = 0
    # The endpoint is looked at only when there is something to fetch from it.
    if job.lfs and lfs.pointers(git, repo):
        endpoint = lfs.endpoint(git, repo, job.git_url, url_policy)
        replaced = lfs.download(git, repo, endpoint, url_policy, config, git.http_auth)
    return Extras(submodules=fetched, submodules_skipped=skipped, lfs_files=replaced, head=head)


def current(git: Git, repo: str) -> Resolved:
    """The ref the checkout is on now: its branch, else a tag pointing at HEAD, else HEAD."""
    branch = git.run("symbolic-ref", "--quiet", "--short", "HEAD", repo=repo, check=False)
    if branch.returncode == 0:
        return Resolved(branch.stdout.strip(), "branch")
    commit = git.run("rev-parse", "--verify", "HEAD^{commit}", repo=repo).stdout.strip()
    return Resolved(commit, "commit")


def fetch_source(job: Job, git: Git, repo: str) -> str:
    """What a pull fetches from: the URL, or `origin` in a partial clone (git applies the
    recorded filter only to the promisor remote, by name), once its URL is the project's."""
    config_path = os.path.join(repo, ".git", "config")
    promisor = git.run(
        "config", "--file", config_path, "--get", "remote.origin.promisor", check=False
    )
    if promisor.stdout.strip() != "true":
        return job.git_url
    origin = git.run("config", "--file", config_path, "--get", "remote.origin.url", check=False)
    if origin.stdout.strip() != job.git_url:
        raise JobFailure("not_a_checkout", "the partial clone's origin is not the project's URL")
    return "origin"


def _fetch_commit(job: Job, git: Git, repo: str) -> str:
    """Make sure the commit `job.ref` is in the repository, fetching it by id if needed."""
    present = git.run("cat-file", "-e", f"{job.ref}^{{commit}}", repo=repo, check=False)
    if present.returncode != 0:
        fetched = git.run(
            "fetch", "--progress", "--no-tags", "--no-recurse-submodules",
            "--no-write-fetch-head", "--", fetch_source(job, git, repo), job.ref,
            repo=repo, check=False,
        )  # fmt: skip
        again = git.run("cat-file", "-e", f"{job.ref}^{{commit}}", repo=repo, check=False)
        if fetched.returncode != 0 or again.returncode != 0:
            raise JobFailure("ref_not_found", f"commit {job.ref} is not in the remote repository")
    return job.ref


def _write_sparse(git: Git, repo: str, folders: tuple[str, ...]) -> None:
    """Cone-mode patterns for `folders`, as `git sparse-checkout set --cone` writes them."""
    lines = ["/*", "!/*/"]
    seen: set[str] = set()
    for folder in sorted(folders):
        parts = folder.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent not in seen:
                seen.add(parent)
                lines += [f"/{parent}/", f"!/{parent}/*/"]
        lines.append(f"/{folder}/")
        seen.add(folder)
    info = os.path.join(repo, ".git", "info")
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(repo, SPARSE_FILE), "x") as out:
        out.write("\n".join(lines) + "\n")
    config_path = os.path.join(repo, ".git", "config")
    git.run("config", "--file", config_path, "core.sparseCheckout", "true")
    git.run("config", "--file", config_path, "core.sparseCheckoutCone", "true")
