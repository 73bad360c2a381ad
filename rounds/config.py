"""Configuration: one TOML file over the embedded defaults, key by key, then the environment.

The embedded defaults are ``config.example.toml`` (shipped in the package as
``defaults.toml``), so the documented file and the defaults cannot drift apart.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "ROUNDS_"
DEFAULT_CONFIG_FILE = "rounds.toml"

Role = Literal["staff", "engineer", "manager", "admin", "vendor"]
Priority = Literal["P1", "P2", "P3", "P4"]
Impact = Literal["I1", "I2", "I3", "I4"]
Urgency = Literal["U1", "U2", "U3"]
PERSON_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
WEEK_MINUTES = 7 * 24 * 60
YEAR_HOURS = 366 * 24


class ConfigError(Exception):
    """A configuration that Rounds refuses to start with; the message names file and key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoundsSection(_Section):
    database_url: str
    data_dir: Path
    timezone: str
    language: Literal["zh", "en"]
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
            ) from None
        return value


class HttpSection(_Section):
    listen: str

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r} is not host:port, e.g. 127.0.0.1:8080")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SlackSection(_Section):
    enabled: bool
    mode: Literal["socket", "http"]
    bot_token: str
    app_token: str
    signing_secret: str
    api_url: str
    command: str
    stale_seconds: Annotated[float, Field(ge=10, le=86400, allow_inf_nan=False)]

    @field_validator("command")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not re.fullmatch(r"/[a-z0-9_-]{1,31}", value):
            raise ValueError(f"{value!r} is not a slash command such as /rounds")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> SlackSection:
        if not self.enabled:
            return self
        missing = [
            k
            for k in (
                "bot_token",
                *(("signing_secret",) if self.mode == "http" else ("app_token",)),
            )
            if not getattr(self, k)
        ]
        if missing:
            raise ValueError(
                f"[slack] {self.mode} mode needs {', '.join(missing)} (set "
                f"ROUNDS_SLACK_{missing[0].upper()} in the environment)"
            )
        return self


class TelegramSection(_Section):
    enabled: bool
    token: str
    mode: Literal["polling", "webhook"]
    base_url: str
    base_file_url: str
    webhook_url: str
    webhook_secret: str
    poll_seconds: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)]
    max_photo_bytes: Annotated[int, Field(ge=10_000, le=20_000_000)]

    @model_validator(mode="after")
    def _credentials(self) -> TelegramSection:
        if not self.enabled:
            return self
        if not self.token:
            raise ValueError("[telegram] needs token (set ROUNDS_TELEGRAM_TOKEN)")
        if self.mode == "webhook" and not (self.webhook_url and self.webhook_secret):
            raise ValueError("[telegram] webhook mode needs webhook_url and webhook_secret")
        if self.webhook_secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", self.webhook_secret):
            raise ValueError("[telegram] webhook_secret may hold only A-Z, a-z, 0-9, _ and -")
        return self


class ChannelAddress(_Section):
    slack: str | None = None
    telegram: str | int | None = None


class PersonEntry(_Section):
    name: str
    display: str = ""
    roles: list[Role] = Field(default_factory=lambda: ["staff"])
    slack: str | None = None
    telegram: int | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not PERSON_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a person name: use lower-case letters, digits, "
                "dots, dashes or underscores, such as eng.wang"
            )
        return value

    @field_validator("roles")
    @classmethod
    def _some_role(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("a person needs at least one role")
        return value


class OncallSection(_Section):
    rotation: list[str]
    handover: str | list[str]
    start: date

    @property
    def handover_times(self) -> list[time]:
        raw = [self.handover] if isinstance(self.handover, str) else self.handover
        return sorted(time.fromisoformat(t) for t in raw)

    @field_validator("handover")
    @classmethod
    def _times(cls, value: str | list[str]) -> str | list[str]:
        raw = [value] if isinstance(value, str) else value
        if not raw:
            raise ValueError('give at least one handover time, such as "08:00"')
        for item in raw:
            if not re.fullmatch(r"\d{2}:\d{2}", item):
                raise ValueError(f"{item!r} is not a time of day HH:MM")
            time.fromisoformat(item)
        if len(set(raw)) != len(raw):
            raise ValueError("handover times repeat")
        return value


class EscalationSection(_Section):
    ack_minutes: dict[
        Priority, Annotated[float, Field(gt=0, le=WEEK_MINUTES, allow_inf_nan=False)]
    ]
    check_seconds: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)]


class IncidentsSection(_Section):
    max_text: Annotated[int, Field(ge=200, le=100_000)]
    list_limit: Annotated[int, Field(ge=1, le=200)]
    auto_close_hours: Annotated[float, Field(ge=0, le=YEAR_HOURS, allow_inf_nan=False)]


class OutboxSection(_Section):
    keep_days: Annotated[float, Field(ge=1, le=3650, allow_inf_nan=False)]


class FormsSection(_Section):
    expire_minutes: Annotated[float, Field(gt=0, le=WEEK_MINUTES, allow_inf_nan=False)]


