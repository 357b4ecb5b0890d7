"""The web page of `vidsr serve` (the `web` extra: FastAPI, uvicorn, Jinja2): app.py holds the
routes, templates/ and static/ the page itself (plain HTML, JavaScript and CSS; no CDN)."""
