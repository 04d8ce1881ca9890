"""A tiny view, to show a plain Django view served over ASGI."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "message": "Hello from Django",
            "method": request.method,
            "path": request.path,
            "query": request.GET.dict(),
        }
    )
