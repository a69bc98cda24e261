"""Plugins: a user's own Python file or module that registers backbones and loss terms.

    python -m train.fit --plugin my_backbones.py --set model.name=dat_tiny_cnn     # a file
    python -m train.fit --plugin mypkg.reid_parts --set loss.extra_terms=centre:0.001  # a module
    IRREID_PLUGINS=my_backbones.py python -m export.onnx ...                        # any command

A plugin is imported once; its ``@register_backbone`` / ``@register_loss_term`` decorators fill the
registries (train.models.registry, train.losses). ``train.fit`` records the plugins of a run in its
config (``plugins``, absolute paths for files), and every command that rebuilds a network from a
checkpoint (``train.evaluate``, ``train.evaluate.figures``, ``export.onnx``, ``--resume``) imports
them again from there, so the file only has to stay where it was.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

__all__ = ["ENV", "PluginError", "load_plugins", "normalise_plugin"]

ENV = "IRREID_PLUGINS"  # os.pathsep-separated plugins imported on the first registry lookup
_loaded: dict[str, ModuleType] = {}


class PluginError(ValueError):
    """A plugin could not be found or imported; the message names it and says what to do."""


def normalise_plugin(spec: str) -> str:
    """A file path becomes absolute (a run's config must find it from anywhere); a module name stays."""
    return str(Path(spec).resolve()) if spec.endswith(".py") else spec


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"plugin {path} not found: pass an existing .py file (or a module name) to --plugin")
    # A name of its own per file, so two plugins called backbones.py do not replace each other.
    name = f"irreid_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PluginError(f"plugin {path} failed to import: {type(e).__name__}: {e}") from e
    return module


def load_plugins(specs: Iterable[str]) -> list[ModuleType]:
    """Import each plugin (a ``.py`` path or a dotted module name) once; returns the modules."""
    out = []
    for raw in specs:
        spec = normalise_plugin(str(raw).strip())
        if not spec:
            continue
        if spec not in _loaded:
            if spec.endswith(".py"):
                _loaded[spec] = _import_file(Path(spec))
            else:
                try:
                    _loaded[spec] = importlib.import_module(spec)
                except ImportError as e:
                    raise PluginError(f"plugin module {spec!r} cannot be imported ({e}); pass a .py file path "
                                      "or a module on PYTHONPATH") from e
        out.append(_loaded[spec])
    return out


def load_env_plugins() -> list[ModuleType]:
    """The plugins named in $IRREID_PLUGINS (nothing when it is unset)."""
    return load_plugins(p for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip())