class SystemEntry(_Section):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    display: str = ""


class MaskPattern(_Section):
    name: str
    regex: str

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class PrivacySection(_Section):
    patterns: list[MaskPattern]


class PriorityRule(_Section):
    name: str
    keywords: list[str]
    also_keywords: list[str] = Field(default_factory=list)
    impact: Impact | None = None
    urgency: Urgency | None = None
    min_priority: Priority | None = None
    major: bool = False
    system: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    location: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @field_validator("keywords")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value or any(not k.strip() for k in value):
            raise ValueError("a rule needs keywords, none of them empty")
        return value


class PrioritySection(_Section):
    default_impact: Impact
    default_urgency: Urgency
    rules: list[PriorityRule]


class Config(_Section):
    rounds: RoundsSection
    http: HttpSection
    slack: SlackSection
    telegram: TelegramSection
    channels: dict[str, ChannelAddress]
    people: list[PersonEntry]
    oncall: OncallSection
    escalation: EscalationSection
    incidents: IncidentsSection
    forms: FormsSection
    outbox: OutboxSection
    systems: Annotated[list[SystemEntry], Field(min_length=1)]
    privacy: PrivacySection
    priority: PrioritySection

    source: str = "embedded defaults"

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        names = [p.name for p in self.people]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"[[people]] lists {name!r} twice")
            seen.add(name)
        systems = [s.name for s in self.systems]
        for name in systems:
            if systems.count(name) > 1:
                raise ValueError(f"[[systems]] lists {name!r} twice")
        by_name = {p.name: p for p in self.people}
        for name in self.oncall.rotation:
            person = by_name.get(name)
            if person is None:
                raise ValueError(f"[oncall] rotation names {name!r}, who is not in [[people]]")
            if not {"engineer", "manager", "admin"} & set(person.roles):
                raise ValueError(f"[oncall] rotation names {name!r}, who is not an engineer")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.rounds.timezone)

    @property
    def database_url(self) -> str:
        if self.rounds.database_url:
            return self.rounds.database_url
        return f"sqlite:///{(self.rounds.data_dir / 'rounds.db').as_posix()}"


def _defaults_text() -> str:
    return resources.files("rounds").joinpath("defaults.toml").read_text(encoding="utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge tables key by key; any other value, arrays of tables included, replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _env_overrides(environ: dict[str, str], sections: set[str]) -> tuple[dict, dict[tuple, str]]:
    overrides: dict[str, dict[str, Any]] = {}
    origin: dict[tuple, str] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var == "ROUNDS_CONFIG":
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections or not key:
            continue
        overrides.setdefault(section, {})[key] = _env_value(raw)
        origin[(section, key)] = var
    return overrides, origin


def _describe(loc: tuple, origin: dict[tuple, str], source: str, message: str) -> str:
    parts = [str(p) for p in loc]
    where = source
    if len(parts) >= 2 and (parts[0], parts[1]) in origin:
        where = f"environment variable {origin[(parts[0], parts[1])]}"
    if not parts:
        # A check across sections names them in its message, as in "[oncall] rotation".
        named = [
            var
            for (section, key), var in origin.items()
            if f"[{section}] {key}" in message or f"[[{section}]]" in message
        ]
        return f"environment variable {named[0]}" if named else where
    section, rest = parts[0], parts[1:]
    # Arrays of tables are named by their entry, counted from 1 as people count.
    arrays = {
        ("people",): "[[people]]",
        ("systems",): "[[systems]]",
        ("privacy", "patterns"): "[privacy] patterns",
        ("priority", "rules"): "[[priority.rules]]",
    }
    for prefix, label in arrays.items():
        n = len(prefix) - 1
        if (section, *rest[:n]) == prefix and len(rest) > n and rest[n].isdigit():
            more = rest[n + 1 :]
            key = f"{label} entry {int(rest[n]) + 1}" + (f" {'.'.join(more)}" if more else "")
            break
    else:
        key = f"[{section}]" + (f" {'.'.join(rest)}" if rest else "")
    return f"{where}: {key}"


def load_config(
    path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Load the configuration; raise ConfigError with one clear sentence when it is wrong."""
    environ = dict(os.environ if environ is None else environ)
    explicit = path is not None or "ROUNDS_CONFIG" in environ
    file = Path(path if path is not None else environ.get("ROUNDS_CONFIG", DEFAULT_CONFIG_FILE))

    data = tomllib.loads(_defaults_text())
    source = "embedded defaults"
    if file.exists():
        source = str(file)
        try:
            user = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot be read: {exc}") from None
        data = _merge(data, user)
    elif explicit:
        raise ConfigError(f"{file}: no such configuration file")

    overrides, origin = _env_overrides(environ, set(Config.model_fields) - {"source"})
    data = _merge(data, overrides)
    data["source"] = source
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        where = _describe(tuple(error["loc"]), origin, source, message)
        if error["type"] == "extra_forbidden":
            message = "unknown key (see config.example.toml for the keys Rounds knows)"
        more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {message}{more}") from None
