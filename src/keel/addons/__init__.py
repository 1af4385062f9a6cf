"""Add-ons a project job or a flow step can ask for: a Spark cluster (``spark``), a queue."""
