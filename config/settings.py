"""Gitfleet control-plane settings: everything an operator may change comes from the environment.

Every variable read here is listed, with its default, in the README's configuration table.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# `make run` keeps the settings of a local installation (a generated SECRET_KEY, DEBUG) in this
# file, so every `manage.py` command works in any shell, any time later. Only a file that exists
# is read, and variables already set in the environment win over it; deployments have none
# (`make run` alone writes it), and GITFLEET_ENV_FILE= (empty) turns it off everywhere.
_default_env_file = Path(os.environ.get("GITFLEET_DATA_DIR", BASE_DIR / "data")) / "local.env"
ENV_FILE = os.environ.get("GITFLEET_ENV_FILE", str(_default_env_file))
if ENV_FILE and Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE)

DEBUG = env.bool("DEBUG", default=False)
DATA_DIR = Path(env.str("GITFLEET_DATA_DIR", default=str(BASE_DIR / "data")))
# A value `make run` makes anew for each run and finds again in `/healthz`, so that its health
# check knows it reached the server it started, not another program on the same port.
RUN_ID = env.str("GITFLEET_RUN_ID", default="")

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-never-use-in-production")
else:
    SECRET_KEY = env.str("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "accounts",
    "nodes",
    "projects",
    "credentials",
    "sync",
]

MIDDLEWARE = [
    # First, so its one line per request covers every answer, redirects and refusals included.
    "core.middleware.RequestLogMiddleware",
    # Before SecurityMiddleware, whose HTTPS redirect reads the host too.
    "core.middleware.AllowedHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.RequestIdMiddleware",
    "core.middleware.JsonBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: answers a locked-out login before the view runs.
    "axes.middleware.AxesMiddleware",
]

# Agent calls carry no cookie, session or CSRF token: `config.handlers` serves `/api/v1/agent/`
# with this shorter stack, all of it async, so an agent call never hops to a thread for middleware.
AGENT_API_MIDDLEWARE = [
    "core.middleware.RequestLogMiddleware",
    "core.middleware.AllowedHostMiddleware",
    "core.middleware.InlineSecurityMiddleware",
    "core.middleware.RequestIdMiddleware",
    "core.middleware.JsonBodyLimitMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
# SQLite is the embedded default: WAL so readers never block the writer, IMMEDIATE transactions
# so every write transaction takes the write lock up front instead of failing half-way.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'gitfleet.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str(
        "SQLITE_TEST_NAME", default=str(DATA_DIR / "test.sqlite3")
    )
    # The embedded database needs its folder; a fresh checkout has none yet.
    for sqlite_file in (DATABASES["default"]["NAME"], DATABASES["default"]["TEST"]["NAME"]):
        if sqlite_file and sqlite_file != ":memory:":
            Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
else:
    # Under ASGI a request's connection lives in a short-lived thread, so persistent connections
    # would leak; a per-process pool hands connections out and takes them back instead.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A pooled connection is checked before it is handed out, so one that a database restart
    # closed is replaced instead of failing the request that takes it. The backend
    # `core.postgresql` (Django's, with its own check) costs a round trip only when the server
    # has said something; Django's CONN_HEALTH_CHECKS would send an empty query every time.
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "core.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=10),
        # Seconds a request waits for a connection; past it, 503 (`core.errors`).
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }
# Seconds a client is told to wait (`Retry-After`) when the database cannot be reached.
DATABASE_RETRY_AFTER_SECONDS = env.int("DATABASE_RETRY_AFTER_SECONDS", default=5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Password logins (the admin's and the browsable API's) -----------------------------------
# django-axes counts failed logins in the database (so across server processes) and refuses
# further attempts, right or wrong, for an account or an address that failed too often.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("LOGIN_LOCKOUT_SECONDS", default=900))
# Either is enough to lock: one account tried from many addresses, or one address trying many.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Successful logins are already in the request log; failures are what axes must keep. The
# address is REMOTE_ADDR, which uvicorn takes from X-Forwarded-For only from FORWARDED_ALLOW_IPS.
AXES_DISABLE_ACCESS_LOG = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(DATA_DIR / "static")))

# --- HTTP hardening -------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
X_FRAME_OPTIONS = "DENY"
# Bodies above this are answered 413 in JSON before they are read (`core.asgi_limits`).
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Django spools a body to a temporary file past this size; every body it sees stays in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = max(2_621_440, MAX_REQUEST_BODY_BYTES)
MAX_JSON_DEPTH = env.int("MAX_JSON_DEPTH", default=10)

# --- REST framework and the schema ----------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.UserTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env.str("API_USER_RATE", default="600/minute")},
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Gitfleet API",
    "DESCRIPTION": (
        "Git checkouts of users' projects on a fleet of worker nodes. Users ask for clone, pull "
        "and delete; node agents lease that work over a long poll and report back. Every fact "
        "about a project is an event in an append-only log."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CredentialKindEnum": "credentials.models.CredentialKind",
        "JobKindEnum": "projects.models.JOB_KIND_CHOICES",
        "JobStateEnum": "projects.models.JOB_STATE_CHOICES",
        "ProjectStatusEnum": "projects.models.PROJECT_STATUS_CHOICES",
        "SubscriptionStateEnum": "sync.models.SubscriptionState",
    },
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Gitfleet -------------------------------------------------------------------------------
GIT_ALLOWED_SCHEMES = env.list("GIT_ALLOWED_SCHEMES", default=["https", "ssh"])
GIT_ALLOW_PRIVATE_HOSTS = env.bool("GIT_ALLOW_PRIVATE_HOSTS", default=False)
LEASE_SECONDS = env.int("LEASE_SECONDS", default=90)
LEASE_MAX_ATTEMPTS = env.int("LEASE_MAX_ATTEMPTS", default=3)
# Leases given back by a restarting or draining agent are not failed attempts; this bounds a job
# that keeps stopping its agent.
LEASE_MAX_RELEASES = env.int("LEASE_MAX_RELEASES", default=10)
# One person's jobs running at once on one node: with the agent's default concurrency of 2, one
# person never holds all of a node's slots, however many clones of a dead server they ask for.
MAX_RUNNING_JOBS_PER_USER_PER_NODE = env.int("MAX_RUNNING_JOBS_PER_USER_PER_NODE", default=1)
for _bound in ("LEASE_MAX_RELEASES", "MAX_RUNNING_JOBS_PER_USER_PER_NODE"):
    if globals()[_bound] < 1:
        raise ImproperlyConfigured(f"{_bound} must be at least 1.")
LEASE_RENEW_SECONDS = env.int("LEASE_RENEW_SECONDS", default=20)
RETRY_BACKOFF_SECONDS = env.int("RETRY_BACKOFF_SECONDS", default=30)
LONG_POLL_DEFAULT_WAIT = env.int("LONG_POLL_DEFAULT_WAIT", default=25)
LONG_POLL_MAX_WAIT = env.int("LONG_POLL_MAX_WAIT", default=50)
LONG_POLL_RECHECK_SECONDS = env.float("LONG_POLL_RECHECK_SECONDS", default=5.0)
# A server process whose event loop runs later than this sheds new lease calls (503 with
# Retry-After) instead of taking on more than it can answer; 0 never sheds.
LONG_POLL_SHED_LAG_SECONDS = env.float("LONG_POLL_SHED_LAG_SECONDS", default=0.5)
NODE_ONLINE_WINDOW = env.int("NODE_ONLINE_WINDOW", default=90)
# A third of the online window: an idle agent's lease calls (every 25 s) write every other one.
NODE_PRESENCE_WRITE_SECONDS = env.int("NODE_PRESENCE_WRITE_SECONDS", default=30)
QUEUED_JOB_TTL = env.int("QUEUED_JOB_TTL", default=86400)
GIT_JOB_TIMEOUT = env.int("GIT_JOB_TIMEOUT", default=3600)
SWEEP_SECONDS = env.int("SWEEP_SECONDS", default=15)
# Full garbage collections of a server process run on this timer, not by Python's own rule
# (`core.collector`); 0 keeps Python's rule.
GC_FULL_COLLECTION_SECONDS = env.float("GC_FULL_COLLECTION_SECONDS", default=300.0)
# Push hooks in and notifications out (see the README's "Keeping checkouts in sync").
HOOK_DELIVERIES_PER_MINUTE = env.int("HOOK_DELIVERIES_PER_MINUTE", default=60)
NOTIFY_TIMEOUT_SECONDS = env.float("NOTIFY_TIMEOUT_SECONDS", default=10.0)
NOTIFY_BACKOFF_SECONDS = env.int("NOTIFY_BACKOFF_SECONDS", default=10)
NOTIFY_BACKOFF_MAX_SECONDS = env.int("NOTIFY_BACKOFF_MAX_SECONDS", default=3600)
NOTIFY_GIVE_UP_SECONDS = env.int("NOTIFY_GIVE_UP_SECONDS", default=86400)
AGENT_DB_THREADS = env.int("AGENT_DB_THREADS", default=4)
# Fernet keys for people's git credentials, comma-separated: the first encrypts, all decrypt.
# Empty: the server runs, but storing a credential answers 503 saying how to make a key.
CREDENTIAL_KEYS = env.list("CREDENTIAL_KEYS", default=[])
# With DEBUG off a secret goes out only over HTTPS (`request.is_secure()`, which honours
# X-Forwarded-Proto); true allows plain HTTP, for agents that reach the server over a private
# network only (the compose file's internal network).
CREDENTIALS_ALLOW_INSECURE_TRANSPORT = env.bool(
    "CREDENTIALS_ALLOW_INSECURE_TRANSPORT", default=False
)
# An OpenSSH known_hosts file whose lines go with every job, so that SSH clones check host keys
# against what the operator vouches for (besides a credential's own lines).
GIT_SSH_KNOWN_HOSTS = env.str("GIT_SSH_KNOWN_HOSTS", default="")

# --- Metrics --------------------------------------------------------------------------------
# `/metrics` answers only `Authorization: Bearer <METRICS_TOKEN>`; empty means metrics are off.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Prometheus scrapes each process directly, not through the TLS proxy in front.
SECURE_REDIRECT_EXEMPT = [*SECURE_REDIRECT_EXEMPT, r"^metrics$"]

# --- Logging --------------------------------------------------------------------------------
# One line per record on stderr: `text` for people, `json` (one object per line) for collectors.
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', not {LOG_FORMAT!r}.")
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # uvicorn's own lines (start, stop, errors) in the same format. Not its parent "uvicorn":
    # configuring that would reset "uvicorn.access", which `--no-access-log` keeps silent
    # because `gitfleet.request` replaces it.
    "loggers": {
        "uvicorn.error": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        # django-axes announces its configuration at every start, manage.py commands included.
        "axes.apps": {"level": "WARNING"},
    },
}
