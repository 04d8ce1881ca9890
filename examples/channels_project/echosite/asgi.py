"""The ASGI entry point: Django for HTTP, Channels' URL router for WebSockets.

    bin/asgi-gateway run echosite.asgi:application --app-dir examples/channels_project

HTTP requests go to Django's views (`echosite/urls.py`); WebSocket connections are routed by path to
consumers (`echosite/routing.py`).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "echosite.settings")

# Set up Django (settings, app registry) before anything imports models or consumers.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from echosite.routing import websocket_urlpatterns  # noqa: E402

# In production wrap the URLRouter in channels.security.websocket.AllowedHostsOriginValidator, so that
# only pages of your own site (their Origin header) can open WebSockets with your users' cookies.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
