"""Configuration: embedded defaults, then one TOML file key by key, then the environment."""

from __future__ import annotations

import tomllib
from datetime import date
from importlib import resources
from pathlib import Path

import pytest

from rounds.config import (
    Config,
    ConfigError,
    EscalationSection,
    FormsSection,
    HttpSection,
    IncidentsSection,
    MaskPattern,
    OncallSection,
    PersonEntry,
    PriorityRule,
    PrioritySection,
    PrivacySection,
    RoundsSection,
    SystemEntry,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"
SAMPLE_PEOPLE = ["nurse.li", "eng.wang", "eng.zhao", "mgr.chen", "vendor.sun"]
TWO_ENGINEERS = """
[[people]]
name = "eng.li"
roles = ["engineer"]

[[people]]
name = "eng.ma"
display = "马工"
roles = ["engineer"]
"""


def write(tmp_path: Path, text: str, name: str = "rounds-test.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def refused(path: Path | None, environ: dict[str, str] | None = None) -> str:
    """Load a configuration that must be refused; return the one-sentence message."""
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def settings(config: Config) -> dict:
    return config.model_dump(exclude={"source"})


@pytest.fixture
def defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.chdir(tmp_path)
    return load_config(None, environ={})


# --- the embedded defaults and the documented example --------------------------------------


def test_embedded_defaults_load_with_no_file_and_an_empty_environment(defaults):
    assert defaults.source == "embedded defaults"
    assert defaults.rounds.language == "zh"
    assert defaults.rounds.timezone == "Asia/Shanghai"
    assert defaults.http.listen == "127.0.0.1:8080"
    assert (defaults.http.host, defaults.http.port) == ("127.0.0.1", 8080)
    assert [p.name for p in defaults.people] == SAMPLE_PEOPLE
    assert defaults.oncall.rotation == ["eng.wang", "eng.zhao"]
    assert defaults.oncall.start == date(2026, 1, 5)
    assert defaults.escalation.ack_minutes == {"P1": 5, "P2": 15, "P3": 30, "P4": 240}
    assert defaults.database_url == "sqlite:///data/rounds.db"


def test_config_example_is_the_shipped_defaults_file():
    shipped = resources.files("rounds").joinpath("defaults.toml").read_text(encoding="utf-8")

    assert EXAMPLE.read_text(encoding="utf-8") == shipped


def test_config_example_loads_and_equals_the_embedded_defaults(defaults):
    example = load_config(EXAMPLE, environ={})

    assert example.source == str(EXAMPLE)
    assert settings(example) == settings(defaults)


@pytest.mark.parametrize(
    ("section", "model"),
    [
        ("rounds", RoundsSection),
        ("http", HttpSection),
        ("oncall", OncallSection),
        ("escalation", EscalationSection),
        ("incidents", IncidentsSection),
        ("forms", FormsSection),
        ("privacy", PrivacySection),
        ("priority", PrioritySection),
    ],
)
def test_config_example_sets_every_key_of_a_section_and_no_other(section, model):
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))

    assert set(example[section]) == set(model.model_fields)


def test_config_example_documents_every_key_of_its_arrays_of_tables():
    example = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    rule_keys = {key for rule in example["priority"]["rules"] for key in rule}
    pattern_keys = {key for pattern in example["privacy"]["patterns"] for key in pattern}
    people_keys = {key for person in example["people"] for key in person}
    system_keys = {key for system in example["systems"] for key in system}

    assert rule_keys == set(PriorityRule.model_fields)
    assert system_keys == set(SystemEntry.model_fields)
    assert pattern_keys == set(MaskPattern.model_fields)
    assert people_keys <= set(PersonEntry.model_fields)
    assert set(example) == set(Config.model_fields) - {"source"}


def test_config_example_mentions_every_key_a_person_may_have():
    text = EXAMPLE.read_text(encoding="utf-8")
    people_part = text[text.index("# The people Rounds knows") : text.index("\n[oncall]\n")]

    for key in PersonEntry.model_fields:
        assert f"{key} =" in people_part, key


# --- a file overrides what it sets ----------------------------------------------------------


def test_file_overrides_only_the_keys_it_sets(tmp_path):
    path = write(tmp_path, "[escalation]\nack_minutes = { P1 = 2, P2 = 15, P3 = 30, P4 = 240 }\n")

    config = load_config(path, environ={})

    assert config.source == str(path)
    assert config.escalation.ack_minutes == {"P1": 2, "P2": 15, "P3": 30, "P4": 240}
    assert config.http.listen == "127.0.0.1:8080"
    assert config.rounds.language == "zh"
    assert [p.name for p in config.people] == SAMPLE_PEOPLE


