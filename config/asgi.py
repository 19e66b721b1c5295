"""ASGI entry point, served by uvicorn: `uvicorn config.asgi:application`.

Static files (the admin's and the API docs' assets) are served by Django's ASGI static handler,
which reads them from the installed apps; a proxy in front may serve `STATIC_ROOT` instead.
Each server process also runs the sweeper that expires lapsed leases (`projects.sweeper`).
"""

import os

import django
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.handlers import GitfleetASGIHandler  # noqa: E402 - after setup()

application = ASGIStaticFilesHandler(GitfleetASGIHandler())

from projects import sweeper  # noqa: E402 - needs the app registry that setup() loaded

sweeper.start()
