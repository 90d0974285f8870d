"""The ceiling of the stack: Flask on waitress, with fakeshift's thread count and waitress
settings, answering {"status": "ok"} to every request and doing nothing else.

`python -m bench.bare_app --port P --threads 8`
"""

from __future__ import annotations

import argparse
import json

import waitress
from flask import Flask, Response

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def create_bare_app() -> Flask:
    app = Flask(__name__)
    body = json.dumps({"status": "ok"}, separators=(",", ":"))

    @app.route("/", defaults={"path": ""}, methods=METHODS)
    @app.route("/<path:path>", methods=METHODS)
    def ok(path):
        return Response(body, mimetype="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    # The same waitress settings as fakeshift.server.serve, so only the app differs.
    server = waitress.create_server(create_bare_app(), host="127.0.0.1", port=args.port,
                                    threads=args.threads, ident="bare", channel_timeout=30)
    server.run()


if __name__ == "__main__":
    main()
