"""The uuids fakeshift hands out (profiles, accounts, lists, groups, events, stored objects): one
generator for all of them, so that the append-only log (appendlog.py) can make a replayed change
draw exactly the uuids it drew the first time, by seeding it."""

from __future__ import annotations

from random import Random

# The version (4) and variant (RFC 4122) bits of a random UUID, and the mask that makes room.
_UUID4_MASK = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
_UUID4_BITS = 0x00000000_0000_4000_8000_000000000000
# A generator of our own, seeded from the OS: the global one is reseeded by whatever shares the
# process (hypothesis does it before every example, random.seed() in a user's test), and every
# reseed would hand out the same uuids again ("... already exists" from an in-process emulator).
_generator = Random()
_uuid_bits = _generator.getrandbits
_pending_seed: int | None = None


def new_uuid() -> str:
    """A random (version 4) UUID in its text form. Not for secrets: str(uuid.uuid4()) costs
    four times as much (an os.urandom call and a UUID object), which is most of the time of
    seeding a million profiles."""
    global _pending_seed
    if _pending_seed is not None:
        _generator.seed(_pending_seed)
        _pending_seed = None
    text = "%032x" % (_uuid_bits(128) & _UUID4_MASK | _UUID4_BITS)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def seed(value: int) -> None:
    """Make the uuids that follow a function of `value`. The caller holds the store lock, under
    which every uuid of the server's state is drawn, so no other thread draws in between. The
    generator is seeded when the next uuid is drawn: most changes draw none, and seeding costs
    more than all the rest of logging a change."""
    global _pending_seed
    _pending_seed = value
