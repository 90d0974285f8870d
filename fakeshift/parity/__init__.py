"""`fakeshift parity`: play one scripted scenario against a reference (a Blueshift sandbox, or
shapes recorded from one) and a candidate (fakeshift), and list where they differ.

See docs/parity.md. Wired into the `fakeshift` command by `add_parity_command(subparsers)`.
"""

from .command import add_parity_command, run_parity

__all__ = ["add_parity_command", "run_parity"]
