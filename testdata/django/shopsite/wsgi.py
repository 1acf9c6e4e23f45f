"""WSGI entry point for gunicorn (shopsite.wsgi:application) and mod_wsgi."""
import os

try:
    # Under mod_wsgi the process group names the server, so PostgreSQL's log
    # can tell the two Apache groups apart.
    import mod_wsgi

    os.environ["KRAIT_APP_NAME"] = "apache-" + mod_wsgi.process_group
except ImportError:
    pass

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
