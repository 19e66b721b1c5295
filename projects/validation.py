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
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")  # \Z: `$` would pass "x\n"
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
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
# `<transport>::<address>` makes git run a remote helper (ext::, fd::, ...); git's own test.
_REMOTE_HELPER = re.compile(r"^[A-Za-z0-9+.-]*::")
_BRANCH_CHARS = re.compile(r"^[A-Za-z0-9._/+@#=,-]+$")
# What git itself refuses anywhere in a ref name: ASCII controls, space, ~ ^ : ? * [ and \.
_GIT_REFUSED_BRANCH_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# AWS, GCP, Azure and most others answer on 169.254.169.254 (link-local, refused anyway);
# AWS also on fd00:ec2::254 and Alibaba Cloud on 100.100.100.200.
_METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux connects 0.0.0.0 to loopback
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_BAD_SSH_USER = (
    "The ssh user name may use letters, digits, '.', '_' and '-' only, and may not start with "
    "'-' or '.'."
)
_PRIVATE_REFUSED = (
    "Loopback, private-network and other non-public hosts are not allowed on this server."
)


@dataclass(frozen=True)
class UrlPolicy:
    allowed_schemes: frozenset[str]
    allow_private_hosts: bool


def validate_project_name(name: str) -> str:
    if not PROJECT_NAME.fullmatch(name):
        raise ValueError(
            "Use 1-100 characters: letters, digits, '.', '_' and '-', starting with a letter or "
            "digit."
        )
    if name.endswith(".lock"):
        raise ValueError("A project name may not end with '.lock'.")
    return name


def validate_branch(branch: str) -> str:
    """The rules of `git check-ref-format --branch`, then a conservative character set."""
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
    if not _BRANCH_CHARS.fullmatch(branch):
        raise ValueError(
            "A branch name uses ASCII letters, digits and . _ / + @ # = , - only (no shell "
            "metacharacters, quotes or non-ASCII look-alikes)."
        )
    return branch


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address leads to: 6to4, Teredo, NAT64 and IPv4-compatible forms."""
    embedded = []
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.append(address.teredo[1])
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def _check_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: UrlPolicy) -> None:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        else:
            for inner in _embedded_ipv4(address):
                _check_ip(inner, policy)
    if address in _METADATA_ADDRESSES or address.is_link_local:
        raise ValueError("Link-local and cloud-metadata addresses are never allowed.")
    if address.is_loopback:
        if not policy.allow_private_hosts:
            raise ValueError(_PRIVATE_REFUSED)
        return
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or address in _THIS_NETWORK
    ):
        raise ValueError("That address cannot hold a repository.")
    non_public = address.is_private or not address.is_global
    if isinstance(address, ipaddress.IPv6Address):
        non_public = non_public or address.is_site_local
    if non_public and not policy.allow_private_hosts:
        raise ValueError(_PRIVATE_REFUSED)


def _check_host(host: str, policy: UrlPolicy) -> None:
    if not host:
        raise ValueError("The URL has no host.")
    if host.startswith("[") and host.endswith("]"):
        if "%" in host:
            raise ValueError("The host may not carry an IPv6 zone id.")
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise ValueError("The host is not a valid IPv6 address.") from exc
        _check_ip(address, policy)
        return
    if not host.isascii() or not _HOSTNAME.fullmatch(host):
        raise ValueError("The host must be an ASCII DNS name or an IP address.")
    lowered = host.lower().rstrip(".")
    if lowered in _METADATA_HOSTS:
        raise ValueError("Cloud-metadata hosts are never allowed.")
    if lowered == "localhost" or lowered.endswith(".localhost"):
        if not policy.allow_private_hosts:
            raise ValueError(_PRIVATE_REFUSED)
        return
    if _NUMERIC_HOST.fullmatch(lowered):
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
    if not _URL_PATH.fullmatch(path):
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
    if _REMOTE_HELPER.match(url):
        raise ValueError("Remote helpers such as ext:: and fd:: are never allowed.")

    if "://" not in url:
        scp = _SCP_LIKE.fullmatch(url)
        if scp is None:
            raise ValueError(
                "Local paths are not allowed; give a URL such as https://host/repo.git."
            )
        if "ssh" not in policy.allowed_schemes:
            raise ValueError("ssh is not an allowed scheme on this server.")
        if len(scp["host"]) == 1 and scp["path"].startswith(("/", "\\")):
            # `C:/repo` is a drive path to git on Windows, not a host named C.
            raise ValueError(
                "Local paths are not allowed; give a URL such as https://host/repo.git."
            )
        if scp["user"] is not None and not _USER.fullmatch(scp["user"]):
            raise ValueError(_BAD_SSH_USER)
        _check_host(scp["host"], policy)
        _check_path(scp["path"])
        return url

    try:
        parts: SplitResult = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"Not a valid URL: {exc}.") from exc
    scheme = url.partition("://")[0]
    if not _SCHEME.fullmatch(scheme):
        raise ValueError("Not a valid URL; give one such as https://host/repo.git.")
    if scheme != parts.scheme:
        # git picks the transport by the scheme's exact spelling; 'HTTPS' would name a helper.
        raise ValueError("Write the URL scheme in lower case.")
    if scheme not in SUPPORTED_SCHEMES or scheme not in policy.allowed_schemes:
        allowed = ", ".join(sorted(policy.allowed_schemes & SUPPORTED_SCHEMES))
        raise ValueError(f"Scheme {scheme!r} is not allowed; use one of: {allowed}.")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError("A git URL may not have a query string or a fragment.")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if at and (":" in userinfo or scheme != "ssh"):
        raise ValueError(
            "Credentials never travel in URLs; nodes use their own credential helper or SSH keys."
        )
    if at and not _USER.fullmatch(userinfo):
        raise ValueError(_BAD_SSH_USER)
    host, port = _split_host_port(hostport)
    if port is not None and (not _PORT.fullmatch(port) or int(port) > 65535):
        raise ValueError("The port must be a number from 1 to 65535, without leading zeros.")
    _check_host(host, policy)
    _check_path(parts.path)
    return url


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    """`host:port` or `[v6]:port` into the host and the port text (None when there is no ':')."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1:
            raise ValueError("The IPv6 host is missing its ']'.")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("Only a port may follow an IPv6 host.")
        return host, rest[1:] if rest else None
    host, colon, port = hostport.partition(":")
    return host, port if colon else None
