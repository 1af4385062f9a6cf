"""Experiment tracking beyond the basics: search (``query``), system metrics (``sysmetrics``),
comments, sweeps, code snapshots and reproduction, export. Everything reads and writes
through ``keel.store``.
"""
