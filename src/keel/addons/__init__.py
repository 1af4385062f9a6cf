"""Add-ons a project job or a flow step can ask for: a Spark cluster (``keel.addons.spark``), a queue (``keel.addons.queue``)."""
