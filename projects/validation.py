"""Policy for what users may ask Gitfleet to fetch: git URLs, branch names, project names.

Pure functions that return a cleaned value or raise `ValueError` with a reason fit to show. The
agent applies its own copy of these rules again before it runs git (defence in depth).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

SUPPORTED_SCHEMES = frozenset({"https", "http", "ssh", "git"})
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_URL_LENGTH = 2048
MAX_BRANCH_LENGTH = 255

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
_NUMERIC_HOST = re.compile(r"^[0-9A-Fa-fXx.]+$")
_URL_PATH = re.compile(r"^[A-Za-z0-9._~/+@:-]*$")
_SCP_LIKE = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):(?P<path>.+)$"
)
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BRANCH_CHARS = re.compile(r"^[A-Za-z0-9._/+@#=,-]+$")
_METADATA_HOSTS = frozenset(
    {"metadata", "metadata.google.internal", "metadata.azure.internal", "instance-data"}
)
_METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


@dataclass(frozen=True)
class UrlPolicy:
    allowed_schemes: frozenset[str]
    allow_private_hosts: bool


def validate_project_name(name: str) -> str:
    if not PROJECT_NAME.match(name):
        raise ValueError(
            "Use 1-100 characters: letters, digits, '.', '_' and '-', starting with a letter or "
            "digit."
        )
    if name.endswith(".lock"):
        raise ValueError("A project name may not end with '.lock'.")
    return name


def validate_branch(branch: str) -> str:
    """The rules of `git check-ref-format --branch`, plus a conservative character set."""
    if not branch:
        raise ValueError("A branch name may not be empty.")
    if len(branch) > MAX_BRANCH_LENGTH:
        raise ValueError(f"A branch name has at most {MAX_BRANCH_LENGTH} characters.")
    if branch.startswith("-"):
        raise ValueError("A branch name may not start with '-'.")
    if not _BRANCH_CHARS.match(branch):
        raise ValueError(
            "A branch name uses letters, digits and . _ / + @ # = , - only (no spaces, control "
            "characters, ~ ^ : ? * [ \\ or non-ASCII)."
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
    return branch


def _check_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: UrlPolicy) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA_ADDRESSES or address.is_link_local:
        raise ValueError("Link-local and cloud-metadata addresses are never allowed.")
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        raise ValueError("That address cannot hold a repository.")
    if (address.is_loopback or address.is_private) and not policy.allow_private_hosts:
        raise ValueError("Loopback and private-network hosts are not allowed on this server.")


def _check_host(host: str, policy: UrlPolicy) -> None:
    if not host:
        raise ValueError("The URL has no host.")
    if host.startswith("[") and host.endswith("]"):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise ValueError("The host is not a valid IPv6 address.") from exc
        _check_ip(address, policy)
        return
    if not host.isascii() or not _HOSTNAME.match(host):
        raise ValueError("The host must be an ASCII DNS name or an IP address.")
    lowered = host.lower().rstrip(".")
    if lowered in _METADATA_HOSTS:
        raise ValueError("Cloud-metadata hosts are never allowed.")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        if not policy.allow_private_hosts:
            raise ValueError("Loopback and private-network hosts are not allowed on this server.")
        return
    if _NUMERIC_HOST.match(lowered) and not re.search(r"[g-wyz]", lowered):
        # Resolvers read 2130706433, 0x7f.1 and 127.1 as addresses: only the dotted quad passes.
        try:
            packed = socket.inet_aton(lowered)
        except OSError:
            if lowered.replace(".", "").isdigit():
                raise ValueError("The host is not a valid IPv4 address.") from None
            return  # a hex-looking DNS name such as 'cafe.be'
        address = ipaddress.IPv4Address(packed)
        if str(address) != lowered:
            raise ValueError("Write IPv4 addresses as four decimal numbers (a.b.c.d).")
        _check_ip(address, policy)


def _check_path(path: str) -> None:
    if not path or path in ("/", ":"):
        raise ValueError("The URL has no repository path.")
    if not _URL_PATH.match(path):
        raise ValueError(
            "The repository path may use letters, digits and . _ ~ / + @ : - only (no spaces, "
            "percent-encoding or control characters)."
        )
    if any(part in (".", "..") for part in path.split("/")):
        raise ValueError("The repository path may not contain '.' or '..' segments.")
    if path.lstrip("/").startswith("-"):
        raise ValueError("The repository path may not start with '-'.")


def validate_git_url(url: str, policy: UrlPolicy) -> str:
    """Returns `url` if Gitfleet may clone it, or raises `ValueError` saying why not."""
    if not url:
        raise ValueError("A git URL is required.")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"A git URL has at most {MAX_URL_LENGTH} characters.")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError("A git URL may not contain whitespace or control characters.")
    if not url.isascii():
        raise ValueError("A git URL must be ASCII (no look-alike characters).")
    if url.startswith("-"):
        raise ValueError("A git URL may not start with '-'.")
    if "::" in url.split("/", 1)[0]:
        raise ValueError("Remote helpers such as ext:: and fd:: are never allowed.")

    if "://" not in url:
        scp = _SCP_LIKE.match(url)
        if scp is None:
            raise ValueError(
                "Local paths are not allowed; give a URL such as https://host/repo.git."
            )
        if "ssh" not in policy.allowed_schemes:
            raise ValueError("ssh is not an allowed scheme on this server.")
        _check_host(scp["host"], policy)
        _check_path(scp["path"])
        return url

    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"Not a valid URL: {exc}.") from exc
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES or scheme not in policy.allowed_schemes:
        allowed = ", ".join(sorted(policy.allowed_schemes & SUPPORTED_SCHEMES))
        raise ValueError(f"Scheme {scheme!r} is not allowed; use one of: {allowed}.")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("A git URL may not have a query string or a fragment.")
    if parts.password is not None or (parts.username is not None and scheme != "ssh"):
        raise ValueError(
            "Credentials never travel in URLs; nodes use their own credential helper or SSH keys."
        )
    if parts.username is not None and not _USER.match(parts.username):
        raise ValueError("The ssh user name may use letters, digits, '.', '_' and '-' only.")
    if port == 0:
        raise ValueError("Port 0 is not a valid port.")
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    host = netloc_host.rsplit(":", 1)[0] if not netloc_host.endswith("]") else netloc_host
    _check_host(host, policy)
    _check_path(parts.path)
    return url
