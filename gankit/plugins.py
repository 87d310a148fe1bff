"""The plugin manager: finds, loads and indexes every plugin through pluggy.

Built-in plugins (the ``gankit`` distribution's own entry points) load first, then
every other distribution's entry points in the ``gankit`` group. Environment
variables, as their pytest equivalents:

``GANKIT_DISABLE_PLUGIN_AUTOLOAD=1``
    Load no third-party entry points (built-ins still load).
``GANKIT_PLUGINS=a,b``
    Load these even when autoloading is disabled: each is an entry-point name, a
    distribution name, or a dotted module path to import and register.
``GANKIT_DISABLE_PLUGINS=a,b``
    Never load these (entry-point, distribution or module names), built-ins included;
    the deny list wins over ``GANKIT_PLUGINS``.

A plugin that fails to import (``sys.exit()`` at import included) or whose hook raises
is skipped with a :class:`PluginWarning` naming it. A plugin that registers a name
another plugin registered first is skipped whole with a warning naming both
distributions: built-ins load first, so they win, then third-party plugins in the
order of their distribution and entry-point names.

:func:`call_factory` (:meth:`Registry.make`) calls a plugin's factory: a third-party factory that raises (other
than a deliberate :class:`~gankit.errors.GankitError`) or returns the wrong kind of
object is a :class:`~gankit.errors.PluginError` naming the plugin and its distribution
(chained to what it raised, for ``--debug``). gankit's own factories are not wrapped:
their failures are gankit's bugs.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import pluggy

from gankit import hookspecs
from gankit.errors import BackendUnavailable, GankitError, PluginError
from gankit.records import RECORD_TYPES, PluginRecord

ENTRY_POINT_GROUP = "gankit"
BUILTIN_DISTRIBUTION = "gankit"
#: The "distribution" of a plugin module loaded by name through ``GANKIT_PLUGINS``.
ALLOW_LIST_DISTRIBUTION = "<GANKIT_PLUGINS>"
DISABLE_AUTOLOAD_ENV = "GANKIT_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_LIST_ENV = "GANKIT_PLUGINS"
DENY_LIST_ENV = "GANKIT_DISABLE_PLUGINS"


class PluginWarning(UserWarning):
    """A plugin could not be loaded; gankit carries on without it."""


@dataclass(frozen=True)
class Registered:
    """A record together with where it came from."""

    record: PluginRecord
    plugin: str        # the entry-point (or module) name
    distribution: str  # the distribution that provides it

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def kind(self) -> str:
        return self.record.kind


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _origin(entry: "Registered") -> str:
    """Where a plugin comes from, for messages."""
    if entry.distribution == ALLOW_LIST_DISTRIBUTION:
        return f"plugin module {entry.plugin!r}, loaded through {ALLOW_LIST_ENV}"
    if entry.distribution.startswith("<"):
        return f"plugin {entry.plugin!r}"
    return f"plugin {entry.plugin!r} from distribution {entry.distribution!r}"


def _fix_hint(entry: "Registered") -> str:
    """How to get rid of a broken plugin."""
    if entry.distribution == ALLOW_LIST_DISTRIBUTION:
        return f"fix the module {entry.plugin!r}, or remove it from {ALLOW_LIST_ENV}"
    if entry.distribution.startswith("<"):
        return f"fix the plugin {entry.plugin!r}"
    return (f"fix or uninstall the plugin {entry.distribution!r}, or skip it with "
            f"{DENY_LIST_ENV}={entry.distribution}")


def _has(*attributes: str) -> Callable[[Any], bool]:
    return lambda obj: all(callable(getattr(obj, a, None)) for a in attributes)


def _is_net(obj: Any) -> bool:
    from gankit.native import NativeNet
    from gankit.nets import NetSpec

    return isinstance(obj, (NetSpec, NativeNet))


#: What each kind's factory must return: a check and its description for messages.
_PRODUCTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "backend": (_has("build_trainer", "ops", "version"), "a backend (with build_trainer, ops and version)"),
    "loss": (_has("discriminator", "generator"), "a gankit.Loss (with discriminator and generator methods)"),
    "regularizer": (_has("__call__"), "a gankit.Regularizer (a callable penalty)"),
    "architecture": (_is_net, "a gankit.NetSpec"),
    "dataset": (_has("sample", "batches"), "a gankit.Dataset (with sample and batches methods)"),
    "metric": (_has("__call__", "applies"), "a gankit.metrics.Metric"),
    "feature_extractor": (_has("features", "check"), "a gankit.metrics.FeatureExtractor"),
}


def _shown(obj: Any) -> str:
    text = repr(obj)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{type(obj).__name__} {text}" if not isinstance(obj, type) else f"the class {obj.__name__}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _dist_name(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown>"


def _names(value: str | None) -> list[str]:
    """A comma-separated environment list."""
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def _unique(eps: Iterable[md.EntryPoint]) -> list[md.EntryPoint]:
    """Entry points without repeats (one distribution found twice on sys.path is one plugin)."""
    seen, out = set(), []
    for ep in eps:
        key = (_dist_name(ep), ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            out.append(ep)
    return out


class Registry:
    """Every registered plugin, by kind and name."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Registered]] = {kind: {} for kind in RECORD_TYPES}
        self._origin: dict[str, tuple[str, str]] = {}  # pluggy plugin name -> (plugin, dist)
        self.failed: list[tuple[str, str, str]] = []  # (plugin, distribution, reason)
        self.disabled: list[tuple[str, str]] = []  # (plugin, distribution) skipped by the deny list
        self.environ: dict[str, str] | None = None
        """The environment a registry loaded from the installed plugins was read with (which
        another process reads the same way); None for one built from plugin objects."""

    # -- loading ----------------------------------------------------------------
    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "Registry":
        """Load built-ins, then third-party entry points as the environment allows."""
        env = os.environ if environ is None else environ
        allow = _names(env.get(ALLOW_LIST_ENV))
        deny = set(_names(env.get(DENY_LIST_ENV)))
        autoload = not _truthy(env.get(DISABLE_AUTOLOAD_ENV))
        reg = cls()
        reg.environ = {k: env[k] for k in (ALLOW_LIST_ENV, DENY_LIST_ENV, DISABLE_AUTOLOAD_ENV) if k in env}
        eps = _unique(md.entry_points(group=ENTRY_POINT_GROUP))
        builtins = [ep for ep in eps if _dist_name(ep) == BUILTIN_DISTRIBUTION]
        others = sorted(
            (ep for ep in eps if _dist_name(ep) != BUILTIN_DISTRIBUTION),
            key=lambda ep: (_dist_name(ep), ep.name),
        )
        matched: set[str] = set()
        for ep in builtins:
            if not reg._denied(deny, ep.name, _dist_name(ep), ep.value):
                reg._load_entry_point(ep)
        for ep in others:
            hit = {ep.name, _dist_name(ep)} & set(allow)
            matched |= hit
            if (autoload or hit) and not reg._denied(deny, ep.name, _dist_name(ep), ep.value):
                reg._load_entry_point(ep)
        for name in allow:
            if name not in matched and not any(ep.name == name for ep in builtins):
                if not reg._denied(deny, name, ALLOW_LIST_DISTRIBUTION, name):
                    reg._load_module(name)
        reg._collect()
        return reg

    def _denied(self, deny: set[str], name: str, dist: str, target: str) -> bool:
        """Whether the deny list names this plugin (by entry point, distribution or module)."""
        module = target.partition(":")[0].strip()
        if deny & {name, dist, module}:
            self.disabled.append((name, dist))
            return True
        return False

    @classmethod
    def from_plugins(cls, plugins: Iterable[Any], distribution: str = "<local>") -> "Registry":
        """A registry of exactly these plugin objects (modules or instances)."""
        reg = cls()
        for plugin in plugins:
            name = getattr(plugin, "__name__", type(plugin).__name__)
            reg._register(plugin, name, distribution)
        reg._collect()
        return reg

    def _load_entry_point(self, ep: md.EntryPoint) -> None:
        dist = _dist_name(ep)
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not break (or end) gankit
            self._fail(ep.name, dist, f"failed to import ({_describe(exc)})")
            return
        self._register(plugin, ep.name, dist)

    def _load_module(self, dotted: str) -> None:
        try:
            plugin = importlib.import_module(dotted)
        except (Exception, SystemExit) as exc:
            self._fail(dotted, ALLOW_LIST_DISTRIBUTION, f"failed to import ({_describe(exc)})")
            return
        self._register(plugin, dotted, ALLOW_LIST_DISTRIBUTION)

    def _register(self, plugin: Any, name: str, dist: str) -> None:
        key = f"{dist}:{name}"
        if self.pm.is_registered(plugin):
            return
        try:
            self.pm.register(plugin, name=key)
        except Exception as exc:  # e.g. a hook with a misspelled name or bad signature
            self._fail(name, dist, f"was rejected by the plugin manager ({exc})")
            return
        unknown = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [] if c.spec is None)
        if unknown:
            self.pm.unregister(plugin)
            self._fail(name, dist, f"was rejected: it implements {', '.join(unknown)}, which gankit does not define (a misspelled hook?)")
            return
        self._origin[key] = (name, dist)

    def _fail(self, plugin: str, dist: str, reason: str) -> None:
        self.failed.append((plugin, dist, reason))
        warnings.warn(
            f"gankit plugin {plugin!r} from distribution {dist!r} {reason}; it is skipped",
            PluginWarning,
            stacklevel=3,
        )

    def _collect(self) -> None:
        """Ask every registered plugin for its records, then index them plugin by plugin
        in load order: a plugin whose hook fails, or that registers a name taken by an
        earlier plugin, is skipped whole with a warning."""
        found: dict[str, list[Registered]] = {}
        broken: set[str] = set()
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            record_type = RECORD_TYPES[kind]
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():
                if impl.plugin_name in broken:
                    continue
                plugin, dist = self._origin.get(impl.plugin_name, (impl.plugin_name, "<unknown>"))
                try:
                    records = list(impl.function() or [])
                except (Exception, SystemExit) as exc:
                    self._fail(plugin, dist, f"raised in {hook_name} ({_describe(exc)})")
                    broken.add(impl.plugin_name)
                    continue
                bad = [r for r in records if not isinstance(r, record_type)]
                if bad:
                    self._fail(plugin, dist, f"returned {bad[0]!r} from {hook_name}, expected {record_type.__name__}")
                    broken.add(impl.plugin_name)
                    continue
                found.setdefault(impl.plugin_name, []).extend(Registered(r, plugin, dist) for r in records)
        for key in self._origin:  # registration (= load) order: the first to register a name keeps it
            if key in broken:
                continue
            entries = found.get(key, [])
            clash = self._first_clash(entries)
            if clash is not None:
                entry, other = clash
                self._fail(entry.plugin, entry.distribution,
                           f"registers the {entry.kind} {entry.name!r}, which {other.plugin!r} from distribution "
                           f"{other.distribution!r} registers too; {other.plugin!r} keeps the name "
                           f"(disable one with {DENY_LIST_ENV}=NAME)")
                continue
            for entry in entries:
                self._entries[entry.kind][entry.name] = entry

    def _first_clash(self, entries: list[Registered]) -> tuple[Registered, Registered] | None:
        """The first of a plugin's records whose name is already taken (by an earlier
        plugin, or by another of its own records), with the record that holds it."""
        mine: dict[tuple[str, str], Registered] = {}
        for entry in entries:
            other = self._entries[entry.kind].get(entry.name) or mine.get((entry.kind, entry.name))
            if other is not None:
                return entry, other
            mine[(entry.kind, entry.name)] = entry
        return None

    # -- building -----------------------------------------------------------------
    def make(self, kind: str, name: str, *args, **kwargs) -> Any:
        """Call the factory of the ``kind`` plugin ``name`` (see :func:`call_factory`)."""
        return call_factory(self.get(kind, name), kind, *args, **kwargs)

    # -- queries ----------------------------------------------------------------
    def kinds(self) -> list[str]:
        return list(self._entries)

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: str | None = None) -> list[Registered]:
        kinds = [kind] if kind else list(self._entries)
        return [self._entries[k][n] for k in kinds for n in sorted(self._entries[k])]

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self._entries[kind][name]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none"
            raise PluginError(
                f"unknown {kind} {name!r}; available: {available}",
                hint="check the spelling, or install the plugin that provides it (see `gankit plugins`)",
            ) from None

    def has(self, kind: str, name: str) -> bool:
        return name in self._entries.get(kind, {})

    def backend(self, name: str):
        """The backend object for ``name``, or :class:`BackendUnavailable` if its
        framework is not installed."""
        entry = self.get("backend", name)
        record = entry.record
        missing = [m for m in getattr(record, "requires", ()) if importlib.util.find_spec(m) is None]
        if missing:
            extra = getattr(record, "extra", "") or name
            raise BackendUnavailable(
                f"the {name} backend needs {', '.join(missing)}, which is not installed",
                hint=f"pip install 'gankit[{extra}]', or choose another backend with --set backend=NAME",
            )
        return self.make("backend", name, what=f"the backend {name!r}")

    def backend_available(self, name: str) -> bool:
        record = self.get("backend", name).record
        return all(importlib.util.find_spec(m) is not None for m in getattr(record, "requires", ()))


