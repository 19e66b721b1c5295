"""WSGI entry point; Gitfleet is served by ASGI (`config.asgi`) so that long polls hold no thread."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = get_wsgi_application()
