from django.conf import settings
from django.db import models
from django.utils import timezone


class HashedToken(models.Model):
    """What every bearer token keeps: its key id, the hash of the whole token, its life.

    The token itself is shown once and never stored (see `core.tokens`).
    """

    key_id = models.CharField(max_length=12, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class ApiToken(HashedToken):
    """A person's API token."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for.")
    expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="After this, the token is refused. Empty: until revoked.",
    )

    class Meta(HashedToken.Meta):
        verbose_name = "API token"
        # Adding a token for oneself needs only `add_apitoken`; a token acts as its owner, so
        # minting one for someone else is a separate, explicit grant.
        permissions = [("issue_token_for_others", "Can issue API tokens for other people")]

    def __str__(self) -> str:
        return f"gfu_{self.key_id}… ({self.name})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired
