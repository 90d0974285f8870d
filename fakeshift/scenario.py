"""Scenario files: YAML (or JSON) descriptions of accounts, profiles, lists, groups and settings.

A scenario is checked against `schemas/scenario.schema.yaml` before anything is built, and every
error names the file, the entry (e.g. `accounts[0].profiles[3].email`) and the problem.

YAML is read as a way of writing JSON: whatever JSON cannot carry (a date, binary data, NaN, a
key that is not a string, an alias) is refused, not converted, because profiles answer as JSON.
"""

from __future__ import annotations

import itertools
import math
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .clock import VirtualClock, parse_iso
from .errors import BlueshiftError
from .models import IDENTIFIER_KINDS, Account, Settings, Store
from .parsing import MAX_JSON_DEPTH

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
MAX_DURATION_SECONDS = 100 * 365.25 * 86400
# A document failing its schema is reported with this many of its problems at most: a hostile
# one can have a problem per entry, and each costs an error object to find.
MAX_REPORTED_PROBLEMS = 20


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message says where and why."""


def parse_duration(value) -> float:
    """Seconds from a number or a string such as "90", "30s", "15m", "2h", "1d"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is negative")
        seconds = value
    else:
        match = _DURATION.match(str(value).strip())
        if not match:
            raise ValueError(f"{value!r} is not a duration (use seconds, or e.g. 30s, 15m, 2h, 1d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    # Any longer would push a due time or the virtual clock past what a datetime can hold.
    # ScenarioError (a ValueError) because schema-valid documents reach this check too, and
    # their loaders (scenarios, fault rules) report ScenarioErrors.
    if seconds > MAX_DURATION_SECONDS:
        raise ScenarioError(f"{value!r} is too long (at most {MAX_DURATION_SECONDS:.0f} seconds, "
                         "100 years)")
    return float(seconds)


_SCHEMA = yaml.safe_load(
    resources.files("fakeshift").joinpath("schemas/scenario.schema.yaml").read_text()
)
_VALIDATOR = Draft202012Validator(_SCHEMA, format_checker=FormatChecker())
# One account's fragment, as the control plane's seed call takes it.
_ACCOUNT_VALIDATOR = Draft202012Validator(
    {"$ref": "#/$defs/account", "$defs": _SCHEMA["$defs"]}, format_checker=FormatChecker()
)


def _check(validator: Draft202012Validator, document, source: str) -> None:
    found = list(itertools.islice(validator.iter_errors(document), MAX_REPORTED_PROBLEMS + 1))
    if not found:
        return
    shown = sorted(found[:MAX_REPORTED_PROBLEMS], key=lambda e: list(e.absolute_path))
    problems = "; ".join(f"{_where(e.absolute_path)}: {e.message}" for e in shown)
    if len(found) == 1:
        raise ScenarioError(f"{source}: {problems}")
    if len(found) > MAX_REPORTED_PROBLEMS:
        raise ScenarioError(f"{source}: more than {MAX_REPORTED_PROBLEMS} problems, "
                            f"the first {MAX_REPORTED_PROBLEMS}: {problems}")
    raise ScenarioError(f"{source}: {len(found)} problems: {problems}")


def check_account_fragment(fragment, source: str) -> None:
    """Validate one account's seed data (the `accounts[]` entry format)."""
    _check(_ACCOUNT_VALIDATOR, fragment, source)


def definition_validator(name: str) -> Draft202012Validator:
    """A validator for one of the schema's `$defs`, so the control plane and the CLI check fault
    rules and rate limits against the same definitions as scenario files."""
    return Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": _SCHEMA["$defs"]},
                                format_checker=FormatChecker())


def check_definition(validator: Draft202012Validator, document, source: str) -> None:
    _check(validator, document, source)


def _where(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


@dataclass(frozen=True)
class Scenario:
    source: str
    document: dict

    @classmethod
    def from_file(cls, path: str | Path) -> "Scenario":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read the scenario file: {exc}") from exc
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<scenario>") -> "Scenario":
        document = load_json_yaml(text, source)
        return cls.from_document(document if document is not None else {}, source)

    @classmethod
    def from_document(cls, document, source: str = "<scenario>") -> "Scenario":
        _check(_VALIDATOR, document, source)
        _check_chaos(document, source)
        # Checked here, not when applied: applying starts by clearing the current state.
        now = document.get("clock", {}).get("now")
        if now is not None:
            try:
                parse_iso(now)
            except ValueError as exc:
                raise ScenarioError(f"{source}: clock.now: {exc}") from exc
        return cls(source, document)

    def settings(self, base: Settings) -> Settings:
        overrides = self.document.get("settings", {})
        settings = Settings(**vars(base))
        if "deletion_delay" in overrides:
            settings.deletion_delay = parse_duration(overrides["deletion_delay"])
        if "group_delete_users_default" in overrides:
            settings.group_delete_users_default = overrides["group_delete_users_default"]
        return settings

    def apply(self, store: Store) -> None:
        """Build every account of the scenario into an (already cleared) store."""
        clock_spec = self.document.get("clock", {})
        apply_clock(store.clock, clock_spec)
        self._seed(store, lambda key: True)

    def apply_account(self, store: Store, name: str) -> None:
        """Build the scenario's entries for one account (absent from the store) into it."""
        self._seed(store, lambda key: key == name)

    def _seed(self, store: Store, wanted) -> None:
        for position, spec in enumerate(self.document.get("accounts", [])):
            if wanted(spec["key"]):
                with store.open(spec["key"]) as (account, now):
                    seed_account(account, now, spec, f"{self.source}: accounts[{position}]")


# ---- YAML, read as JSON -------------------------------------------------------------------------

_YAML_TAG = "tag:yaml.org,2002:"
# Valid as YAML (and JSON) escapes, but not text: they cannot be written out as UTF-8. JSON
# bodies are refused for them too (parsing.py).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# What each YAML type is, in the words of a refusal; other tags are named as they are written.
_KINDS = {"int": "a number", "float": "a number", "bool": "a boolean", "null": "null",
          "binary": "binary data (!!binary)", "merge": "a merge key (<<)"}
# Its scalar methods keep no state, so one instance serves every thread.
_SCALARS = SafeConstructor()


class _NotJsonValue(Exception):
    """Raised where YAML reading stops; load_json_yaml makes it a ScenarioError naming the
    entry, as only it knows the source."""

    def __init__(self, path, problem: str):
        super().__init__(problem)
        self.path = [step for step in path if step is not None]
        self.problem = problem


def load_json_yaml(text: str, source: str):
    """The JSON value a YAML document writes, or a one-line ScenarioError naming the entry that
    is not one (e.g. `accounts[0].profiles[3].attributes.birthday: a date is not a JSON value;
    quote it`). None for an empty document."""
    loader = _JsonYamlLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _json_value(node, ())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from exc
    except _NotJsonValue as exc:
        raise ScenarioError(f"{source}: {_where(exc.path)}: {exc.problem}") from exc
    finally:
        loader.dispose()


class _JsonYamlLoader(yaml.SafeLoader):
    """Composes a YAML document's nodes, refusing anchors and aliases (an alias repeats a value
    without repeating its bytes: a few hundred bytes of "billion laughs" expand to gigabytes)
    and nesting deeper than a JSON body may have (the composer recurses once per level, so
    deep nesting would end in a RecursionError). It keeps the path of the entry it is
    composing, so a refusal names the entry."""

    def __init__(self, text: str):
        super().__init__(text)
        self.path: list = []
        self.depth = 0

    def compose_node(self, parent, index):
        # A sequence item's index, a mapping value's key; None for the root and mapping keys.
        self.path.append(index.value if isinstance(index, ScalarNode) else
                         index if isinstance(index, int) else None)
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _NotJsonValue(self.path, f"YAML aliases (*{event.anchor}) are not allowed in "
                                           "a scenario; write the value out")
        if event.anchor is not None:
            raise _NotJsonValue(self.path, f"YAML anchors (&{event.anchor}) are not allowed in "
                                           "a scenario; write the value out")
        collection = isinstance(event, yaml.CollectionStartEvent)
        if collection:
            self.depth += 1
            if self.depth > MAX_JSON_DEPTH:
                raise _NotJsonValue(self.path,
                                    f"nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        node = super().compose_node(parent, index)
        if collection:
            self.depth -= 1
        self.path.pop()
        return node


def _json_value(node, path: tuple):
    """The JSON value of a composed node (nesting is bounded by the loader: recursion is safe)."""
    if isinstance(node, ScalarNode):
        return _json_scalar(node, path)
    if isinstance(node, SequenceNode) and node.tag == _YAML_TAG + "seq":
        return [_json_value(item, (*path, n)) for n, item in enumerate(node.value)]
    if isinstance(node, MappingNode) and node.tag == _YAML_TAG + "map":
        mapping = {}
        for key_node, value_node in node.value:
            key = _json_key(key_node, path)
            if key in mapping:
                raise _NotJsonValue(path, f"the key {key!r} appears twice")
            mapping[key] = _json_value(value_node, (*path, key))
        return mapping
    raise _NotJsonValue(path, f"{_kind(node)} is not a JSON value")


def _json_scalar(node: ScalarNode, path: tuple):
    tag, text = node.tag.removeprefix(_YAML_TAG), node.value
    if tag == "str":
        if _LONE_SURROGATE.search(text):
            raise _NotJsonValue(path, "contains a lone UTF-16 surrogate (\\ud800-\\udfff), "
                                      "which is not text")
        return text
    if tag == "null":
        return None
    if tag == "bool":
        return _SCALARS.construct_yaml_bool(node)
    if tag == "int":
        try:
            return _SCALARS.construct_yaml_int(node)
        except ValueError as exc:  # past int()'s digit limit, as JSON bodies are refused
            raise _NotJsonValue(path, f"the number {_excerpt(text)} has too many digits (at "
                                      f"most {sys.get_int_max_str_digits()})") from exc
    if tag == "float":
        value = _SCALARS.construct_yaml_float(node)
        if not math.isfinite(value):
            raise _NotJsonValue(path, f"{_excerpt(text)} is not a JSON value (JSON numbers "
                                      "are finite)")
        return value
    if tag == "timestamp":
        raise _NotJsonValue(path, f"{_kind(node)} is not a JSON value; quote it")
    raise _NotJsonValue(path, f"{_kind(node)} is not a JSON value")


def _json_key(node, path: tuple) -> str:
    if not isinstance(node, ScalarNode):
        raise _NotJsonValue(path, "a key must be a string, not a sequence or mapping")
    if node.tag != _YAML_TAG + "str":
        raise _NotJsonValue(path, f"the key {_excerpt(node.value)!r} is {_kind(node)}, not a "
                                  "string; quote it")
    return _json_scalar(node, path)


def _kind(node) -> str:
    tag = node.tag.removeprefix(_YAML_TAG)
    if tag == "timestamp":
        written = SafeConstructor.timestamp_regexp.match(node.value)
        return "a timestamp" if written and written.group("hour") else "a date"
    return _KINDS.get(tag, f"a value tagged {_excerpt(node.tag.replace(_YAML_TAG, '!!'))}")


def _excerpt(text: str) -> str:
    """The start of a long text: refusals quote what they refuse, and it may be megabytes."""
    return text if len(text) <= 40 else text[:40] + "..."


def _check_chaos(document: dict, source: str) -> None:
    """What the schema cannot say about fault rules (known operations, regexes, ranges)."""
    # Imported here because the faults module builds on this one (durations, definitions).
    from .faults import FaultSpecError, compile_rule

    for position, rule in enumerate(document.get("faults", [])):
        try:
            compile_rule(rule, f"faults[{position}]")
        except FaultSpecError as exc:
            raise ScenarioError(f"{source}: {exc}") from exc


def apply_clock(clock: VirtualClock, spec: dict) -> None:
    if "now" in spec:
        clock.set(parse_iso(spec["now"]))
    if spec.get("frozen"):
        clock.freeze()


@contextmanager
def _guard(where: str):
    """Turn a domain refusal met while seeding into a ScenarioError that says where."""
    try:
        yield
    except BlueshiftError as exc:
        raise ScenarioError(f"{where}: {_describe(exc)}") from exc
    except ValueError as exc:  # e.g. a created_at outside the clock's range
        raise ScenarioError(f"{where}: {exc}") from exc


def _describe(exc: BlueshiftError) -> str:
    if "errors" in exc.body:
        return "; ".join(f"{k} {' '.join(v)}" for k, v in exc.body["errors"].items())
    return exc.body.get("message", str(exc.body))


def _created_at(spec: dict) -> datetime | None:
    return parse_iso(spec["created_at"]) if "created_at" in spec else None


def seed_account(account: Account, now: datetime, spec: dict, where: str) -> dict:
    """Seed one account from a scenario fragment (also used by the control plane).

    Returns the uuids it created, so a caller can refer to the new profiles."""
    created: list[str] = []
    if "deletion_delay" in spec:
        account.deletion_delay = parse_duration(spec["deletion_delay"])
    for i, profile_spec in enumerate(spec.get("profiles", [])):
        identifiers = {k: profile_spec[k] for k in IDENTIFIER_KINDS if k in profile_spec}
        count = profile_spec.get("count", 1)
        if "uuid" in profile_spec and count != 1:
            raise ScenarioError(f"{where}.profiles[{i}]: uuid and count > 1 exclude each other")
        with _guard(f"{where}.profiles[{i}]"):
            for _ in range(count):
                profile = account.new_profile(now, identifiers, profile_spec.get("attributes"),
                                              _created_at(profile_spec), profile_spec.get("uuid"))
                created.append(profile.uuid)
    for i, generator in enumerate(spec.get("generate", [])):
        with _guard(f"{where}.generate[{i}]"):
            created.extend(_generate(account, now, generator))
    for identifiers in spec.get("suppressed", []):
        account.forget(now, identifiers)
    for i, list_spec in enumerate(spec.get("lists", [])):
        _seed_list(account, now, list_spec, f"{where}.lists[{i}]")
    for i, group_spec in enumerate(spec.get("groups", [])):
        _seed_group(account, now, group_spec, f"{where}.groups[{i}]")
    return {"created": len(created), "uuids": created}


def _generate(account: Account, now: datetime, generator: dict) -> list[str]:
    start = generator.get("start", 1)
    templates = {k: generator[k] for k in ("email", "customer_id") if k in generator}
    attributes = generator.get("attributes")
    uuids = []
    for n in range(start, start + generator["count"]):
        number = str(n)
        identifiers = {k: t.replace("{n}", number) for k, t in templates.items()}
        uuids.append(account.new_profile(now, identifiers, attributes).uuid)
    return uuids


def _seed_list(account: Account, now: datetime, spec: dict, where: str) -> None:
    with _guard(where):
        custom_list = account.create_list(now, spec["name"], spec.get("description", ""),
                                          spec.get("source", "email"), False, spec.get("id"))
    for j, value in enumerate(spec.get("members", [])):
        with _guard(f"{where}.members[{j}]"):
            account.add_to_list(now, custom_list.id, custom_list.source, value)


def _seed_group(account: Account, now: datetime, spec: dict, where: str) -> None:
    user_uuids = []
    for j, member in enumerate(spec.get("members", [])):
        ((kind, value),) = member.items()
        if kind == "uuid":
            user_uuids.append(value)
            continue
        matches = account.active_matches({kind: value})
        if not matches:
            raise ScenarioError(f"{where}.members[{j}]: no profile has {kind} {value!r}")
        user_uuids.append(matches[0].uuid)
    with _guard(where):
        account.seed_group(now, spec["group_id"], spec.get("attributes", {}), user_uuids)
