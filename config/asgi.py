"""ASGI entry point, served by uvicorn: `uvicorn config.asgi:application`.

Static files (the admin's and the API docs' assets) are served by Django's ASGI static handler,
which reads them from the installed apps; a proxy in front may serve `STATIC_ROOT` instead.
Each server process also runs the sweeper that expires lapsed leases (`projects.sweeper`).
"""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = ASGIStaticFilesHandler(get_asgi_application())

from projects import sweeper  # noqa: E402 - needs the app registry that the line above loads

sweeper.start()
