"""Schedules: ``keel scheduler`` fires a project's jobs at their cron times (see ``cron``)."""
