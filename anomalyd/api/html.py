"""What the HTML pages share (the dashboard, the login page): escaping, links, the
page frame with its inline stylesheet. No JavaScript anywhere."""

from __future__ import annotations

import html
from urllib.parse import quote, urlencode

import anomalyd

HTML = "text/html; charset=utf-8"

STYLE = """
body{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}
th,td{border-bottom:1px solid #ddd;padding:.3em .8em;text-align:left;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3}
a{color:#1f5fa8}
nav{margin:1em 0}
img{border:1px solid #ddd;max-width:100%;height:auto}
.muted{color:#777}
.error{color:#a11}
form.inline{display:inline}
"""


def e(value: object) -> str:
    """``value`` escaped for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def href(path: str, **params: str) -> str:
    """An escaped href: parameters URL-encoded, then the whole HTML-escaped."""
    return e(path + "?" + urlencode(params, quote_via=quote) if params else path)


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 version``, ``2 versions``; ``nouns`` for an irregular plural."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def page(title: str, body: str, footer: str = "") -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{STYLE}</style></head>\n"
        f"<body>\n{body}\n"
        f'<p class="muted">anomalyd {e(anomalyd.__version__)} · '
        '<a href="/openapi.json">openapi.json</a> · '
        '<a href="/healthcheck">healthcheck</a> · <a href="/metrics">metrics</a>'
        f"{footer}</p>\n"
        "</body></html>\n"
    )