def test_file_merges_a_section_key_by_key(tmp_path):
    path = write(tmp_path, '[rounds]\nlanguage = "en"\n')

    config = load_config(path, environ={})

    assert config.rounds.language == "en"
    assert config.rounds.timezone == "Asia/Shanghai"
    assert config.rounds.log_level == "INFO"


def test_people_in_a_file_replace_the_whole_sample_list(tmp_path):
    path = write(tmp_path, TWO_ENGINEERS + '\n[oncall]\nrotation = ["eng.li", "eng.ma"]\n')

    config = load_config(path, environ={})

    assert [p.name for p in config.people] == ["eng.li", "eng.ma"]
    assert config.people[1].display == "马工"
    assert config.oncall.rotation == ["eng.li", "eng.ma"]


def test_rotation_naming_someone_not_in_people_is_an_error(tmp_path):
    path = write(tmp_path, TWO_ENGINEERS)

    message = refused(path)

    assert str(path) in message
    assert "[oncall]" in message and "'eng.wang'" in message
    assert "not in [[people]]" in message


def test_rotation_naming_someone_who_is_not_an_engineer_is_an_error(tmp_path):
    path = write(tmp_path, '[oncall]\nrotation = ["nurse.li"]\n')

    message = refused(path)

    assert str(path) in message and "[oncall]" in message and "'nurse.li'" in message


def test_fractions_of_a_minute_are_allowed_in_ack_minutes(tmp_path):
    path = write(
        tmp_path, "[escalation]\nack_minutes = { P1 = 0.5, P2 = 15, P3 = 30, P4 = 240 }\n"
    )

    config = load_config(path, environ={})

    assert config.escalation.ack_minutes["P1"] == 0.5


def test_several_handover_times_are_allowed(tmp_path):
    path = write(tmp_path, '[oncall]\nhandover = ["20:00", "08:00"]\n')

    config = load_config(path, environ={})

    assert [t.isoformat() for t in config.oncall.handover_times] == ["08:00:00", "20:00:00"]


# --- which file ---------------------------------------------------------------------------


def test_rounds_toml_in_the_working_directory_is_read_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[http]\nlisten = "127.0.0.1:7001"\n', name="rounds.toml")

    config = load_config(None, environ={})

    assert config.source == "rounds.toml"
    assert config.http.listen == "127.0.0.1:7001"


def test_rounds_config_variable_selects_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, '[http]\nlisten = "127.0.0.1:7001"\n', name="rounds.toml")
    chosen = write(tmp_path, '[http]\nlisten = "127.0.0.1:7002"\n', name="chosen.toml")

    config = load_config(None, environ={"ROUNDS_CONFIG": str(chosen)})

    assert config.source == str(chosen)
    assert config.http.listen == "127.0.0.1:7002"


def test_a_path_given_explicitly_wins_over_rounds_config(tmp_path):
    given = write(tmp_path, '[http]\nlisten = "127.0.0.1:7003"\n', name="given.toml")
    other = write(tmp_path, '[http]\nlisten = "127.0.0.1:7004"\n', name="other.toml")

    config = load_config(given, environ={"ROUNDS_CONFIG": str(other)})

    assert config.http.listen == "127.0.0.1:7003"


def test_an_explicitly_given_file_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "missing.toml"

    message = refused(missing)

    assert str(missing) in message and "no such configuration file" in message


def test_a_file_named_by_rounds_config_that_does_not_exist_is_an_error(tmp_path):
    missing = tmp_path / "missing.toml"

    message = refused(None, {"ROUNDS_CONFIG": str(missing)})

    assert str(missing) in message and "no such configuration file" in message


# --- the environment ------------------------------------------------------------------------


def test_environment_overrides_defaults_and_file(tmp_path):
    path = write(tmp_path, '[http]\nlisten = "127.0.0.1:7000"\n[rounds]\ntimezone = "UTC"\n')
    environ = {
        "ROUNDS_HTTP_LISTEN": "127.0.0.1:9999",
        "ROUNDS_ROUNDS_LANGUAGE": "en",
        "ROUNDS_ESCALATION_ACK_MINUTES": "{ P1 = 1, P2 = 2, P3 = 3, P4 = 4 }",
    }

    config = load_config(path, environ=environ)

    assert config.http.listen == "127.0.0.1:9999"
    assert config.rounds.language == "en"
    assert config.rounds.timezone == "UTC"
    assert config.escalation.ack_minutes == {"P1": 1, "P2": 2, "P3": 3, "P4": 4}


