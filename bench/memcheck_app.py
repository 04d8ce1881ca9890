"""ASGI app for bench/memcheck.py: a slow reader of uploads and a streamer of large downloads."""
import asyncio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/upload":
        total = 0
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            await asyncio.sleep(0.0005)  # a slow app: the upload must wait for it, not pile up
            if not message.get("more_body"):
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    size = int(scope["query_string"].decode().partition("=")[2] or 0)
    chunk = b"x" * 65536
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
    sent = 0
    while sent < size:
        piece = chunk[: min(65536, size - sent)]
        sent += len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": sent < size})
