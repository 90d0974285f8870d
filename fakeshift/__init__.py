"""fakeshift: a fake Blueshift API for tests, CI contract checks and chaos drills."""

from importlib.metadata import PackageNotFoundError, version

from .app import create_app
from .config import Config

__all__ = ["Config", "create_app"]
try:
    # One source for the version: pyproject.toml, through the installed package's metadata.
    __version__ = version("fakeshift")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