def test_environment_values_are_read_as_toml_values_when_they_parse(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {
        "ROUNDS_INCIDENTS_LIST_LIMIT": "7",
        "ROUNDS_ONCALL_ROTATION": '["eng.zhao"]',
        "ROUNDS_ROUNDS_DATA_DIR": "/srv/rounds data",
    }

    config = load_config(None, environ=environ)

    assert config.incidents.list_limit == 7
    assert config.oncall.rotation == ["eng.zhao"]
    assert config.rounds.data_dir == Path("/srv/rounds data")


def test_an_error_in_an_environment_value_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    message = refused(None, {"ROUNDS_ROUNDS_LANGUAGE": "fr"})

    assert message.startswith("environment variable ROUNDS_ROUNDS_LANGUAGE: [rounds] language")
    assert "'zh' or 'en'" in message


def test_a_wrong_type_in_an_environment_table_names_the_variable(tmp_path):
    path = write(tmp_path, '[rounds]\nlanguage = "en"\n')
    environ = {"ROUNDS_ESCALATION_ACK_MINUTES": '{ P1 = "soon", P2 = 2, P3 = 3, P4 = 4 }'}

    message = refused(path, environ)

    assert "environment variable ROUNDS_ESCALATION_ACK_MINUTES" in message
    assert "ack_minutes.P1" in message and str(path) not in message


def test_an_unknown_key_in_the_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    message = refused(None, {"ROUNDS_HTTP_LISTNE": "127.0.0.1:1"})

    assert "environment variable ROUNDS_HTTP_LISTNE" in message and "unknown key" in message


def test_a_rotation_from_the_environment_naming_a_stranger_names_the_variable(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)

    message = refused(None, {"ROUNDS_ONCALL_ROTATION": '["eng.nobody"]'})

    assert "'eng.nobody'" in message
    assert "ROUNDS_ONCALL_ROTATION" in message


# --- files Rounds refuses ---------------------------------------------------------------------

BAD_FILES = {
    "invalid TOML": ('[rounds]\nlanguage = "en\n', ["not valid TOML", "line 2"]),
    "misspelt key": (
        '[rounds]\ndatabse_url = "sqlite://"\n',
        ["[rounds] databse_url", "unknown key"],
    ),
    "unknown section": ('[roundz]\nlanguage = "en"\n', ["[roundz]", "unknown key"]),
    "minutes as words": (
        '[escalation]\nack_minutes = { P1 = "soon", P2 = 15, P3 = 30, P4 = 240 }\n',
        ["[escalation] ack_minutes.P1", "valid number"],
    ),
    "negative minutes": (
        "[escalation]\nack_minutes = { P1 = -5, P2 = 15, P3 = 30, P4 = 240 }\n",
        ["[escalation] ack_minutes.P1", "greater than 0"],
    ),
    "zero minutes": (
        "[escalation]\nack_minutes = { P1 = 0, P2 = 15, P3 = 30, P4 = 240 }\n",
        ["[escalation] ack_minutes.P1", "greater than 0"],
    ),
    "unknown priority": (
        "[escalation]\nack_minutes = { P1 = 5, P2 = 15, P3 = 30, P4 = 240, P5 = 1 }\n",
        ["[escalation] ack_minutes.P5", "'P1', 'P2', 'P3' or 'P4'"],
    ),
    "language fr": ('[rounds]\nlanguage = "fr"\n', ["[rounds] language", "'zh' or 'en'"]),
    "unknown time zone": (
        '[rounds]\ntimezone = "Mars/Olympus"\n',
        ["[rounds] timezone", "unknown time zone 'Mars/Olympus'"],
    ),
    "log level": ('[rounds]\nlog_level = "LOUD"\n', ["[rounds] log_level", "'DEBUG'"]),
    "listen without host": (
        '[http]\nlisten = "8080"\n',
        ["[http] listen", "'8080' is not host:port"],
    ),
    "listen port too big": (
        '[http]\nlisten = "127.0.0.1:99999"\n',
        ["[http] listen", "is not host:port"],
    ),
    "person name with a space": (
        '[[people]]\nname = "eng.li"\nroles = ["engineer"]\n'
        '[[people]]\nname = "Eng Wang"\nroles = ["engineer"]\n',
        ["[[people]] entry 2 name", "'Eng Wang' is not a person name"],
    ),
    "person without roles": (
        '[[people]]\nname = "eng.li"\nroles = []\n',
        ["[[people]] entry 1 roles", "at least one role"],
    ),
    "unknown role": (
        '[[people]]\nname = "eng.li"\nroles = ["surgeon"]\n',
        ["[[people]] entry 1 roles", "'staff'"],
    ),
    "duplicate person": (
        '[[people]]\nname = "eng.wang"\nroles = ["engineer"]\n'
        '[[people]]\nname = "eng.wang"\nroles = ["manager"]\n'
        '[oncall]\nrotation = ["eng.wang"]\n',
        ["[[people]]", "'eng.wang' twice"],
    ),
    "privacy pattern that is no regular expression": (
        '[privacy]\npatterns = [{ name = "ward", regex = "(?P<id>\\\\d+" }]\n',
        ["[privacy] patterns", "regex", "not a valid regular expression"],
    ),
    "priority rule with impact I9": (
        '[[priority.rules]]\nname = "odd"\nkeywords = ["odd"]\nimpact = "I9"\n',
        ["[[priority.rules]] entry 1 impact", "'I1', 'I2', 'I3' or 'I4'"],
    ),
    "priority rule without keywords": (
        '[[priority.rules]]\nname = "empty"\nkeywords = [" "]\n',
        ["[[priority.rules]] entry 1 keywords", "none of them empty"],
    ),
    "handover 8am": (
        '[oncall]\nhandover = "8am"\n',
        ["[oncall] handover", "'8am' is not a time of day HH:MM"],
    ),
    "handover 25:00": ('[oncall]\nhandover = "25:00"\n', ["[oncall] handover", "hour"]),
    "repeated handover": (
        '[oncall]\nhandover = ["08:00", "08:00"]\n',
        ["[oncall] handover", "repeat"],
    ),
    "start that is no date": ('[oncall]\nstart = "monday"\n', ["[oncall] start", "date"]),
    "max_text too small": (
        "[incidents]\nmax_text = 10\n",
        ["[incidents] max_text", "greater than or equal to 200"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(BAD_FILES.values()), ids=list(BAD_FILES))
def test_a_bad_file_is_refused_naming_file_key_and_problem(tmp_path, text, expected):
    path = write(tmp_path, text)

    message = refused(path)

    assert message.startswith(f"{path}: ")
    for fragment in expected:
        assert fragment in message


def test_an_unknown_key_message_points_to_the_example(tmp_path):
    message = refused(write(tmp_path, "[http]\nport = 8080\n"))

    assert "config.example.toml" in message


def test_several_problems_are_counted_in_the_one_sentence(tmp_path):
    path = write(tmp_path, '[rounds]\nlanguage = "fr"\nlog_level = "LOUD"\n')

    message = refused(path)

    assert "[rounds] language" in message and "(and 1 more problem(s))" in message


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[rounds]\ntimezone = "Europe/Zürich"\n'.encode("latin-1"))

    message = refused(path)

    assert message.startswith(f"{path}: cannot be read")


def test_ack_minutes_missing_a_priority_keeps_the_default_for_it(tmp_path):
    config = load_config(write(tmp_path, "[escalation]\nack_minutes = { P1 = 2 }\n"), environ={})

    assert config.escalation.ack_minutes == {"P1": 2, "P2": 15, "P3": 30, "P4": 240}


def test_a_person_name_ending_in_a_newline_is_refused(tmp_path):
    path = write(
        tmp_path,
        '[[people]]\nname = "eng.wang\\n"\nroles = ["engineer"]\n'
        '[oncall]\nrotation = ["eng.wang\\n"]\n',
    )

    message = refused(path)

    assert "[[people]] entry 1 name" in message


UNUSABLE_SPANS = {
    "infinite ack minutes": (
        "[escalation]\nack_minutes = { P1 = inf, P2 = 15, P3 = 30, P4 = 240 }\n",
        "[escalation] ack_minutes.P1",
    ),
    "ack minutes beyond any date": (
        "[escalation]\nack_minutes = { P1 = 1e10, P2 = 15, P3 = 30, P4 = 240 }\n",
        "[escalation] ack_minutes.P1",
    ),
    "infinite auto-close hours": (
        "[incidents]\nauto_close_hours = inf\n",
        "[incidents] auto_close_hours",
    ),
}


@pytest.mark.parametrize(("text", "key"), list(UNUSABLE_SPANS.values()), ids=list(UNUSABLE_SPANS))
def test_a_span_too_long_for_a_date_is_refused(tmp_path, text, key):
    message = refused(write(tmp_path, text))

    assert key in message
