"""The endpoints: section of keel.yaml: checked with file and line, like jobs."""

from __future__ import annotations

import textwrap

import pytest

from keel.errors import ProjectError
from keel.flow.project import load_project


def _write(tmp_path, text: str):
    path = tmp_path / "keel.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return str(path)


def test_endpoints_are_read_with_default_ports(tmp_path):
    project = load_project(_write(tmp_path, """
        name: demo
        endpoints:
          - name: churn
            flow: Train
          - name: score
            flow: Score
            artifact: clf
            port: 9100
    """))
    assert list(project.endpoints) == ["churn", "score"]
    assert project.endpoints["churn"].artifact == "model" and project.endpoint_port("churn") == 8000
    assert project.endpoints["score"].artifact == "clf" and project.endpoint_port("score") == 9100


def test_every_endpoint_mistake_is_reported_with_its_line(tmp_path):
    path = _write(tmp_path, """
        name: demo
        jobs:
          - name: train
            entrypoint: python train.py
        endpoints:
          - name: churn
            flow: flows/train.py
            port: 8000
          - name: churn
            flow: Train
          - name: other
            flow: Train
            prot: 9000
          - name: again
            flow: Train
            port: 8000
          - name: big
            flow: Train
            port: 70000
    """)
    with pytest.raises(ProjectError) as info:
        load_project(path)
    text = str(info.value)
    assert "keel.yaml:7: endpoint 'churn': flow: is the flow's class name (e.g. Train), not a file" in text
    assert "keel.yaml:9: endpoint 'churn' is defined twice" in text
    assert "keel.yaml:13: endpoint 'other': unknown key 'prot'. Did you mean 'port'?" in text
    assert "keel.yaml:16: endpoint 'again': port 8000 is also the port of endpoint 'churn'" in text
    assert "keel.yaml:19: endpoint 'big': port" in text
