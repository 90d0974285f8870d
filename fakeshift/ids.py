"""The uuids fakeshift hands out (profiles, accounts, lists, groups, events, stored objects): one
generator for all of them, so that the append-only log (appendlog.py) can make a replayed change
draw exactly the uuids it drew the first time, by seeding it."""

from __future__ import annotations

from hashlib import blake2b
from random import Random

# The version (4) and variant (RFC 4122) bits of a random UUID, and the mask that makes room.
_UUID4_MASK = 0xFFFFFFFF_FFFF_0FFF_3FFF_FFFFFFFFFFFF
_UUID4_BITS = 0x00000000_0000_4000_8000_000000000000
# A generator of our own, seeded from the OS: the global one is reseeded by whatever shares the
# process (hypothesis does it before every example, random.seed() in a user's test), and every
# reseed would hand out the same uuids again ("... already exists" from an in-process emulator).
_generator = Random()
_uuid_bits = _generator.getrandbits
# After seed(): the first draws are BLAKE2b hashes keyed with the seed, and only a change that
# draws more (a seed call making thousands of profiles) seeds the Mersenne Twister, which costs
# as much as a dozen hashes: most changes draw one uuid or none.
_HASHED_DRAWS = 16
_seed: bytes | None = None
_hashed = 0


def _random_bits() -> int:
    global _seed, _hashed
    if _seed is None:
        return _uuid_bits(128)
    if _hashed < _HASHED_DRAWS:
        _hashed += 1
        digest = blake2b(_hashed.to_bytes(1, "little"), digest_size=16, key=_seed).digest()
        return int.from_bytes(digest, "little")
    _generator.seed(_seed)
    _seed = None
    return _uuid_bits(128)


def new_uuid() -> str:
    """A random (version 4) UUID in its text form. Not for secrets: str(uuid.uuid4()) costs
    four times as much (an os.urandom call and a UUID object), which is most of the time of
    seeding a million profiles."""
    text = "%032x" % (_random_bits() & _UUID4_MASK | _UUID4_BITS)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def seed(value: int) -> None:
    """Make the uuids that follow a function of `value` (0 <= value < 2**64). The caller holds
    the store lock, under which every uuid of the server's state is drawn, so no other thread
    draws in between."""
    global _seed, _hashed
    _seed, _hashed = value.to_bytes(8, "little"), 0
