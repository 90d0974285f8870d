"""fakeshift: a fake Blueshift API for tests, CI contract checks and chaos drills."""

from .app import create_app
from .config import Config

__all__ = ["Config", "create_app"]
__version__ = "0.1.0"
