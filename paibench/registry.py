"""A small name -> object registry shared by datasets, architectures and pruning methods.

Besides the entries paibench registers itself, a registry takes plug-ins without any edit of paibench:

* Python entry points in the registry's group (``paibench.methods``, ``paibench.archs``,
  ``paibench.datasets``): an installed package declares e.g. ``[project.entry-points."paibench.methods"]
  my_method = "my_pkg.pruning:MY_METHOD"``; the entry point's name is the name used in configs and on the
  command line. They are loaded on the first lookup.
* a ``module:attribute`` name (e.g. ``my_pkg.pruning:MY_METHOD``) used directly as the name in a config
  or on the command line; the module must be importable (installed or on ``PYTHONPATH``).

The object found is the spec itself (``MethodSpec``, ``ArchSpec``, ``DatasetSpec``) or a callable taking
no arguments that returns one.
"""

from __future__ import annotations

import importlib
import re
from typing import Generic, Iterator, TypeVar

from paibench.errors import PaibenchError, bad_value

T = TypeVar("T")

# module:attribute, as in entry points (dotted module path, then an attribute path)
IMPORT_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_import_name(name: object) -> bool:
    return isinstance(name, str) and bool(IMPORT_NAME.match(name))


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str | None = None, item_type: type | None = None):
        self.kind = kind
        self.group = group  # entry-point group of plug-ins
        self.item_type = item_type
        self._items: dict[str, T] = {}
        self._plugins_loaded = group is None

    def add(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = item
        return item

    # ------------------------------------------------------------------------------------------ plug-ins
    def _checked(self, name: str, obj, origin: str, field: str) -> T:
        if self.item_type is not None and not isinstance(obj, self.item_type) and callable(obj):
            obj = obj()
        if self.item_type is not None and not isinstance(obj, self.item_type):
            raise PaibenchError(f"{field}: {name!r} ({origin}) is a {type(obj).__name__}; expected a "
                                f"{self.item_type.__name__} (or a function returning one)")
        return obj

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            if ep.name in self._items:
                continue  # a built-in name wins; the plug-in is reachable by its module:attribute name
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 (a broken plug-in must not break paibench)
                raise PaibenchError(f"{self.kind}: the plug-in {ep.name!r} ({ep.value}, entry point group "
                                    f"{self.group}) could not be loaded: {type(exc).__name__}: {exc}") from None
            self._items[ep.name] = self._checked(ep.name, obj, f"entry point {ep.value}", self.kind)

    def _import(self, name: str, field: str) -> T:
        module_name, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise PaibenchError(f"{field}: {name!r} could not be imported ({type(exc).__name__}: {exc}); "
                                f"expected an importable module:attribute naming a {self.kind} spec") from None
        item = self._checked(name, obj, "module:attribute", field)
        self._items[name] = item
        return item

    # ------------------------------------------------------------------------------------------- lookups
    def get(self, name: str, field: str | None = None) -> T:
        """The entry named `name`; an unknown or unimportable name is one error line naming `field` (the
        flag or config place the name came from; the registry's kind by default)."""
        field = field or self.kind
        if name in self._items:
            return self._items[name]
        if is_import_name(name):
            return self._import(name, field)
        self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise bad_value(field, name, self.names()) from None

    def __contains__(self, name: object) -> bool:
        if name in self._items:
            return True
        if is_import_name(name):
            try:
                self.get(name)  # type: ignore[arg-type]
                return True
            except PaibenchError:
                return False
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(list(self._items))

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def items(self):
        self._load_plugins()
        return list(self._items.items())
