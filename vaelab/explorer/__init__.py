"""The latent explorer: a local web page over one or more runs (hover to decode, draw to encode,
morph, pick a label, decode a grid).

    api.py      the JSON API without the web framework: the runs shown, inputs checked, endpoints
    app.py      the page and the API on Starlette, and `serve`                     (private to this folder)
    server.py   what every request must pass: Host, Origin, sizes, time, connections (private)
    static/     the page: explorer.html, .js, .css

Modules outside this folder import from here only; the tests check it.
"""

from vaelab.explorer.api import MAX_GRID, MAX_POINTS, MAX_STEPS, Explorer, View, load_runs
from vaelab.explorer.app import create_app, serve

__all__ = ["MAX_GRID", "MAX_POINTS", "MAX_STEPS", "Explorer", "View", "create_app", "load_runs", "serve"]
