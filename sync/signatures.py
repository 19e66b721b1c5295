"""Checking the signatures forges put on push deliveries, and signing the notifications we send.

Every comparison is constant-time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

GITHUB, GITLAB, GITEA = "github", "gitlab", "gitea"


@dataclass(frozen=True)
class Signed:
    """A delivery whose signature held: which forge sent it, which event, and its id."""

    forge: str
    event: str
    delivery_id: str


def _hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> Signed | None:
    """The forge, event and delivery id of a delivery signed with `secret`, or None when it is
    unsigned or wrongly signed. GitHub signs the body (`X-Hub-Signature-256: sha256=<hex>`),
    Gitea and Forgejo too (`X-Gitea-Signature: <hex>`); GitLab sends the secret itself
    (`X-Gitlab-Token`)."""
    github = headers.get("X-Hub-Signature-256")
    if github is not None:
        expected = "sha256=" + _hex_hmac(secret, body)
        if not hmac.compare_digest(github.encode(), expected.encode()):
            return None
        return Signed(
            GITHUB, headers.get("X-GitHub-Event", ""), headers.get("X-GitHub-Delivery", "")
        )
    gitea = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature")
    if gitea is not None:
        if not hmac.compare_digest(gitea.encode(), _hex_hmac(secret, body).encode()):
            return None
        event = headers.get("X-Gitea-Event") or headers.get("X-Forgejo-Event", "")
        delivery = headers.get("X-Gitea-Delivery") or headers.get("X-Forgejo-Delivery", "")
        return Signed(GITEA, event, delivery)
    gitlab = headers.get("X-Gitlab-Token")
    if gitlab is not None:
        if not hmac.compare_digest(gitlab.encode(), secret.encode()):
            return None
        delivery = headers.get("X-Gitlab-Event-UUID") or headers.get("X-Gitlab-Webhook-UUID", "")
        return Signed(GITLAB, headers.get("X-Gitlab-Event", ""), delivery)
    return None


def is_push(signed: Signed) -> bool:
    return signed.event in ("push", "Push Hook")


def sign_notification(secret: str, timestamp: int, body: bytes) -> str:
    """The `Gitfleet-Signature` of a notification: HMAC-SHA256 over `"<timestamp>.<body>"`."""
    return "sha256=" + _hex_hmac(secret, str(timestamp).encode() + b"." + body)