def call_factory(entry: Registered, kind: str, *args, passthrough: tuple[type[BaseException], ...] = (),
                 what: str | None = None, **kwargs) -> Any:
    """Call a registered plugin's factory with these arguments.

    A third-party factory that raises anything but a :class:`GankitError` (or one of
    ``passthrough``, which the caller turns into its own message), or returns what is not
    the kind's object, becomes a :class:`PluginError` naming the plugin, its distribution
    and what it raised or returned, chained to the exception. gankit's own factories raise
    as they do (their failures are bugs to report). ``what`` names the object in messages
    (default: ``the {kind} {name!r}``)."""
    what = what or f"the {kind} {entry.record.name!r}"
    builtin = getattr(entry, "distribution", BUILTIN_DISTRIBUTION) == BUILTIN_DISTRIBUTION
    try:
        made = entry.record.factory(*args, **kwargs)
    except (GankitError, *passthrough):
        raise
    except (Exception, SystemExit) as exc:  # a plugin must not end gankit
        if builtin:
            raise
        raise PluginError(f"{what} ({_origin(entry)}) failed to build: {_describe(exc)}",
                          hint=_fix_hint(entry)) from exc
    check, expected = _PRODUCTS.get(kind, (lambda obj: True, ""))
    if not builtin and not check(made):
        raise PluginError(f"{what} ({_origin(entry)}) returned {_shown(made)}, not {expected}",
                          hint=_fix_hint(entry))
    return made


