"""A small FastAPI app served by asgi-gateway.

Run it from the repository root:

    bin/asgi-gateway run fastapi_app:app --app-dir examples

Then try:

    curl http://127.0.0.1:8000/items/1
    curl 'http://127.0.0.1:8000/items/1?q=blue'
    curl -H 'content-type: application/json' -d '{"name": "Lamp", "price": 12.5}' \\
        http://127.0.0.1:8000/items
    curl http://127.0.0.1:8000/docs        # the interactive OpenAPI page
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field

app = FastAPI(title="asgi-gateway FastAPI example")


class Item(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    price: float = Field(gt=0)
    tags: list[str] = []


class StoredItem(Item):
    id: int


# An in-memory store: each worker process has its own (use a database in a real app).
ITEMS: dict[int, StoredItem] = {
    1: StoredItem(id=1, name="Teapot", price=18.0, tags=["kitchen"]),
}


class Pagination(BaseModel):
    offset: int
    limit: int


def pagination(
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Pagination:
    """A dependency: shared, validated query parameters."""
    return Pagination(offset=offset, limit=limit)


@app.get("/")
async def root() -> dict[str, str]:
    return {"message": "Hello from FastAPI"}


@app.get("/items")
async def list_items(page: Annotated[Pagination, Depends(pagination)]) -> list[StoredItem]:
    items = sorted(ITEMS.values(), key=lambda item: item.id)
    return items[page.offset : page.offset + page.limit]


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    item = ITEMS.get(item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="Item not found")
    return {"item": item.model_dump(), "q": q}


@app.post("/items", status_code=201)
async def create_item(item: Item) -> StoredItem:
    stored = StoredItem(id=max(ITEMS, default=0) + 1, **item.model_dump())
    ITEMS[stored.id] = stored
    return stored
