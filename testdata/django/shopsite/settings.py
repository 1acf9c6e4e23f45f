"""Settings for shopsite, the Django project of krait's end-to-end stack.

Works unchanged on Django 3.2 (Debian 12's python3-django) and Django 5.2.
Everything that differs between stacks comes from environment variables that
scripts/stack.sh sets (see testdata/django/README.md); the defaults only make
the module importable without a stack.
"""
import os

env = os.environ.get

SECRET_KEY = env("KRAIT_DJANGO_SECRET_KEY", "krait-test-stack-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "shopsite.urls"
WSGI_APPLICATION = "shopsite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": env("KRAIT_PG_HOST", "127.0.0.1"),
        "PORT": env("KRAIT_PG_PORT", "5432"),
        "NAME": env("KRAIT_PG_DB", "shop"),
        "USER": env("KRAIT_PG_USER", "shop"),
        "PASSWORD": env("KRAIT_PG_PASSWORD", "shop-secret"),
        # Persistent connections, as production runs them.
        "CONN_MAX_AGE": 60,
        "OPTIONS": {
            # Shows up in the statement log (%a), so a test can tell which
            # server sent a query.
            "application_name": env("KRAIT_APP_NAME", "shopsite"),
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
        "LOCATION": "127.0.0.1:%s" % env("KRAIT_MEMCACHED_PORT", "11211"),
        "KEY_PREFIX": "shopsite",
    },
    # In-process: what a cache call costs without the network (cacheloop).
    "local": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "shopsite-local",
    },
}

try:
    import pylibmc  # noqa: F401 (Debian's python3-pylibmc: python3.11's servers)
except ImportError:
    pass
else:
    # memcached through pylibmc too, under a prefix of its own (the two
    # clients store values differently).
    CACHES["pylibmc"] = {
        "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
        "LOCATION": "127.0.0.1:%s" % env("KRAIT_MEMCACHED_PORT", "11211"),
        "KEY_PREFIX": "shoplmc",
    }

if env("KRAIT_REDIS_PORT"):
    # Django 4+ has its own Redis backend; Django 3.2 uses django-redis.
    import django

    CACHES["redis"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache"
        if django.VERSION >= (4, 0)
        else "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:%s/0" % env("KRAIT_REDIS_PORT"),
        "KEY_PREFIX": "shopsite",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# Errors go to stderr: gunicorn's error log, Apache's ErrorLog.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django": {"handlers": ["console"], "level": "WARNING"}},
}
