from django.apps import AppConfig


class CredentialsConfig(AppConfig):
    name = "credentials"
    verbose_name = "Git credentials"

    def ready(self) -> None:
        from credentials import checks  # noqa: F401  (registers the CREDENTIAL_KEYS check)
