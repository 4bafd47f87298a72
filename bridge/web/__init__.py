"""The Image-Gen page's static files (index.html, app.css, app.js): plain HTML/CSS/JS, no build step.

Shipped as package data and served by :mod:`hal0_bridge.http.page`; the page lives on
``GET /api/events`` and calls the REST API like any other client.
"""
