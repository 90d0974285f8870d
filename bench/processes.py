"""The servers under test, each a process of its own on a free loopback port, and the tools the
harness needs (wrk and, for WireMock, Java from Debian; Prism, WireMock's standalone jar and
Mockoon's CLI from npm), installed on first use."""

from __future__ import annotations

import glob
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
# What the harness installs with npm into NODE_PREFIX (git-ignored), and what it then runs:
# a path under NODE_PREFIX, a glob for the one file the package ships.
NODE_TOOLS = {
    "prism": ("@stoplight/prism-cli@5", "node_modules/.bin/prism"),
    # The npm package `wiremock` ships WireMock's standalone jar; the harness runs it with java.
    "wiremock": ("wiremock@3", "node_modules/wiremock/build/wiremock-standalone-*.jar"),
    "mockoon": ("@mockoon/cli@9", "node_modules/.bin/mockoon-cli"),
}
PRISM_PACKAGE = NODE_TOOLS["prism"][0]
JAVA_PACKAGE = "default-jre-headless"  # Debian 12: OpenJDK 17
JAVA_MINIMUM = 11  # WireMock 3's


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


def _installed(tool: str) -> Path | None:
    found = sorted(glob.glob(str(NODE_PREFIX / NODE_TOOLS[tool][1])))
    return Path(found[-1]) if found else None


def ensure_node_tools(tools) -> dict[str, tuple[Path | None, str]]:
    """Each tool's file (installed into bench/.node on first use, every missing one in one npm
    call), or None and why not."""
    missing = [tool for tool in tools if _installed(tool) is None]
    failure = ""
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            _apt_install("npm")
            npm = shutil.which("npm")
        if npm is None:
            failure = "npm is not installed (install Node.js and npm)"
        else:
            packages = [NODE_TOOLS[tool][0] for tool in missing]
            print(f"bench: installing {' '.join(packages)} into {NODE_PREFIX}", file=sys.stderr,
                  flush=True)
            NODE_PREFIX.mkdir(exist_ok=True)
            # --prefer-offline: what npm has in its cache is not asked for again.
            done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefer-offline",
                                   "--prefix", str(NODE_PREFIX), *packages],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                  timeout=600, check=False)
            if done.returncode != 0:
                failure = f"npm could not install {' '.join(packages)}: " \
                          f"{done.stderr.strip()[-300:]}"
    found = {}
    for tool in tools:
        path = _installed(tool)
        found[tool] = (path, "") if path is not None else (
            None, f"{failure or 'npm installed ' + NODE_TOOLS[tool][0] + ' without its file'}"
                  f", so it was skipped")
    return found


def node_tool_version(tool: str) -> str:
    """The installed package's version, from its package.json."""
    name = NODE_TOOLS[tool][0].rsplit("@", 1)[0]
    try:
        return json.loads((NODE_PREFIX / "node_modules" / name / "package.json").read_text())[
            "version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def ensure_prism() -> tuple[Path | None, str]:
    """Prism's executable (installed into bench/.node on first use), or None and why not."""
    return ensure_node_tools(["prism"])["prism"]


def java_major(java: str) -> int | None:
    text = tool_version([java, "-version"])
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older call themselves 1.N.
    return int(match.group(2) or 0) if major == 1 else major


def ensure_java() -> tuple[str | None, str]:
    """A java that runs WireMock 3 (installed with apt-get when missing), or None and why not."""
    java = shutil.which("java")
    if java is None:
        _apt_install(JAVA_PACKAGE)
        java = shutil.which("java")
    if java is None:
        return None, f"java is not installed (apt-get install {JAVA_PACKAGE}), so WireMock " \
                     "was skipped"
    major = java_major(java)
    if major is None or major < JAVA_MINIMUM:
        return None, f"{java} is Java {major}; WireMock 3 needs {JAVA_MINIMUM} or newer, so " \
                     "it was skipped"
    return java, ""


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
                 ready_status: tuple[int, ...] = (200,), env: dict | None = None):
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
                                        cwd=ROOT, start_new_session=True,
                                        env=None if env is None else {**os.environ, **env})

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
            # The whole session: Prism's node runs under a wrapper script, and so may others.
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


def start_wiremock(java: str, jar: Path, root: Path) -> Server:
    """WireMock standalone as it ships (its request journal on, no limit on its entries),
    serving the mappings under `root`."""
    port = free_port()
    command = [java, "-jar", str(jar), "--port", str(port), "--bind-address", "127.0.0.1",
               "--root-dir", str(root), "--disable-banner"]
    return Server("wiremock", command, port, "/__admin/health")


def start_mockoon(cli: Path, environment: Path, port: int) -> Server:
    """Mockoon's CLI as it ships (every transaction logged to stdout and to its log file),
    serving `environment`. Its log file goes under HOME/.mockoon-cli: HOME is pointed at the
    run's scratch folder so that it lands there."""
    home = work_dir / "mockoon-home"
    home.mkdir(parents=True, exist_ok=True)
    command = [str(cli), "start", "--data", str(environment), "--port", str(port),
               "--hostname", "127.0.0.1", "--repair"]
    # Any HTTP answer means it is up: Mockoon answers a path it has no route for with a 404.
    return Server("mockoon", command, port, "/", ready_status=tuple(range(200, 600)),
                  env={"HOME": str(home)})


def start_plugin_server() -> Server:
    command = [sys.executable, "-m", "bench.plugin_probe"]
    return Server("plugin-probe", command, None, "/_fakeshift/ready")
