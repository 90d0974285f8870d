"""Server configuration: one object, filled from defaults, then the environment, then the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

DEFAULT_DELETION_DELAY = 7200.0  # Blueshift: deletion "can take a couple of hours"


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    scenario: str | None = None
    deletion_delay: float = DEFAULT_DELETION_DELAY
    # The seed page says both "if omitted, users are also deleted" and "Default: false";
    # the behavioural prose wins (see README, "Decisions").
    group_delete_users_default: bool = True
    api_keys: tuple[str, ...] = ()  # "KEY[:ROLE][@ACCOUNT]"; empty: any key is its own account
    admin_token: str | None = None
    max_body_bytes: int = 1 << 20
    admin_max_body_bytes: int = 256 << 20
    max_accounts: int = 10_000
    max_profiles_per_account: int = 2_000_000
    access_log: bool = True
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, values: dict) -> "Config":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown config keys: {', '.join(sorted(unknown))}")
        return cls(**values)
