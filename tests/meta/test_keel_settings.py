"""keel.settings: one reader of the KEEL_* variables, documented in one table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import keel
from keel.errors import SettingsError
from keel.settings import VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_hang_off_keel_home(tmp_path: Path) -> None:
    s = Settings.from_env({"KEEL_HOME": str(tmp_path)})
    assert s.home == tmp_path
    assert s.metadata_url == f"sqlite:///{tmp_path / 'metadata.db'}"
    assert s.artifact_url == str(tmp_path / "artifacts")
    assert (s.heartbeat_seconds, s.crash_after_seconds, s.system_metrics) == (2.0, 6.0, True)


def test_variables_override_and_crash_after_follows_the_heartbeat() -> None:
    s = Settings.from_env({"KEEL_HEARTBEAT_SECONDS": "0.5", "KEEL_SYSTEM_METRICS": "0", "KEEL_USER": "ada"})
    assert (s.heartbeat_seconds, s.crash_after_seconds, s.system_metrics, s.user) == (0.5, 1.5, False, "ada")


def test_switches_read_on_and_off_words() -> None:
    s = Settings.from_env({"KEEL_CACHE": "off", "KEEL_FORK_SERVER": "1", "KEEL_READ_ONLY": "yes"})
    assert (s.cache, s.fork_server, s.read_only) == (False, "on", True)
    assert (Settings.from_env({}).cache, Settings.from_env({}).fork_server) == (True, "auto")


def test_a_bad_switch_names_the_variable_and_its_default() -> None:
    with pytest.raises(SettingsError, match=r"KEEL_CACHE='maybe': expected 1 \(on, the default\) or 0 \(off\)"):
        Settings.from_env({"KEEL_CACHE": "maybe"})


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(SettingsError, match=r"KEEL_HEARTBEAT_SECONDS='soon': expected a positive number"):
        Settings.from_env({"KEEL_HEARTBEAT_SECONDS": "soon"})


def test_every_field_has_a_variable() -> None:
    assert set(Settings.variables()) == set(VARIABLES)


def test_no_keel_variable_is_read_outside_settings() -> None:
    """Only keel/settings.py reads user settings; the rest read the task identity Keel sets."""
    task_identity = {"KEEL_FLOW_NAME", "KEEL_RUN_ID", "KEEL_STEP_NAME", "KEEL_TASK_ID", "KEEL_RETRY_COUNT",
                     "KEEL_METRICS_PATH", "KEEL_TAGS_PATH", "KEEL_INSTANCE", "KEEL_INSTANCES",
                     "KEEL_PROJECT", "KEEL_JOB", "KEEL_PROJECT_RUN", "KEEL_SPARK_MASTER", "KEEL_SPARK_UI",
                     "KEEL_SPARK_CONF", "KEEL_RECORD_READS"}
    read = re.compile(r"""(?:environ\.get|getenv|environ\[)\(?\s*["'](KEEL_[A-Z_]+)["']""")
    offenders = []
    for path in Path(keel.__file__).parent.rglob("*.py"):
        if path.name == "settings.py":
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for var in read.findall(line):
                if var not in task_identity:
                    offenders.append(f"{path.name}:{n}: {var}")
    assert offenders == [], "read these through keel.settings.Settings: " + ", ".join(offenders)


def test_the_readme_table_lists_every_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [v for v in VARIABLES.values() if f"`{v}`" not in readme]
    assert missing == []


def test_runs_comments_and_the_client_name_one_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from keel.runtime.context import username
    from keel.store.runs import user_name

    monkeypatch.delenv("KEEL_USER", raising=False)
    monkeypatch.setenv("METAFLOW_USER", "grace")
    assert (user_name(), username()) == ("grace", "grace")
    monkeypatch.setenv("KEEL_USER", "ada")
    assert (user_name(), username()) == ("ada", "ada")
