"""The Starlette JSON workload: GET /json -> {"message": "Hello, World!"} via JSONResponse."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def json_endpoint(request):
    return JSONResponse({"message": "Hello, World!"})


app = Starlette(routes=[Route("/json", json_endpoint)])
