"""A JSON view, so that the HTTP half of the project has something to serve."""

from django.http import HttpRequest, JsonResponse


def index(request: HttpRequest) -> JsonResponse:
    scheme = "wss" if request.is_secure() else "ws"
    return JsonResponse({"echo": f"{scheme}://{request.get_host()}/ws/echo/"})
