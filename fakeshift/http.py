"""Building JSON responses, shared by the Blueshift and control-plane blueprints."""

from __future__ import annotations

import json

from flask import Response


def answer(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status, headers=headers,
                    mimetype="application/json")
