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
    "MAX_URL_LENGTH",
    "METADATA_HOSTS",
    "NETWORK_SCHEMES",
    "PRIVATE_REFUSED",
    "Category",
    "GitUrl",
    "HostPolicy",
    "UrlPolicy",
    "categorize",
    "check_address",
    "check_host",
    "check_resolved_host",
    "embedded_ipv4",
    "parse_git_url",
    "validate_branch",
    "validate_git_url",
    "validate_project_name",
    "validate_target_name",
]
