"""`--with ray` joins the cluster the user names; one merely found on the machine only with 'auto'."""

from __future__ import annotations

import pytest

from keel.errors import ExecutorError
from keel.runtime.placement import ray_address, ray_address_source


def test_no_address_means_none_given(monkeypatch):
    monkeypatch.delenv("KEEL_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_address(None) == ""
    assert ray_address("auto") == "auto"
    assert "automatically" in ray_address_source("auto")
    monkeypatch.setenv("KEEL_RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_address(None) == "10.0.0.5:6379" and ray_address_source(None) == "from KEEL_RAY_ADDRESS"


def test_connect_without_an_address_refuses_and_says_how(monkeypatch):
    pytest.importorskip("ray")
    from keel.runtime.executors.ray import connect

    monkeypatch.delenv("KEEL_RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(ExecutorError, match="address=auto"):
        connect(None)
