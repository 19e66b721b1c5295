"""What a credential may hold. Every refusal is `Invalid` naming the field, and never quotes
the secret back."""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from django.views.decorators.debug import sensitive_variables

from core.exceptions import Invalid
from credentials.models import CredentialKind

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
USERNAME_PATTERN = re.compile(r"[A-Za-z0-9._@+-]{1,100}\Z")
TOKEN_MAX_LENGTH = 1024
# Printable ASCII without the space: what every forge's tokens are made of.
_TOKEN_CHARACTERS = re.compile(r"[\x21-\x7e]+\Z")
# A token's last characters are shown only when they are a small part of it.
_TOKEN_HINT_MIN_LENGTH = 16
SSH_KEY_MAX_BYTES = 16 * 1024
KNOWN_HOSTS_MAX_LINES = 100
KNOWN_HOSTS_MAX_BYTES = 64 * 1024 - 1024

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_SSH_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
_HOST_PATTERN = re.compile(r"[A-Za-z0-9.*?!:\[\]_-]+\Z")
_HASHED_HOST = re.compile(r"\|1\|[A-Za-z0-9+/]+=*\|[A-Za-z0-9+/]+=*\Z")
_PUBLIC_KEY_STARTS = (
    "-----BEGIN PUBLIC KEY-----",
    "-----BEGIN RSA PUBLIC KEY-----",
    "---- BEGIN SSH2 PUBLIC KEY ----",
    *(f"{kind} " for kind in _SSH_KEY_TYPES),
)


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise Invalid(
            "Use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit.",
            field="name",
        )
    return name


def validate_username(username: str) -> str:
    if username and not USERNAME_PATTERN.match(username):
        raise Invalid(
            "Use up to 100 letters, digits, '.', '_', '@', '+' or '-' (no spaces or ':').",
            field="username",
        )
    return username


def validate_host(host: str) -> str:
    """`host` or `host:port` (IPv6 in brackets), lower-cased; no scheme, path or user."""
    if "://" in host:
        raise Invalid("Give the host alone, without a scheme such as https://.", field="host")
    if "/" in host or "?" in host or "#" in host:
        raise Invalid("Give the host alone, without a path.", field="host")
    if "@" in host:
        raise Invalid("Give the host alone, without a user name (use `username`).", field="host")
    name, port = _split_port(host)
    if port is not None and not (_PORT.match(port) and 1 <= int(port) <= 65535):
        raise Invalid("The port must be a number from 1 to 65535.", field="host")
    name = _valid_host_name(name)
    return name if port is None else f"{name}:{int(port)}"


def _split_port(host: str) -> tuple[str, str | None]:
    if host.startswith("["):
        closing = host.find("]")
        if closing == -1:
            raise Invalid("An IPv6 address in brackets lacks its closing ']'.", field="host")
        rest = host[closing + 1 :]
        if rest and not rest.startswith(":"):
            raise Invalid("Only ':port' may follow a bracketed IPv6 address.", field="host")
        return host[: closing + 1], rest[1:] if rest else None
    if host.count(":") > 1:
        raise Invalid("Write an IPv6 address in brackets, as in [2001:db8::1].", field="host")
    name, colon, port = host.partition(":")
    return name, port if colon else None


