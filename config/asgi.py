"""ASGI entry point, served by uvicorn: `uvicorn config.asgi:application`.

`core.asgi_limits.RequestLimits` is the outermost layer: it refuses oversized bodies and agent
calls without an agent token before Django reads a byte of the body.
Static files (the admin's and the API docs' assets) are served by Django's ASGI static handler,
which reads them from the installed apps; a proxy in front may serve `STATIC_ROOT` instead.
Each server process also runs the sweeper that expires lapsed leases (`projects.sweeper`).
"""

import os

import django
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.handlers import (  # noqa: E402 - after setup()
    AGENT_API_PREFIX,
    GitfleetASGIHandler,
    StaticFilesHandler,
)
from core.asgi_limits import RequestLimits  # noqa: E402 - after setup()

application = RequestLimits(
    StaticFilesHandler(GitfleetASGIHandler()),
    max_body_bytes=settings.MAX_REQUEST_BODY_BYTES,
    bearer_prefixes={AGENT_API_PREFIX: "gfa_"},
)

from projects import sweeper  # noqa: E402 - needs the app registry that setup() loaded

sweeper.start()
