"""The login routes' part of /openapi.json (only with an api_token configured)."""

from __future__ import annotations

from typing import Any


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
        },
    }


_TO_LOGIN = {
    "description": "A browser (Accept: text/html) without the header or a valid "
    "session cookie is sent to the login page.",
    "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
}


def add_login_paths(paths: dict[str, Any]) -> None:
    """With a token: the login routes, and the redirect of the views to them."""
    for path in ("/", "/plot"):
        paths[path]["get"]["responses"]["303"] = _TO_LOGIN
        paths[path]["get"]["description"] = (
            "A browser session cookie from POST /login opens this view instead of the "
            "header."
        )
    html = {"text/html": {"schema": {"type": "string"}}}
    form = {
        "type": "object",
        "properties": {"token": {"type": "string"}, "next": {"type": "string"}},
        "required": ["token"],
    }
    forbidden = _error(
        "The form was posted from another site (Origin or Sec-Fetch-Site)."
    )
    see_other = {
        "description": "Done: on to the page named by Location.",
        "headers": {"Location": {"schema": {"type": "string"}, "required": True}},
    }
    paths["/login"] = {
        "get": {
            "operationId": "loginPage",
            "summary": "The login page of the dashboard: a form taking the api_token.",
            "security": [],
            "parameters": [
                {
                    "name": "next",
                    "in": "query",
                    "required": False,
                    "description": "The page of this service to go to once logged in.",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {"200": {"description": "The login page.", "content": html}},
        },
        "post": {
            "operationId": "login",
            "summary": "Check the api_token and set the session cookie (HttpOnly, "
            "SameSite=Strict, Secure over TLS) that opens the dashboard and /plot.",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": form}},
            },
            "responses": {
                "303": {
                    **see_other,
                    "headers": {
                        **see_other["headers"],
                        "Set-Cookie": {"schema": {"type": "string"}, "required": True},
                    },
                },
                "401": {
                    "description": "Not the api_token: the login page again (HTML) "
                    "or the error body.",
                    "content": {**html, **_error("")["content"]},
                },
                "403": forbidden,
                "413": _error("The form is larger than 8 KiB."),
            },
        },
    }
    paths["/logout"] = {
        "post": {
            "operationId": "logout",
            "summary": "Remove this browser's session cookie; on to the login page.",
            "security": [],
            "responses": {"303": see_other, "403": forbidden},
        }
    }
