"""WebSocket routes: like urls.py, for consumers."""

from django.urls import path

from echosite.consumers import EchoConsumer

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
]