def _code_roots(entry: Registered) -> list[str]:
    """The files a third-party plugin's code lives in: the package directory of its
    factory's top-level module (or that module's own file, for a plain module)."""
    module = getattr(entry.record.factory, "__module__", None) or ""
    for name in (module.partition(".")[0], module):
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            path = os.path.realpath(path)
            if os.path.basename(path) == "__init__.py":
                return [os.path.dirname(path) + os.sep]
            return [path]
    return []


OWN_PACKAGES = ("gankit", "gankit_plugins", "gankit_torch", "gankit_tensorflow", "gankit_jax")
"""The packages of gankit's own distribution: the core, the built-in plugins, the backends."""


def _own_roots() -> set[str]:
    roots = set()
    for name in OWN_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)  # where it is, without importing it
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec is not None else []:
            roots.add(os.path.realpath(location) + os.sep)
    return roots


def culprit(exc: BaseException, registry: Registry | None = None) -> tuple[Registered, str] | None:
    """The third-party plugin whose own code raised ``exc`` (or an exception it chains to),
    with the ``file:line`` it raised at: the innermost traceback frame inside a third-party
    plugin's package. ``None`` when no such frame exists: gankit's own code, its built-in
    plugins, a framework or the user's input raised it."""
    reg = registry if registry is not None else _REGISTRY
    if reg is None:
        return None
    own = _own_roots()  # a third-party record of one of gankit's own factories does not own gankit's code
    owners = [(root, entry) for entry in reg.entries() if entry.distribution != BUILTIN_DISTRIBUTION
              for root in _code_roots(entry) if root not in own]
    if not owners:
        return None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # the exception, then what it chains to
        seen.add(id(current))
        for frame in reversed(traceback.extract_tb(current.__traceback__)):
            path = os.path.realpath(frame.filename)
            for root, entry in owners:
                if path == root or (root.endswith(os.sep) and path.startswith(root)):
                    return entry, f"{frame.filename}:{frame.lineno}"
        current = current.__cause__ or current.__context__
    return None


def plugin_failure(exc: BaseException, registry: Registry | None = None, *, during: str = "",
                   hint: str = "") -> PluginError | None:
    """A one-line :class:`PluginError` for ``exc`` when a third-party plugin's code raised
    it (:func:`culprit`): which plugin, where, what it raised, and how to be rid of it
    (then ``hint``); ``None`` when no plugin is to blame."""
    if isinstance(exc, GankitError):
        return None
    found = culprit(exc, registry)
    if found is None:
        return None
    entry, where = found
    what = f"the {entry.kind} {entry.name!r} ({_origin(entry)})"
    return PluginError(f"{what} failed{' ' + during if during else ''}: {_describe(exc)} (at {where})",
                       hint=_fix_hint(entry) + (f"; {hint}" if hint else ""))


_REGISTRY: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry, loaded from the environment on first use."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        _REGISTRY = Registry.from_environment()
    return _REGISTRY


def get_backend(name: str | None = None):
    """The backend object by name (default: ``GANKIT_BACKEND`` or torch)."""
    from gankit.config import default_backend

    return get_registry().backend(name or default_backend())
