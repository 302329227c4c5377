"""Plug-ins: models, datasets and methods defined outside effray, named by import path or
entry point.

Wherever a model, dataset or method name is accepted (``--model``, ``--dataset``, config
files, ``build_model``, ``load_dataset``; ``effray run NAME``, ``--with``, ``raypkg.run``,
``effray tune``, ``bench frontier --methods``) it may also be

* an import path ``package.module:factory`` (any string with a ``:``; a method's names its
  ``Algorithm`` class, ``package.module:Class``), or
* the name of an entry point in the group ``effray.models`` / ``effray.datasets`` /
  ``effray.methods`` of an installed distribution (``name = package.module:factory``);
  these are listed by ``effray models`` / ``effray datasets`` / ``effray methods``. A
  built-in name wins over an entry point.

What makes a method (its checks, its row) is ``raypkg.method_registry.plugin_method``.

The module is imported as Python imports it: from ``sys.path``, with the current
directory searched last (as ``python -m`` would, first). A plug-in's directory that is
not already on ``PYTHONPATH`` is added to this process's ``PYTHONPATH``, so that a local
Ray started afterwards (Ray Train workers, Tune trials, shard actors) imports it too;
Ray also puts the driver's working directory on its workers' path. On a cluster
(``--address``) the module must be importable on every node: install it there, or submit
the job with ``ray job submit --working-dir DIR`` where DIR holds it. A Ray Train worker
imports a plug-in method's module before it reads its job (``import_on_worker``): where it
cannot, the run fails with one line that names the module and this.

Model factory: ``factory(input_shape, num_classes) -> nn.Module``. ``input_shape`` is the
per-sample shape without the batch dimension (a tuple), the module maps float32 inputs
[B, *input_shape] to logits [B, num_classes]. A ``raypkg.models.Classifier`` is used as it
is; any other module is wrapped (``raypkg.models.base.ModuleClassifier``): its last
registered ``nn.Linear`` is the classifier layer, whose input is the penultimate features
that coreset selection needs, so the module's output must be exactly that layer's output.
``raypkg.models.registry.check_model`` checks this on a batch of the data before a run.

Dataset factory: ``factory()``, or ``factory(options)`` when it takes an argument:
``options`` is ``raypkg.data.registry.DataOptions`` (seed, data_dir, train_size, ...; the
factory applies what it wants, effray applies none of them to the result). It returns

* ``DataSplits`` (``raypkg.data.base``), used as it is, or
* a pair ``(train, test)``, or a triple ``(train, test, num_classes)``, where each split
  is a pair of tensors or arrays ``(x, y)`` (x: [N, *shape], y: [N] integer labels) or a
  torch ``Dataset`` whose items are ``(x, y, ...)``. ``x`` becomes float32, ``y`` int64;
  ``num_classes`` defaults to the largest label over both splits plus one. The splits
  are neither normalised nor augmented.

Refused with one line: an import path that does not import (its module raises or calls
``sys.exit``), that names no attribute or no callable, a factory that raises or calls
``sys.exit``, that returns the wrong type, a model that cannot take one training step
(``check_trains``), labels outside [0, num_classes),
more than ``MAX_CLASSES`` classes, one class only, NaN or inf inputs, splits whose x and y
lengths differ, or whose train and test samples differ in shape.

This module loads plug-ins and imports nothing of effray but its errors (every layer may use
it); turning what a dataset factory returns into checked ``DataSplits`` is the data
layer's, ``raypkg.data.plugins``.

Cache keys of pre-trained models and selections hash the source of each plug-in's module
and of the module that defines its factory (``source_digest``): editing either invalidates
them (edits of other modules they import do not).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from raypkg.errors import UsageError, choose

MODEL_GROUP = "effray.models"
DATASET_GROUP = "effray.datasets"
METHOD_GROUP = "effray.methods"
GROUPS = {"model": MODEL_GROUP, "dataset": DATASET_GROUP, "method": METHOD_GROUP}


def is_import_path(name: str) -> bool:
    return ":" in name


def entry_points(kind: str) -> dict[str, str]:
    """The entry points of ``kind`` ("model", "dataset" or "method") that installed packages declare:
    name -> ``module:factory`` (the first one found for a name)."""
    found: dict[str, str] = {}
    for ep in metadata.entry_points(group=GROUPS[kind]):
        found.setdefault(ep.name, ep.value)
    return found


def plugin_target(kind: str, name: str) -> str | None:
    """The import path ``name`` stands for: itself, or its entry point's; None if neither."""
    return name if is_import_path(name) else entry_points(kind).get(name)


