"""Settings for the test suite: the real settings, with what tests need switched on.

Tests serve git from 127.0.0.1 over git:// and http://, so those are allowed here.
"""

import os

# A developer's `make run` settings (data/local.env) never leak into the tests or their servers.
os.environ["GITFLEET_ENV_FILE"] = ""
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("GIT_ALLOW_PRIVATE_HOSTS", "true")
os.environ.setdefault("GIT_ALLOWED_SCHEMES", "https,ssh,git,http")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")
os.environ.setdefault("API_USER_RATE", "100000/minute")
os.environ.setdefault("DB_POOL_MAX_SIZE", "40")  # concurrency tests run 20+ threads
# CI runs the SQLite and PostgreSQL passes side by side on two cores: under that load the 20-agent
# concurrency test waited more than the default 10 s for a pooled connection once.
os.environ.setdefault("DB_POOL_TIMEOUT", "30")
# Under that load a test server's event loop can run late for a moment; shedding lease calls
# then would send the tests' agents away for a wait. The test of shedding turns it on.
os.environ.setdefault("LONG_POLL_SHED_LAG_SECONDS", "0")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LONG_POLL_RECHECK_SECONDS = 0.5
# Only for the test-only `flush` command that empties the append-only log between tests.
INSTALLED_APPS = [*INSTALLED_APPS, "tests"]  # noqa: F405
