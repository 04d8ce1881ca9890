"""Typing of the ASGI 3 interface as the worker serves it (modelled on uvicorn's ``_types.py``).

This module owns the type declarations only: the ``http``, ``websocket`` and ``lifespan`` scopes (and
the TLS extension's entry in them, ``specs/tls.rst``), the receive/send events of those protocols
(asgiref ``specs/www.rst``, spec version 2.5, and ``specs/lifespan.rst``) and the application
callable. It has no runtime behaviour.
"""

from __future__ import annotations

from typing import (
    Any,
    Awaitable,
    Callable,
    Dict,
    Iterable,
    List,
    Literal,
    MutableMapping,
    Optional,
    Protocol,
    Tuple,
    TypedDict,
    Union,
)

__all__ = [
    "ASGIVersions",
    "HTTPScope",
    "TLSExtension",
    "HTTPRequestEvent",
    "HTTPDisconnectEvent",
    "HTTPResponseStartEvent",
    "HTTPResponseBodyEvent",
    "HTTPResponseTrailersEvent",
    "HTTPResponsePathsendEvent",
    "HTTPResponseEarlyHintEvent",
    "WebSocketScope",
    "WebSocketConnectEvent",
    "WebSocketReceiveEvent",
    "WebSocketDisconnectEvent",
    "WebSocketAcceptEvent",
    "WebSocketSendEvent",
    "WebSocketCloseEvent",
    "LifespanScope",
    "LifespanEvent",
    "ASGIReceiveEvent",
    "ASGISendEvent",
    "ASGIReceiveCallable",
    "ASGISendCallable",
    "ASGI3Application",
    "Scope",
    "Message",
]

# Generic, as the apps see them.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


class ASGIVersions(TypedDict):
    version: Literal["3.0"]
    spec_version: str


class TLSExtension(TypedDict):
    """``scope["extensions"]["tls"]`` on a TLS connection (asgiref ``specs/tls.rst``)."""

    server_cert: Optional[str]  # PEM
    client_cert_chain: List[str]  # PEM each, the client's certificate first
    client_cert_name: Optional[str]  # RFC 4514 subject of the client's certificate
    client_cert_error: Optional[str]
    tls_version: int  # e.g. 0x0304
    cipher_suite: int  # e.g. 0x1301


class HTTPScope(TypedDict):
    type: Literal["http"]
    asgi: ASGIVersions
    http_version: str
    method: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: List[Tuple[bytes, bytes]]
    client: Optional[Tuple[str, int]]
    server: Optional[Tuple[str, Optional[int]]]
    state: Dict[str, Any]
    extensions: Dict[str, Dict[object, object]]


class HTTPRequestEvent(TypedDict):
    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnectEvent(TypedDict):
    type: Literal["http.disconnect"]


class _HTTPResponseStartRequired(TypedDict):
    type: Literal["http.response.start"]
    status: int


class HTTPResponseStartEvent(_HTTPResponseStartRequired, total=False):
    headers: Iterable[Tuple[bytes, bytes]]
    trailers: bool


class _HTTPResponseBodyRequired(TypedDict):
    type: Literal["http.response.body"]


class HTTPResponseBodyEvent(_HTTPResponseBodyRequired, total=False):
    body: bytes
    more_body: bool


class _HTTPResponseTrailersRequired(TypedDict):
    type: Literal["http.response.trailers"]


class HTTPResponseTrailersEvent(_HTTPResponseTrailersRequired, total=False):
    headers: Iterable[Tuple[bytes, bytes]]
    more_trailers: bool


class HTTPResponsePathsendEvent(TypedDict):
    type: Literal["http.response.pathsend"]
    path: str


class HTTPResponseEarlyHintEvent(TypedDict):
    type: Literal["http.response.early_hint"]
    links: Iterable[bytes]


class WebSocketScope(TypedDict):
    type: Literal["websocket"]
    asgi: ASGIVersions
    http_version: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: List[Tuple[bytes, bytes]]
    client: Optional[Tuple[str, int]]
    server: Optional[Tuple[str, Optional[int]]]
    subprotocols: List[str]
    state: Dict[str, Any]
    extensions: Dict[str, Dict[object, object]]


class WebSocketConnectEvent(TypedDict):
    type: Literal["websocket.connect"]


class WebSocketReceiveEvent(TypedDict, total=False):
    type: Literal["websocket.receive"]
    bytes: Optional[bytes]
    text: Optional[str]


class WebSocketDisconnectEvent(TypedDict):
    type: Literal["websocket.disconnect"]
    code: int
    reason: str


class WebSocketAcceptEvent(TypedDict, total=False):
    type: Literal["websocket.accept"]
    subprotocol: Optional[str]
    headers: Iterable[Tuple[bytes, bytes]]


class WebSocketSendEvent(TypedDict, total=False):
    type: Literal["websocket.send"]
    bytes: Optional[bytes]
    text: Optional[str]


class WebSocketCloseEvent(TypedDict, total=False):
    type: Literal["websocket.close"]
    code: int
    reason: Optional[str]


class LifespanScope(TypedDict):
    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: Dict[str, Any]


class LifespanEvent(TypedDict, total=False):
    type: str  # lifespan.startup, lifespan.shutdown, lifespan.*.complete, lifespan.*.failed
    message: str


ASGIReceiveEvent = Union[
    HTTPRequestEvent, HTTPDisconnectEvent, WebSocketConnectEvent, WebSocketReceiveEvent, WebSocketDisconnectEvent,
    LifespanEvent,
]
ASGISendEvent = Union[
    HTTPResponseStartEvent, HTTPResponseBodyEvent, HTTPResponseTrailersEvent, HTTPResponsePathsendEvent,
    HTTPResponseEarlyHintEvent, WebSocketAcceptEvent,
    WebSocketSendEvent, WebSocketCloseEvent, LifespanEvent,
]

ASGIReceiveCallable = Callable[[], Awaitable[ASGIReceiveEvent]]
ASGISendCallable = Callable[[ASGISendEvent], Awaitable[None]]


class ASGI3Application(Protocol):
    def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> Awaitable[None]: ...  # pragma: no cover
