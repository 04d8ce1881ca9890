"""Settings of the Channels example: the least a Django project needs to serve HTTP and WebSockets.

No database and no channel layer: the echo consumer talks only to its own client. A consumer that
talks to groups (a chat room across connections and worker processes) needs `CHANNEL_LAYERS`, for
example `channels_redis`; see https://channels.readthedocs.io/en/stable/topics/channel_layers.html.
"""

import os

# The fallback is for the demo only: set DJANGO_SECRET_KEY anywhere else.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-demo-key-for-the-channels-example-only")

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"

# Any Host header is accepted for the demo; list your host names in production.
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "channels",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "echosite.urls"

# What `channels` (and `manage.py runserver` with daphne) serve; asgi-gateway is told on its command line.
ASGI_APPLICATION = "echosite.asgi.application"

DATABASES = {}

USE_TZ = True
