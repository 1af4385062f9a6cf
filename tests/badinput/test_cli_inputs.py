"""Bad input on the command line: a one-line message, exit 2 (usage) or 1, never a traceback,
and nothing stored changed."""

from __future__ import annotations

import os

import pytest

from keel_testing import assert_clean_error, run_cli, store_digest

HUGE = "99999999999999999999"  # above 2**63: no database column holds it


@pytest.mark.parametrize("args", [
    ("show", f"LinearFlow/{HUGE}"),
    ("export", f"LinearFlow/{HUGE}"),
    ("logs", f"LinearFlow/{HUGE}/start"),
    ("tag", f"LinearFlow/{HUGE}", "x"),
    ("compare", "LinearFlow/1", f"LinearFlow/{HUGE}"),
])
def test_an_id_above_2_63_is_a_usage_error_in_every_command(one_run, args):
    before = store_digest(one_run)
    proc = run_cli(*args, env={"KEEL_HOME": str(one_run)})
    assert_clean_error(proc, 2, "is out of range")
    assert store_digest(one_run) == before


@pytest.mark.parametrize("args", [
    ("runs", "--limit", HUGE),
    ("data", "show", "scores", "--version", HUGE),
    ("queue", "peek", "jobs", "--limit", HUGE),
])
def test_a_count_or_version_above_2_63_is_a_usage_error(one_run, args):
    before = store_digest(one_run)
    proc = run_cli(*args, env={"KEEL_HOME": str(one_run)})
    assert_clean_error(proc, 2, "is not in the range 1<=x<=9223372036854775807")
    assert store_digest(one_run) == before


def test_a_non_ascii_digit_is_not_an_id(one_run):
    proc = run_cli("show", "LinearFlow/²", env={"KEEL_HOME": str(one_run)})
    assert_clean_error(proc, 2, "must be an integer")


@pytest.mark.parametrize("where, words", [
    (" or ".join(["params.a = 1"] * 3000), "characters long"),
    (" or ".join(["id = 1"] * 501), "more than 500 comparisons"),
    ("(" * 3000 + "id = 1" + ")" * 3000, "nests more than 50 levels"),
    ("not " * 3000 + "id = 1", "nests more than 50 levels"),
])
def test_a_huge_or_deep_where_is_a_clear_query_error(one_run, where, words):
    proc = run_cli("runs", "--where", where, env={"KEEL_HOME": str(one_run)})
    assert_clean_error(proc, 2, "bad query", words)
    assert len(proc.stderr) < 600  # the query is shown around the mistake, not whole


def test_export_refuses_a_folder_a_missing_folder_and_an_existing_file(one_run, tmp_path):
    env = {"KEEL_HOME": str(one_run)}
    assert_clean_error(run_cli("export", "LinearFlow/1", "-o", str(tmp_path), env=env), 2, "that is a folder")
    assert_clean_error(run_cli("export", "LinearFlow/1", "-o", str(tmp_path / "no" / "x.json"), env=env), 2,
                       "does not exist")
    target = tmp_path / "run.json"
    target.write_text("keep me")
    assert_clean_error(run_cli("export", "LinearFlow/1", "-o", str(target), env=env), 2, "--force")
    assert target.read_text() == "keep me"
    proc = run_cli("export", "LinearFlow/1", "-o", str(target), "--force", env=env)
    assert proc.returncode == 0, proc.stderr
    assert '"LinearFlow/1"' in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # no temporary file left behind


def test_export_dash_means_standard_output(one_run, tmp_path):
    proc = run_cli("export", "LinearFlow/1", "-o", "-", cwd=tmp_path, env={"KEEL_HOME": str(one_run)})
    assert proc.returncode == 0 and '"LinearFlow/1"' in proc.stdout
    assert not (tmp_path / "-").exists()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_export_to_a_full_disk_fails_with_a_message(one_run):
    proc = run_cli("export", "LinearFlow/1", "-o", "/dev/full", "--force", env={"KEEL_HOME": str(one_run)})
    assert_clean_error(proc, 1, "the disk is full")


@pytest.mark.parametrize("home", ["/dev/null", "/dev/null/sub"])
def test_a_keel_home_that_is_not_a_folder_is_a_usage_error(home, tmp_path):
    for args in (("runs",), ("show", "LinearFlow/1")):
        proc = run_cli(*args, cwd=tmp_path, env={"KEEL_HOME": home})
        assert_clean_error(proc, 2, "not a folder", "KEEL_HOME")


@pytest.mark.parametrize("args, words", [
    (("runs", "--limit", "0"), "--limit"),
    (("runs", "--limit", "-3"), "--limit"),
    (("runs", "LinearFlow", "extra"), "unexpected extra argument"),
    (("compare", "LinearFlow/1", "LinearFlow/1", "--json", "--csv"), "choose one of --json and --csv"),
])
def test_contradictory_or_empty_options_are_usage_errors(one_run, args, words):
    assert_clean_error(run_cli(*args, env={"KEEL_HOME": str(one_run)}), 2, words)


def test_a_mysql_metadata_url_is_refused_with_what_works(tmp_path):
    proc = run_cli("runs", cwd=tmp_path, env={"KEEL_METADATA_URL": "mysql://u@127.0.0.1/x"})
    assert_clean_error(proc, 2, "SQLite or PostgreSQL")
