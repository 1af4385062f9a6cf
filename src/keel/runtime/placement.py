"""Where each step runs: this machine, Ray or Kubernetes.

    python flow.py run --with ray:address=10.0.0.5:6379,cpu=2     # every step on Ray
    @ray(cpu=8, memory=32000) @step def train(self): ...            # one step on Ray

A step's own ``@ray``/``@kubernetes`` decorator wins; otherwise ``--with NAME[:key=value,...]``
sends every step to that executor; otherwise the step runs here. The plan is made once per
run, before anything runs, and only then are the executors it names imported and connected,
so a flow that uses none of them never imports ``ray`` or ``kubernetes``.

Resources: a value given on ``@ray``/``@kubernetes`` wins; otherwise the larger of
``@resources`` and the ``--with`` option (``--with ray:cpu=4`` raises every step to at least
4 cores, as in Metaflow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from keel.errors import DefinitionError, UsageError
from keel.runtime.executors.base import Executor

# name -> (option -> type). Values given on the command line are checked against these.
_OPTIONS: dict[str, dict[str, type]] = {
    "ray": {"address": str, "cpu": float, "memory": float, "gpu": float},
    "kubernetes": {"cpu": float, "memory": float, "disk": float, "gpu": float, "image": str,
                   "namespace": str, "service_account": str, "secret": str},
}
_ALIASES = {"k8s": "kubernetes"}


@dataclass(frozen=True)
class WithSpec:
    """One ``--with NAME[:key=value,...]`` option, parsed and checked."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)


def parse_with(text: str) -> WithSpec:
    """Parse ``ray:address=auto,cpu=4``; a one-line UsageError says what is wrong."""
    raw_name, _, rest = text.partition(":")
    name = _ALIASES.get(raw_name.strip(), raw_name.strip())
    if name not in _OPTIONS:
        raise UsageError(f"--with {text}: unknown executor {raw_name.strip()!r}; "
                         f"available: {', '.join(sorted(_OPTIONS))}")
    allowed = _OPTIONS[name]
    options: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not value.strip():
            raise UsageError(f"--with {text}: {item!r} is not key=value (e.g. --with {name}:cpu=2)")
        if key not in allowed:
            raise UsageError(f"--with {text}: {name} has no option {key!r}; its options are: "
                             f"{', '.join(allowed)}")
        if allowed[key] is float:
            try:
                number = float(value)
            except ValueError:
                raise UsageError(f"--with {text}: {key} expects a number, got {value.strip()!r}") from None
            if number < 0:
                raise UsageError(f"--with {text}: {key} must be at least 0, got {value.strip()}")
            options[key] = number
        else:
            options[key] = value.strip()
    return WithSpec(name, options)


def _deco(node: Any, name: str) -> Any:
    for deco in node.decorators:
        if deco.name == name:
            return deco
    return None


def _pick(explicit: Any, option: Any, declared: Any, default: Any = None) -> Any:
    if explicit is not None:
        return explicit
    values = [v for v in (option, declared) if v is not None]
    return max(values) if values else default


@dataclass
class Placement:
    """The executor of every step that does not run here, and what each task asks for."""

    route: dict[str, str] = field(default_factory=dict)          # step -> "ray" | "kubernetes"
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)
    ray_address: str | None = None                               # from --with or @ray(address=)
    kubernetes: dict[str, Any] = field(default_factory=dict)     # --with kubernetes options

    @property
    def remote_steps(self) -> frozenset[str]:
        return frozenset(self.route)

    def executors(self) -> set[str]:
        return set(self.route.values())

    def connect(self, flow_cls: type, artifacts: Any, on_output: Callable[..., None],
                flow_file: str) -> dict[str, Executor]:
        """Import and connect the remote executors this plan needs (errors before the run starts)."""
        out: dict[str, Executor] = {}
        if "ray" in self.executors():
            from keel.runtime.executors.ray import RayExecutor

            steps = {s: r for s, r in self.requests.items() if self.route[s] == "ray"}
            out["ray"] = RayExecutor(flow_cls, artifacts, on_output, address=self.ray_address,
                                     requests=steps, flow_file=flow_file)
        if "kubernetes" in self.executors():
            from keel.runtime.executors.kubernetes import KubernetesExecutor

            steps = {s: r for s, r in self.requests.items() if self.route[s] == "kubernetes"}
            out["kubernetes"] = KubernetesExecutor(flow_cls, artifacts, on_output, requests=steps,
                                                   flow_file=flow_file)
        return out

    def build(self, steps: list[str], local: Callable[[], Executor], remote: dict[str, Executor]) -> Executor:
        """One executor for the scheduler: the only one in use, or a router over several."""
        used = {self.route.get(s, "local") for s in steps}
        if used == {"local"}:
            return local()
        if len(used) == 1:
            return remote[used.pop()]
        from keel.runtime.executors.routing import RoutingExecutor

        executors = dict(remote)
        if "local" in used:
            executors["local"] = local()
        return RoutingExecutor(executors, self.route, default="local")


