"""`manage.py check` refuses malformed `CREDENTIAL_KEYS` at start, not at the first use."""

from __future__ import annotations

from django.core import checks

from credentials.keys import configured_keys, key_problems


@checks.register(checks.Tags.security)
def credential_keys_are_fernet_keys(app_configs, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem, id="credentials.E001") for problem in key_problems(configured_keys())
    ]
