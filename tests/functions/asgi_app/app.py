"""A FastAPI app behind Mangum, the way such apps are deployed on Lambda.

It builds absolute URLs from the request (``url_for``, and Starlette's redirect to the path with
a trailing slash), so it shows whether the gateway's X-Forwarded-* headers lead back to it.
"""

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from mangum import Mangum

app = FastAPI()


@app.get("/items/")
def items(request: Request) -> dict:
    """Declared with a trailing slash: ``/items`` is redirected here."""
    return {"items": ["a", "b"], "url": str(request.url)}


@app.get("/go")
def go(request: Request) -> RedirectResponse:
    return RedirectResponse(str(request.url_for("landing")), status_code=303)


@app.get("/landing", name="landing")
def landing(request: Request) -> dict:
    client = request.client.host if request.client else None
    return {"landed": True, "base_url": str(request.base_url), "client": client}


handler = Mangum(app, lifespan="off")
