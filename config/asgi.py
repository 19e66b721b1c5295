"""ASGI entry point, served by uvicorn: `uvicorn config.asgi:application`.

`config.handlers.application` says what it is made of.
Static files (the admin's and the API docs' assets) are served by Django's ASGI static handler,
which reads them from the installed apps; a proxy in front may serve `STATIC_ROOT` instead.
Each server process also runs the sweeper that expires lapsed leases (`projects.sweeper`), and
its full garbage collections on a timer (`core.collector`).
"""

import os

import django
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.handlers import application as site  # noqa: E402 - after setup()

application = site()

from core.collector import collect_on_a_timer  # noqa: E402
from projects import sweeper  # noqa: E402 - needs the app registry that setup() loaded

sweeper.start()
collect_on_a_timer(settings.GC_FULL_COLLECTION_SECONDS)
