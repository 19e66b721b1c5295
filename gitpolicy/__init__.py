"""The git-input policy: what people may ask Gitfleet to fetch, and where it may land.

One pure-Python package, imported by the server (which refuses bad input with a 400 naming the
field) and shipped with the agent (which checks every job again before git runs, and also the
addresses a host resolves to). Every rule raises `ValueError` with a reason fit to show.
"""

from gitpolicy.addresses import (
    METADATA_HOSTS,
    PRIVATE_REFUSED,
    Category,
    HostPolicy,
    categorize,
    check_address,
    check_host,
    check_resolved_host,
    embedded_ipv4,
)
from gitpolicy.checkout import (
    MAX_SPARSE_PATHS,
    REF_KINDS,
    SUBMODULE_MODES,
    is_commit_id,
    resolve_submodule_url,
    validate_filter,
    validate_lfs_url,
    validate_ref,
    validate_sparse,
    validate_submodule_name,
    validate_submodules,
    validate_worktree_path,
)
from gitpolicy.names import (
    MAX_BRANCH_LENGTH,
    MAX_PROJECT_NAME_LENGTH,
    validate_branch,
    validate_project_name,
    validate_target_name,
)
from gitpolicy.urls import (
    KNOWN_SCHEMES,
    MAX_URL_LENGTH,
    NETWORK_SCHEMES,
    GitUrl,
    UrlPolicy,
    parse_git_url,
    validate_git_url,
)

__all__ = [
    "KNOWN_SCHEMES",
    "MAX_BRANCH_LENGTH",
    "MAX_PROJECT_NAME_LENGTH",
    "MAX_SPARSE_PATHS",
    "MAX_URL_LENGTH",
    "METADATA_HOSTS",
    "NETWORK_SCHEMES",
    "PRIVATE_REFUSED",
    "REF_KINDS",
    "SUBMODULE_MODES",
    "Category",
    "GitUrl",
    "HostPolicy",
    "UrlPolicy",
    "categorize",
    "check_address",
    "check_host",
    "check_resolved_host",
    "embedded_ipv4",
    "is_commit_id",
    "parse_git_url",
    "resolve_submodule_url",
    "validate_branch",
    "validate_filter",
    "validate_git_url",
    "validate_lfs_url",
    "validate_project_name",
    "validate_ref",
    "validate_sparse",
    "validate_submodule_name",
    "validate_submodules",
    "validate_target_name",
    "validate_worktree_path",
]
