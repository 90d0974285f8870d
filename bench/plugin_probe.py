"""A fresh process that starts the pytest plugin's server the way its session fixture does
(`LiveServer(fakeshift_config)`: create_app, then waitress in a thread, on a free port), prints
its URL, and waits to be stopped; the harness times process start to the first ready answer.

`python -m bench.plugin_probe`
"""

from __future__ import annotations

import threading

from fakeshift.pytest_plugin import LiveServer


def main() -> None:
    # The plugin's default fakeshift_config fixture.
    server = LiveServer({"access_log": False})
    print(f"plugin server listening on {server.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
