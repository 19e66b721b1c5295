"""ASGI entry point, served by uvicorn: `uvicorn config.asgi:application`.

Static files (the admin's and the API docs' assets) are served by Django's ASGI static handler,
which reads them from the installed apps; a proxy in front may serve `STATIC_ROOT` instead.
Each server process also runs the sweeper that expires lapsed leases (`projects.sweeper`).
"""

import os

import django
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

# Paths whose requests may wait for a long time while doing nothing.
LONG_POLL_PATHS = frozenset({"/api/v1/agent/lease"})


class GitfleetASGIHandler(ASGIHandler):
    """Django's ASGI handler, except that long polls get no thread of their own.

    Django gives every request a `ThreadSensitiveContext`: the first synchronous step of the
    request (a sync signal receiver or middleware) starts a thread that then lives, idle, until
    the request ends, so 5,000 waiting long polls would be 5,000 threads. Outside such a context
    those short synchronous steps share one thread instead; the long poll's database work runs
    on `config.async_db`'s pool either way.
    """

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in LONG_POLL_PATHS:
            await self.handle(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


application = ASGIStaticFilesHandler(GitfleetASGIHandler())

from projects import sweeper  # noqa: E402 - needs the app registry that setup() loaded

sweeper.start()