def listing(kind: str, registered: dict) -> dict[str, str]:
    """Every name of ``kind`` with its description: the ``registered`` entries, then the
    entry points (`effray models`, `effray datasets`)."""
    names = {name: entry.description for name, entry in registered.items()}
    for name in entry_points(kind):
        names.setdefault(name, describe(kind, name))
    return names


def factory_for(kind: str, name: str, registered: dict) -> Callable:
    """The factory of a ``name`` that is not in ``registered``: an entry point's or an
    import path's. One line for a name that is none of the three."""
    if plugin_target(kind, name) is None:
        try:
            choose(kind, name, [*registered, *entry_points(kind)])
        except UsageError as e:
            raise UsageError(f"{e}; or give an import path MODULE:{_named(kind)}") from None
    return load_factory(kind, name)


def load_factory(kind: str, name: str) -> Callable:
    """The callable a plug-in ``name`` (import path or entry-point name) names; one-line
    ``UsageError`` when it cannot be imported, or names no attribute or no callable."""
    target = plugin_target(kind, name)
    if target is None:
        raise UsageError(f"unknown {kind} {name!r}")
    module_name, _, attr = target.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not module_name or not attr:
        example = "mypkg.prune:LossPruning" if kind == "method" else "mypkg.models:make_net"
        raise UsageError(f"{kind} {name!r}: give an import path MODULE:{_named(kind)}, e.g. {example}")
    module = _import(kind, name, module_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{kind} {name!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{kind} {name!r}: {attr!r} is not callable (it is of type {type(obj).__name__}); "
                         f"name a function or class that builds the {kind}")
    _export_path(module)
    return obj


def _named(kind: str) -> str:
    """What an import path of ``kind`` names: a method's ``Algorithm`` class, else a factory."""
    return "CLASS" if kind == "method" else "FACTORY"


def _import(kind: str, name: str, module_name: str):
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
        importlib.invalidate_caches()
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        itself = e.name is None or module_name == e.name or module_name.startswith(e.name + ".")
        where = " (run from the directory that holds it, add that directory to PYTHONPATH, or install it)"
        raise UsageError(f"{kind} {name!r}: cannot import {module_name!r}: {e}{where if itself else ''}") from None
    except (Exception, SystemExit) as e:  # the module itself fails: a syntax error, a missing dependency, sys.exit
        raise UsageError(f"{kind} {name!r}: importing {module_name!r} failed: {one_line(e)}") from None


# What to do where a Ray worker cannot import a plug-in's module (``import_on_worker``).
WORKER_FIX = ("put its directory on PYTHONPATH before Ray starts (effray's own local Ray does this), install it on "
              "every node, or submit the job with `ray job submit --working-dir DIR` where DIR holds it")


def import_on_worker(plugins) -> None:
    """In a Ray worker, before anything of a plug-in is unpickled: import the module of each
    plug-in ``(kind, name, "MODULE:ATTR")`` the driver resolved; a one-line ``UsageError``
    naming the plug-in, its module, the node and what to do (``WORKER_FIX``) where the module
    cannot be imported there, or fails to."""
    import socket

    for kind, name, target in plugins:
        module_name = target.partition(":")[0].strip()
        where = f"a Ray worker on {socket.gethostname()}"
        try:
            importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is None or module_name == e.name or module_name.startswith(e.name + "."):
                raise UsageError(f"{kind} {name!r}: {where} cannot import {module_name!r} ({e}): {WORKER_FIX}") from None
            raise UsageError(f"{kind} {name!r}: importing {module_name!r} failed on {where}: {one_line(e)}") from None
        except (Exception, SystemExit) as e:
            raise UsageError(f"{kind} {name!r}: importing {module_name!r} failed on {where}: {one_line(e)}") from None


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an exception raised by a plug-in's code."""
    first = next((line for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {first[:200]}" if first else type(error).__name__


def call_factory(kind: str, name: str, factory: Callable, *args, **kwargs):
    """``factory(*args, **kwargs)``; an exception it raises, ``sys.exit`` included, is a
    one-line ``UsageError`` naming the plug-in (a KeyboardInterrupt stays Ctrl-C)."""
    try:
        return factory(*args, **kwargs)
    except UsageError:
        raise
    except (Exception, SystemExit) as e:
        raise UsageError(f"{kind} {name!r}: its factory failed: {one_line(e)}") from None


def check_trains(name: str, model, x, y) -> None:
    """One real training step of plug-in model ``name`` on the batch ``x``, ``y``: forward
    and backward in train mode (batch norm, dropout and any ``self.training`` branch run
    as they will in training) must work and reach a parameter that requires a gradient.
    The gradients are cleared after; the caller throws the model away."""
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise UsageError(f"model {name!r} has no parameter that requires a gradient: there is nothing to train")
    model.train()
    try:
        with torch.enable_grad():
            torch.nn.functional.cross_entropy(model(x), y).backward()
    except Exception as e:  # noqa: BLE001 - the plug-in's own code fails
        raise UsageError(f"model {name!r} fails in a training step (train mode, forward and backward on "
                         f"{len(x)} samples): {one_line(e)}") from None
    if all(p.grad is None for p in trainable):
        raise UsageError(f"model {name!r}: a training step reaches none of its trainable parameters (its output "
                         "does not depend on them)")
    model.zero_grad(set_to_none=True)


def _import_root(module) -> Path | None:
    """The ``sys.path`` directory ``module`` was imported from (None when unknown)."""
    top = sys.modules.get(module.__name__.split(".")[0])
    if top is None:
        return None
    if getattr(top, "__file__", None):
        path = Path(top.__file__).resolve()
        return path.parent.parent if hasattr(top, "__path__") else path.parent
    locations = list(getattr(top, "__path__", []))  # a namespace package
    return Path(locations[0]).resolve().parent if locations else None


def _export_path(module) -> None:
    """Put ``module``'s directory on PYTHONPATH for the processes started from here (Ray's),
    unless it is already there or belongs to this Python installation (site-packages)."""
    root = _import_root(module)
    if root is None:
        return
    installed = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    if any(root == p or p in root.parents for p in installed):
        return
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(root) not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([*entries, str(root)])


def describe(kind: str, name: str) -> str:
    """A plug-in's description for listings: its target and docstring's first line, or why
    it cannot be loaded."""
    target = plugin_target(kind, name) or name
    try:
        factory = load_factory(kind, name)
    except UsageError as e:
        return f"{target} (plug-in; cannot load: {str(e).split(': ', 1)[-1]})"
    doc = (inspect.getdoc(factory) or "").strip().splitlines()
    return f"{doc[0]} (plug-in {target})" if doc else f"plug-in {target}"


def source_digest(kind: str, name: str) -> str:
    """A hash of the source of plug-in ``name``'s module (the one its import path names)
    and of the module that defines its factory, when that is another one."""
    factory = load_factory(kind, name)
    named = sys.modules[plugin_target(kind, name).partition(":")[0].strip()]
    h = hashlib.sha256()
    for module in dict.fromkeys([named, inspect.getmodule(factory)]):
        h.update(_source(module))
    return h.hexdigest()[:24]


def _source(module) -> bytes:
    try:
        return inspect.getsource(module).encode() if module is not None else b""
    except (OSError, TypeError):  # no source (a compiled module): its file's bytes, if any
        file = getattr(module, "__file__", None)
        return Path(file).read_bytes() if file and Path(file).is_file() else b""


def source_files(kind: str, name: str) -> list[str]:
    """The files whose source ``source_digest`` hashes: plug-in ``name``'s module and the
    module that defines its factory or class."""
    factory = load_factory(kind, name)
    named = sys.modules[plugin_target(kind, name).partition(":")[0].strip()]
    modules = dict.fromkeys([named, inspect.getmodule(factory)])
    return [str(Path(m.__file__).resolve()) for m in modules if m is not None and getattr(m, "__file__", None)]


def plugin_frame(error: BaseException, files: list[str]) -> str | None:
    """Where in ``files`` (a plug-in's) ``error`` was raised: ``file.py:LINE in FUNCTION`` of
    the innermost frame of its traceback (its causes' too) in one of them, or None."""
    import traceback

    wanted = {str(Path(f).resolve()) for f in files}
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        frames = [f for f in traceback.extract_tb(error.__traceback__) if str(Path(f.filename).resolve()) in wanted]
        if frames:
            last = frames[-1]
            return f"{Path(last.filename).name}:{last.lineno} in {last.name}"
        error = error.__cause__ or error.__context__
    return None
