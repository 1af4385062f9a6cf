"""Alert rules as written in keel.yaml (``alerts:``) or in a ``KEEL_ALERTS`` file: the models
and their checks. Pure: pydantic only, no I/O (``keel.alerts`` evaluates and delivers them).

    alerts:
      - name: train-failed
        when: {event: failed, flow: Train}
        notify: [{webhook: "https://hooks.example/x", secret_env: HOOK_SECRET}, {email: ml@example.com}]
        cooldown: 10m
"""

from __future__ import annotations

import re

from contextvars import ContextVar
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

EVENTS = ("failed", "succeeded", "crashed", "retried", "running_longer_than", "missed_schedule", "metric")


# Set while a file's rules are checked: their cross-field problems are then reported one by one
# with lines (keel.flow.project), instead of as one ValueError.
_SKIP_RULE_CHECKS: ContextVar[bool] = ContextVar("_SKIP_RULE_CHECKS", default=False)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")

class When(_Model):
    """What makes a rule fire, and its scope (flow, project, job or step; all optional)."""

    event: Literal["failed", "succeeded", "crashed", "retried", "running_longer_than", "missed_schedule", "metric"]
    flow: StrictStr | None = None
    project: StrictStr | None = None
    job: StrictStr | None = None
    step: StrictStr | None = None
    hours: float | None = Field(None, gt=0, allow_inf_nan=False)    # a rule that can never fire is a mistake
    minutes: float | None = Field(None, gt=0, allow_inf_nan=False)
    seconds: float | None = Field(None, gt=0, allow_inf_nan=False)
    metric: StrictStr | None = None
    below: float | None = Field(None, allow_inf_nan=False)          # NaN compares false with every value
    above: float | None = Field(None, allow_inf_nan=False)
    agg: Literal["last", "min", "max"] = "last"
    consecutive: StrictInt = Field(1, ge=1)
    relative: StrictBool = False     # below/above apply to (v - previous) / |previous|

    @property
    def duration(self) -> float | None:
        """hours + minutes + seconds, or None when none is given."""
        parts = (self.hours, self.minutes, self.seconds)
        if all(p is None for p in parts):
            return None
        return (self.hours or 0) * 3600 + (self.minutes or 0) * 60 + (self.seconds or 0)


class Action(_Model):
    """One notification: exactly one of webhook, email or command."""

    webhook: StrictStr | None = None
    secret: StrictStr | None = None        # HMAC-SHA256 key for the webhook's signature header
    secret_env: StrictStr | None = None    # ...or the environment variable that holds it
    email: StrictStr | list[StrictStr] | None = None
    command: StrictStr | None = None

    @property
    def kind(self) -> str:
        return next(k for k in ("webhook", "email", "command") if getattr(self, k) is not None)

    def target(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Rule(_Model):
    """An alert rule: ``Rule(name="f", when={"event": "failed", "flow": "Train"}, notify=[{"webhook": url}])``."""

    name: StrictStr
    when: When
    notify: list[Action] = Field(min_length=1)
    cooldown: float = Field(0.0, ge=0)     # seconds (written 10m, 1h, 90s in YAML)

    def model_post_init(self, _context: Any) -> None:
        problems = [] if _SKIP_RULE_CHECKS.get() else rule_problems(self)
        if problems:
            from keel.errors import AlertError

            raise AlertError(f"alert rule {self.name!r}: " + "; ".join(m for _, m in problems))


RULE_KEYS = list(Rule.model_fields)


def rule_problems(rule: Rule) -> list[tuple[str, str]]:
    """What pydantic cannot check: (key, message) pairs, key a dotted path under the rule."""
    w, out = rule.when, []
    if w.event == "running_longer_than" and w.duration is None:
        out.append(("when", "when: running_longer_than needs a duration: hours:, minutes: or seconds:"))
    if w.event == "metric":
        if not w.metric:
            out.append(("when", "when: event metric needs metric: NAME"))
        if (w.below is None) == (w.above is None):
            out.append(("when", "when: event metric needs exactly one of below: or above:"))
    elif w.metric or w.below is not None or w.above is not None:
        out.append(("when", f"when: metric:, below: and above: belong to event: metric, not {w.event}"))
    if w.event == "missed_schedule" and not w.job:
        out.append(("when", "when: missed_schedule needs job: NAME (a job with a schedule:)"))
    for i, action in enumerate(rule.notify):
        given = [k for k in ("webhook", "email", "command") if getattr(action, k) is not None]
        if len(given) != 1:
            out.append((f"notify.{i}", f"notify #{i + 1} must have exactly one of webhook:, email: or command:"
                                       f" (got {', '.join(given) or 'none'})"))
        elif action.webhook is not None and not action.webhook.startswith(("http://", "https://")):
            out.append((f"notify.{i}", f"notify #{i + 1}: webhook must be an http:// or https:// URL"))
        elif action.email is not None:
            for address in [action.email] if isinstance(action.email, str) else action.email:
                if not _EMAIL.match(address):
                    shown = address if len(address) <= 40 else address[:40] + "…"
                    out.append((f"notify.{i}", f"notify #{i + 1}: email {shown!r} is not an address such as "
                                               f"ml@example.com"))
    return out
