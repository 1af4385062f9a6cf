"""`keel data list|show|history|sql` against a real store."""

from __future__ import annotations

import pandas as pd

import keel.data
from keel_testing import run_cli


def test_list_show_history_and_sql(keel_home):
    keel.data.save("weather", pd.DataFrame({"city": ["paris", "oslo"], "temp": [21.5, 9.0]}))
    keel.data.save("weather", pd.DataFrame({"city": ["rome"], "temp": [25.0]}), mode="append")
    listing = run_cli("data", "list")
    assert listing.returncode == 0 and "weather" in listing.stdout and " 3 " in listing.stdout
    shown = run_cli("data", "show", "weather", "--version", "1", "--limit", "1")
    assert shown.returncode == 0, shown.stderr
    assert "weather@1: 2 rows" in shown.stdout and "city string, temp double" in shown.stdout
    assert "paris" in shown.stdout and "oslo" not in shown.stdout
    history = run_cli("data", "history", "weather")
    assert "append to @1" in history.stdout
    out = run_cli("data", "sql", "SELECT city FROM weather ORDER BY temp DESC")
    assert out.returncode == 0 and out.stdout.split().index("rome") < out.stdout.split().index("paris")


def test_an_unknown_table_exits_2_with_one_line(keel_home):
    out = run_cli("data", "show", "nope")
    assert out.returncode == 2
    assert out.stderr.strip() == ("keel: no table 'nope' in the Data Engine (tables: none yet). "
                                  "Save one with current.data.save('nope', df)")


def test_a_bad_query_exits_1_without_a_traceback(keel_home):
    keel.data.save("t", pd.DataFrame({"x": [1]}))
    out = run_cli("data", "sql", "SELECT y FROM t")
    assert out.returncode == 1 and "SQL failed" in out.stderr and "Traceback" not in out.stderr
