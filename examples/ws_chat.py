"""A WebSocket chat room in Starlette: every message goes to everyone in the room.

    bin/asgi-gateway run ws_chat:app --app-dir examples --workers 1

Then open http://127.0.0.1:8000/ in two browser tabs, or use any WebSocket client, for example
`python -m websockets 'ws://127.0.0.1:8000/ws?name=ada'`.

| route | what it does |
|---|---|
| `GET /` | a small HTML page with a chat client |
| `WS /ws?name=NAME` | joins the room: each text message is broadcast as `NAME: text` to every member (the sender too); `* NAME joined` / `* NAME left` announce arrivals and departures |
| `GET /members` | the names in the room, as JSON |

The room is a set in the app's memory, so it spans one worker process: run this example with
`--workers 1`. With several workers each process has its own room; a shared room needs a message broker
(Redis pub/sub, or Django Channels with a channel layer).
"""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

MAX_NAME = 32


class Room:
    """The members of the chat: who is connected, and a broadcast to all of them."""

    def __init__(self) -> None:
        self.members: dict[WebSocket, str] = {}

    def join(self, websocket: WebSocket, name: str) -> None:
        self.members[websocket] = name

    def leave(self, websocket: WebSocket) -> None:
        self.members.pop(websocket, None)

    async def broadcast(self, text: str) -> None:
        """Sends text to every member at once; a member whose send fails (gone) leaves the room."""
        members = list(self.members)
        results = await asyncio.gather(*(member.send_text(text) for member in members), return_exceptions=True)
        for member, result in zip(members, results):
            if isinstance(result, Exception):
                self.leave(member)


room = Room()


async def chat(websocket: WebSocket) -> None:
    name = (websocket.query_params.get("name") or "anonymous").strip()[:MAX_NAME] or "anonymous"
    await websocket.accept()
    room.join(websocket, name)
    await room.broadcast(f"* {name} joined")
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None:  # a binary message: shown as text
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            await room.broadcast(f"{name}: {text}")
    finally:
        room.leave(websocket)
        await room.broadcast(f"* {name} left")


async def members(request: Request) -> JSONResponse:
    return JSONResponse({"members": sorted(room.members.values())})


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>asgi-gateway WebSocket chat</title>
<style>
  body { font-family: sans-serif; max-width: 40rem; margin: 2rem auto; }
  #log { border: 1px solid #ccc; height: 20rem; overflow-y: auto; padding: .5rem; white-space: pre-wrap; }
  form { margin-top: .5rem; display: flex; gap: .5rem; }
  #text { flex: 1; }
</style></head>
<body>
<h1>WebSocket chat</h1>
<form id="join"><input id="name" placeholder="your name" maxlength="32" required><button>Join</button></form>
<div id="log"></div>
<form id="say"><input id="text" placeholder="message" autocomplete="off" disabled><button disabled>Send</button></form>
<script>
const log = document.getElementById("log");
const text = document.getElementById("text");
let socket = null;
function show(line) {
  const div = document.createElement("div");
  div.textContent = line;  // text, never HTML
  log.appendChild(div);
  log.scrollTop = log.scrollHeight;
}
document.getElementById("join").addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket) socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const name = encodeURIComponent(document.getElementById("name").value);
  socket = new WebSocket(`${scheme}://${location.host}/ws?name=${name}`);
  socket.onopen = () => { text.disabled = false; text.nextElementSibling.disabled = false; text.focus(); };
  socket.onmessage = (event) => show(event.data);
  socket.onclose = (event) => { show(`(disconnected: ${event.code})`); text.disabled = true; };
});
document.getElementById("say").addEventListener("submit", (event) => {
  event.preventDefault();
  if (socket && text.value) { socket.send(text.value); text.value = ""; }
});
</script>
</body>
</html>
"""


async def homepage(request: Request) -> HTMLResponse:
    return HTMLResponse(PAGE)


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/members", members),
        WebSocketRoute("/ws", chat),
    ]
)
