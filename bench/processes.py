"""The servers under test, each a process of its own on a free loopback port, and the tools the
harness needs (wrk from Debian, Prism from npm), installed on first use."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
# Scratch files of the current run (server logs, plans, scenarios). main() gives each run a
# folder of its own, so a smoke test beside a full run never shares a file with it.
work_dir = OUT / "full"
NODE_PREFIX = BENCH / ".node"
PRISM_PACKAGE = "@stoplight/prism-cli@5"


class HarnessError(RuntimeError):
    """The harness itself cannot do its job (a tool is missing, a server never came up, a run
    produced no answers): the figures would be meaningless, so the run stops."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _apt_install(package: str) -> None:
    """Install a Debian package when this process may (root, apt-get present); else nothing."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return
    print(f"bench: installing {package} with apt-get", file=sys.stderr, flush=True)
    for step in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", package]):
        subprocess.run(step, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, timeout=900)


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        _apt_install("wrk")
        found = shutil.which("wrk")
    if found is None:
        raise HarnessError("wrk is needed and could not be installed: run `apt-get install wrk` "
                           "(Debian/Ubuntu, as root) and try again")
    return found


def ensure_prism() -> tuple[Path | None, str]:
    """Prism's executable (installed into bench/.node on first use), or None and why not."""
    prism = NODE_PREFIX / "node_modules" / ".bin" / "prism"
    if prism.exists():
        return prism, ""
    npm = shutil.which("npm")
    if npm is None:
        _apt_install("npm")
        npm = shutil.which("npm")
    if npm is None:
        return None, "npm is not installed, so Prism was skipped (install Node.js and npm)"
    print(f"bench: installing {PRISM_PACKAGE} into {NODE_PREFIX}", file=sys.stderr, flush=True)
    NODE_PREFIX.mkdir(exist_ok=True)
    done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(NODE_PREFIX),
                           PRISM_PACKAGE], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=600, check=False)
    if done.returncode != 0 or not prism.exists():
        return None, f"npm could not install {PRISM_PACKAGE}: {done.stderr.strip()[-300:]}"
    return prism, ""


def tool_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return "unknown"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


class Client:
    """One persistent HTTP/1.1 connection, so timings measure the server, not TCP set-up."""

    def __init__(self, port: int, timeout: float = 600.0):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method: str, path: str, body=None, headers: dict | None = None):
        """(status, decoded JSON or None, seconds from sending to the whole answer read)."""
        payload = None if body is None else json.dumps(body).encode()
        all_headers = dict(headers or {})
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        self.connection.request(method, path, body=payload, headers=all_headers)
        response = self.connection.getresponse()
        raw = response.read()
        took = time.perf_counter() - started
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return response.status, decoded, took

    def expect(self, method: str, path: str, body=None, headers=None, status: int = 200):
        got, decoded, took = self.call(method, path, body, headers)
        if got != status:
            raise HarnessError(f"{method} {path} answered {got}, expected {status}: {decoded}")
        return decoded, took

    def close(self) -> None:
        self.connection.close()


class Server:
    """A server process whose output goes to a log file under bench/out/."""

    def __init__(self, name: str, command: list[str], port: int | None, ready_path: str,
                 ready_status: tuple[int, ...] = (200,)):
        """`port=None`: the server picks one and prints its URL as http://127.0.0.1:PORT."""
        self.name = name
        self.port = port
        self.ready_path = ready_path
        self.ready_status = ready_status
        work_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = work_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=ROOT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.005) -> float:
        """Seconds from process start to the first ready answer."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"{self.name} exited with {self.process.returncode}; see "
                                   f"{self.log_path}")
            if self.port is None:
                self.port = self._printed_port()
                if self.port is None:
                    time.sleep(poll)
                    continue
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", self.ready_path)
                status = connection.getresponse().status
                connection.close()
                if status in self.ready_status:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(poll)
        self.stop()
        raise HarnessError(f"{self.name} was not ready within {timeout:.0f}s; see {self.log_path}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _printed_port(self) -> int | None:
        match = re.search(rb"http://127\.0\.0\.1:(\d+)", self.log_path.read_bytes())
        return int(match.group(1)) if match else None

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise HarnessError(f"no VmRSS for {self.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            # The whole session: Prism's node runs under a wrapper script.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def start_fakeshift(name: str = "fakeshift", *extra: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "fakeshift", "serve", "--host", "127.0.0.1",
               "--port", str(port), *extra]
    return Server(name, command, port, "/_fakeshift/ready")


def start_bare(threads: int = 8) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare_app", "--port", str(port),
               "--threads", str(threads)]
    return Server("bare-flask", command, port, "/")


def start_prism(prism: Path, spec: Path) -> Server:
    port = free_port()
    command = [str(prism), "mock", str(spec), "--host", "127.0.0.1", "--port", str(port)]
    # Any HTTP answer means Prism is up: it answers unknown paths with a 404 problem document.
    return Server("prism", command, port, "/", ready_status=tuple(range(200, 600)))


def start_plugin_server() -> Server:
    command = [sys.executable, "-m", "bench.plugin_probe"]
    return Server("plugin-probe", command, None, "/_fakeshift/ready")