def plan_placement(graph: Any, with_specs: list[str] | list[WithSpec]) -> Placement:
    """Decide, before anything runs, where each step of ``graph`` runs and with what resources."""
    specs = [w if isinstance(w, WithSpec) else parse_with(w) for w in with_specs]
    names = sorted({w.name for w in specs})
    if len(names) > 1:
        raise UsageError(f"--with {' and --with '.join(names)}: a run goes to one executor; pick one "
                         f"(use @ray or @kubernetes on single steps to mix)")
    with_spec = specs[-1] if specs else None
    if with_spec is not None and len(specs) > 1:
        merged: dict[str, Any] = {}
        for w in specs:
            merged.update(w.options)
        with_spec = WithSpec(with_spec.name, merged)
    plan = Placement()
    problems: list[str] = []
    addresses: dict[str, str] = {}
    for name in graph.sorted_nodes():
        node = graph[name]
        on_ray, on_k8s = _deco(node, "ray"), _deco(node, "kubernetes")
        where = ("ray" if on_ray else None) or ("kubernetes" if on_k8s else None)
        if on_ray and on_k8s:
            deco = on_ray
            problems.append(f"{deco.file or node.file}:{deco.line or node.lineno}: step {name!r} has both "
                            f"@ray and @kubernetes; keep one")
            continue
        if where is None and with_spec is not None:
            where = with_spec.name
        if where is None:
            continue
        opts = with_spec.options if with_spec is not None and with_spec.name == where else {}
        own = on_ray if where == "ray" else on_k8s
        plan.route[name] = where
        plan.requests[name] = _request(where, node, own, opts)
        if where == "ray" and own is not None and own.address:
            addresses[name] = str(own.address)
    if with_spec is not None and with_spec.name == "kubernetes":
        plan.kubernetes = dict(with_spec.options)
    flag = with_spec.options.get("address") if with_spec is not None and with_spec.name == "ray" else None
    if flag:
        plan.ray_address = str(flag)
    elif addresses:
        distinct = sorted(set(addresses.values()))
        if len(distinct) > 1:
            listed = ", ".join(f"{s}: {a}" for s, a in sorted(addresses.items()))
            problems.append(f"{graph.name}: steps name different Ray clusters ({listed}); a run uses one "
                            f"cluster: give the same @ray(address=...) or none, and pass --with ray:address=...")
        plan.ray_address = distinct[0]
    if problems:
        raise DefinitionError("\n".join(problems))
    return plan


def _request(where: str, node: Any, own: Any, opts: dict[str, Any]) -> dict[str, Any]:
    res = _deco(node, "resources")
    declared = {k: (getattr(res, k) if res is not None else None) for k in ("cpu", "memory", "disk", "gpu")}
    if where == "ray":
        explicit = own.attributes if own is not None else {}
        req = {
            "cpu": _pick(explicit.get("cpu"), opts.get("cpu"), declared["cpu"], 1),
            "memory": _pick(explicit.get("memory"), opts.get("memory"), declared["memory"]),
            "gpu": _pick(explicit.get("gpu"), opts.get("gpu"), declared["gpu"], 0),
        }
        custom = explicit.get("resources")
        if custom:
            req["resources"] = {str(k): float(v) for k, v in dict(custom).items()}
        return req
    # Kubernetes, as in Metaflow: the largest of @kubernetes (cpu=1, memory=4096 by default),
    # the --with option and @resources.
    explicit = dict(own.attributes) if own is not None else {}
    req = {}
    for key, default in {"cpu": 1, "memory": 4096, "disk": 10240, "gpu": 0}.items():
        req[key] = max(v for v in (explicit.get(key), opts.get(key), declared[key], default) if v is not None)
    for key in ("image", "namespace", "service_account", "secret"):
        value = explicit.get(key)
        req[key] = value if value is not None else opts.get(key)
    return req


def ray_address(flag: str | None) -> str:
    """The cluster to connect to: the flag, then KEEL_RAY_ADDRESS, then RAY_ADDRESS; "" when none was
    given (Keel then refuses: it joins a cluster merely found on the machine only when asked, with 'auto')."""
    from keel.settings import Settings

    return flag or Settings.from_env().ray_address or os.environ.get("RAY_ADDRESS") or ""


def ray_address_source(flag: str | None) -> str:
    """Where :func:`ray_address` found the address, in words for the run's first lines."""
    from keel.settings import Settings

    if flag:
        return "from --with ray:address" if flag != "auto" else "found automatically on this machine (address=auto)"
    found = (("KEEL_RAY_ADDRESS", Settings.from_env().ray_address), ("RAY_ADDRESS", os.environ.get("RAY_ADDRESS")))
    for name, value in found:
        if value:
            return f"from {name}" + (", found automatically on this machine" if value == "auto" else "")
    return ""
