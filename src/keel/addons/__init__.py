"""Add-ons a project turns on in keel.yaml: the queue (``keel.addons.queue``)."""
