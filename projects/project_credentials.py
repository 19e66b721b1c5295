"""Which credential a project's jobs use: checked when a person names one, changed by its owner.

A person may name only a credential of their own that is not revoked (anyone else's answers 404,
as another person's project does), and only for a URL on the credential's exact host[:port].
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

import gitpolicy
from core.exceptions import Invalid, NotFound
from credentials.models import Credential, CredentialKind
from credentials.validation import host_matches
from projects import domain
from projects.eventstore import execute
from projects.models import Project

_ANY_NETWORK_URL = gitpolicy.UrlPolicy(
    allowed_schemes=gitpolicy.NETWORK_SCHEMES, allow_private_hosts=True
)


# What each kind of credential authenticates: a token over HTTP(S), a key over SSH.
_SCHEMES_OF_KIND = {
    CredentialKind.HTTPS_TOKEN: frozenset({"https", "http"}),
    CredentialKind.SSH_KEY: frozenset({"ssh"}),
}


def usable_credential(
    *, owner: AbstractBaseUser, credential_id: object, git_url: str
) -> Credential:
    """The owner's active credential `credential_id`, checked against `git_url`'s host.

    Raises `NotFound` (field `credential`) for anyone else's, a revoked or an unknown one, and
    `Invalid` naming `credential` when its host is not the URL's host[:port] or its kind does
    not fit the URL's scheme (a token for ssh, a key for https).
    """
    credential = Credential.objects.filter(
        pk=credential_id, owner=owner, revoked_at__isnull=True
    ).first()
    if credential is None:
        raise NotFound("No such credential.", field="credential")
    # The URL passed the settings' policy already; only its scheme, host and port matter here.
    parsed = gitpolicy.parse_git_url(git_url, _ANY_NETWORK_URL)
    schemes = _SCHEMES_OF_KIND[credential.kind]
    if parsed.scheme not in schemes:
        raise Invalid(
            f"The credential {credential.name!r} ({credential.kind}) is for "
            f"{' or '.join(sorted(schemes))} URLs; this URL is {parsed.scheme}.",
            field="credential",
        )
    if not host_matches(credential.host, parsed.host, parsed.port):
        where = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
        raise Invalid(
            f"The credential {credential.name!r} is for {credential.host}, not for {where}.",
            field="credential",
        )
    return credential


def change_credential(
    *,
    project: Project,
    credential_id: object | None,
    actor: AbstractBaseUser,
    request_id: str | None = None,
) -> Project:
    """Gives the project another credential of its owner's, or none; the next jobs use it.

    Recorded as `ProjectCredentialChanged` with the credential's id alone.
    """
    new_id = None
    if credential_id is not None:
        credential = usable_credential(
            owner=project.owner, credential_id=credential_id, git_url=project.git_url
        )
        new_id = str(credential.pk)
    meta = {"user_id": actor.pk, **({"request_id": request_id} if request_id else {})}
    execute(project.pk, domain.ChangeCredential(credential_id=new_id), meta=meta)
    return Project.objects.get(pk=project.pk)