def _valid_host_name(name: str) -> str:
    if name.startswith("["):
        try:
            address = ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise Invalid("Not an IPv6 address inside the brackets.", field="host") from None
        return f"[{address.compressed}]"
    lowered = name.lower()
    try:
        return str(ipaddress.IPv4Address(lowered))
    except ValueError:
        pass
    labels = lowered.split(".")
    if (
        not lowered
        or len(lowered) > 253
        or not all(_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise Invalid(
            "Not a host name: use letters, digits and '-' in dot-separated labels "
            "(or an IP address), as in git.example.com or git.example.com:8443.",
            field="host",
        )
    return lowered


def host_matches(credential_host: str, host: str, port: int | None = None) -> bool:
    """Whether a credential for `credential_host` may be sent to `host` (and `port`, when the
    URL names one). Exact: a port in the credential must be the URL's port, and a credential
    without one fits only URLs without one. `host` may be an IPv6 address without brackets, as
    `urllib.parse` gives it."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    try:
        wanted = validate_host(host if port is None else f"{host}:{port}")
    except Invalid:
        return False
    return wanted == credential_host


@dataclass(frozen=True)
class CheckedSecret:
    """A secret as it will be stored, with what may be shown of it."""

    value: str
    fingerprint: str


@sensitive_variables("secret")
def check_secret(kind: str, secret: str) -> CheckedSecret:
    """The secret in the form it is stored in, or `Invalid` naming `secret` with the reason."""
    if kind == CredentialKind.HTTPS_TOKEN:
        return _check_token(secret)
    return _check_ssh_key(secret)


@sensitive_variables("secret")
def _check_token(secret: str) -> CheckedSecret:
    if not secret:
        raise Invalid("A token cannot be empty.", field="secret")
    if len(secret) > TOKEN_MAX_LENGTH:
        raise Invalid(f"A token is at most {TOKEN_MAX_LENGTH} characters long.", field="secret")
    if not _TOKEN_CHARACTERS.match(secret):
        raise Invalid(
            "A token is printable ASCII without spaces, line breaks or control characters.",
            field="secret",
        )
    hint = f"…{secret[-4:]}" if len(secret) >= _TOKEN_HINT_MIN_LENGTH else "…"
    return CheckedSecret(value=secret, fingerprint=hint)


@sensitive_variables("secret", "data", "key")
def _check_ssh_key(secret: str) -> CheckedSecret:
    if len(secret.encode()) > SSH_KEY_MAX_BYTES:
        raise Invalid(f"An SSH key is at most {SSH_KEY_MAX_BYTES} bytes.", field="secret")
    text = secret.strip().replace("\r\n", "\n")
    if text.startswith(_PUBLIC_KEY_STARTS):
        raise Invalid(
            "This is a public key; give the private key (the file without .pub).", field="secret"
        )
    data = text.encode()
    try:
        if text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        # cryptography's way of saying that a password was needed.
        raise Invalid(
            "The key is protected by a passphrase; give it without one "
            "(ssh-keygen -p -N '' -f KEYFILE removes it from a copy).",
            field="secret",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise Invalid(
            "Not an SSH private key in OpenSSH or PEM format "
            "(-----BEGIN OPENSSH PRIVATE KEY----- or -----BEGIN ... PRIVATE KEY-----).",
            field="secret",
        ) from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise Invalid("Use an Ed25519, RSA or ECDSA key; ssh takes no other.", field="secret")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise Invalid("An RSA key needs at least 2048 bits.", field="secret")
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in _SSH_CURVES:
        raise Invalid(
            f"An ECDSA key for ssh is on NIST P-256, P-384 or P-521, not {key.curve.name}.",
            field="secret",
        )
    # Stored in OpenSSH's own format, so ssh reads it the same whatever format it came in.
    stored = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return CheckedSecret(value=stored, fingerprint=ssh_fingerprint(key.public_key()))


def ssh_fingerprint(
    public_key: ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
) -> str:
    """`SHA256:…` of the public key blob, as `ssh-keygen -l` prints it."""
    line = public_key.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(line.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def validate_known_hosts(kind: str, known_hosts: str) -> str:
    """`known_hosts` lines (`hosts keytype base64 [comment]`), for SSH keys only; comments and
    blank lines are kept out."""
    if not known_hosts.strip():
        return ""
    if kind != CredentialKind.SSH_KEY:
        raise Invalid("known_hosts applies to ssh-key credentials only.", field="known_hosts")
    if len(known_hosts.encode()) > KNOWN_HOSTS_MAX_BYTES:
        raise Invalid(f"At most {KNOWN_HOSTS_MAX_BYTES} bytes.", field="known_hosts")
    kept = []
    for number, raw in enumerate(known_hosts.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        _check_known_hosts_line(number, line)
        kept.append(line)
    if len(kept) > KNOWN_HOSTS_MAX_LINES:
        raise Invalid(f"At most {KNOWN_HOSTS_MAX_LINES} host key lines.", field="known_hosts")
    return "\n".join(kept) + "\n" if kept else ""


def _check_known_hosts_line(number: int, line: str) -> None:
    def refuse(reason: str) -> Invalid:
        return Invalid(f"Line {number}: {reason}", field="known_hosts")

    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in line.replace("\t", " ")):
        raise refuse("control characters are not allowed.")
    parts = line.split()
    if parts[0] in ("@cert-authority", "@revoked"):
        parts = parts[1:]
    if len(parts) < 3:
        raise refuse("expected 'HOSTS KEYTYPE BASE64KEY', as ssh-keyscan prints it.")
    hosts, key_type, body = parts[0], parts[1], parts[2]
    for pattern in hosts.split(","):
        if not (_HASHED_HOST.match(pattern) or _HOST_PATTERN.match(pattern)):
            raise refuse("the host pattern is not a host name, address or hashed host.")
    if key_type not in _SSH_KEY_TYPES:
        raise refuse(f"unknown key type; use one of {', '.join(sorted(_SSH_KEY_TYPES))}.")
    try:
        blob = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise refuse("the key is not valid base64.") from None
    if _blob_key_type(blob) != key_type:
        raise refuse("the key's contents do not match its key type.")


def _blob_key_type(blob: bytes) -> str | None:
    """The key type an SSH public key blob starts with (a length-prefixed string)."""
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > len(blob) - 4:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None
