"""A run's config, built in one place (``build_config``) whatever the entry point: a
command's flags (``resolve_config``), ``raypkg.run``'s keywords, a config file (YAML or
JSON, a path or a URI), a tune space's trial (``raypkg.tune_space``), a bench's settings. The
config given (a file, a mapping or a config object), the flags or keywords on top, older
keys upgraded, and the settings of the algorithms its ``stack`` names (``--with``, or a
name's ``+``: ``raypkg.engine.config.parse_stack``) mixed into its class
(``raypkg.algorithms.stacked_class``; a method that does not stack is refused with an
example from the recipe registry, ``stacks_onto``).

The engine's ``TrainConfig`` (``raypkg.engine.config``) is only the settings; this module
sits above the engine, the methods and the recipe registry, so it may know them all.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from raypkg.algorithms import stackable, stacked_class
from raypkg.engine.config import TrainConfig, check_needs, config_fields, flag_aliases, listed, parse_stack, stack_of
from raypkg.errors import UsageError
from raypkg.method_registry import import_object
from raypkg.recipe_registry import find_recipe, load_recipes, stacks_onto
from raypkg.storage import basename, first_line, read_bytes

# Keys of older configs (--amp/--no-amp came before --precision): for each value, today's keys
# it stands for, and the values of today's keys it agrees with (any other is a contradiction).
LEGACY_KEYS = {"amp": {True: ({}, {"precision": ("auto", "bf16")}),
                       False: ({"precision": "fp32"}, {"precision": ("fp32",)})}}


def check_file_memory_format(cfg, file_values: dict[str, Any], given, path) -> None:
    """``memory_format: channels_last`` from a config file (a run's config.yaml records what
    auto chose for its model) on a model without convolution (the file re-run with
    ``--model mlp``) is refused naming the file, not a flag the user never typed."""
    if (file_values.get("memory_format") != "channels_last" or "memory_format" in given
            or getattr(cfg, "memory_format", None) != "channels_last"):
        return
    from raypkg.engine.execution import check_memory_format, model_is_convolutional

    recorded = f" for its model {file_values['model']}" if file_values.get("model") else ""
    check_memory_format(cfg, model_is_convolutional(str(cfg.model)),
                        where=f" from config file {str(path)!r} (a run's config.yaml records what --memory-format "
                              f"auto chose{recorded})")


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the
    last one silently)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"key {', '.join(repeated)} is given twice",
                                                    node.start_mark)
        return super().construct_mapping(node, deep=deep)


MOST_YAML_VALUES = 100_000  # values (scalars, lists, mappings) a config or space file may expand to


def expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded (``sizes``: by node, each
    shared node counted once here, however often it is referred to)."""
    if id(node) not in sizes:
        children = ([part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        sizes[id(node)] = 1 + sum(expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def load_yaml(text: str) -> Any:
    """The one YAML parser of config and space files: ``UniqueKeyLoader``, and a document
    whose aliases (``&a``/``*a``) expand it past ``MOST_YAML_VALUES`` values (a "billion
    laughs" bomb: a few hundred bytes that stand for billions of values) is a ``yaml.YAMLError``,
    measured on the parsed node graph before any value is built (in milliseconds)."""
    loader = UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = expanded_size(node, {})
        except RecursionError:
            size = MOST_YAML_VALUES + 1
        if size > MOST_YAML_VALUES:
            raise yaml.YAMLError(f"it expands to more than {MOST_YAML_VALUES:,} values through its aliases "
                                 "(&name, *name): write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``json`` keeps the last one silently)."""
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise json.JSONDecodeError(f"key {', '.join(repeated)} is given twice", "", 0)
    return dict(pairs)


def read_config_file(path: str | Path, cls=TrainConfig) -> dict[str, Any]:
    """Read a YAML or JSON mapping of config keys from a path or a URI pyarrow opens
    (``s3://bucket/runs/r/config.yaml``, ``file://...``); unknown or repeated keys are a
    UsageError."""
    try:
        text = read_bytes(path, "--config").decode("utf-8")
    except OSError as e:
        raise UsageError(f"cannot read config file {str(path)!r}: {e.strerror or first_line(e)}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {str(path)!r} is not a text file (YAML or JSON)") from None
    try:
        if basename(path).endswith(".json"):
            data = json.loads(text, object_pairs_hook=unique_json_object)
        else:
            data = load_yaml(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        first = str(e).splitlines()[0]
        raise UsageError(f"config file {str(path)!r} is not valid YAML/JSON: {first}") from None
    if data is None or data == {}:  # it would run every default in silence
        raise UsageError(f"config file {str(path)!r} is empty: give it KEY: VALUE lines, or leave out --config")
    if not isinstance(data, dict):
        raise UsageError(f"config file {str(path)!r} must hold a mapping of keys to values")
    data = upgraded(data, cls)
    cls = with_stack(cls, stack_of(data.get("stack")), f"config file {str(path)!r}: stack")
    unknown = sorted(str(k) for k in set(data) - config_fields(cls))
    if unknown:
        raise UsageError(f"unknown key(s) {listed(unknown)} in config file {str(path)!r}; "
                         f"allowed: {', '.join(sorted(config_fields(cls)))}")
    return data


def with_stack(cls, stack: tuple[str, ...], where: str = "--with") -> type:
    """``cls`` with the settings of the algorithms of ``stack`` (``--with``, or as ``where``
    names it in a refusal)."""
    if "stack" not in config_fields(cls):
        return cls
    return stacked_class(getattr(cls, "BASE", cls), stack, where, stacks_onto)


def check_settings_known(cls, values: dict[str, Any], given=(), what: str = "", needs: str = "--with {}") -> None:
    """Every key of ``values`` is a field of ``cls``; a stackable algorithm's setting without
    that algorithm in the stack says what adds it (``needs``, formatted with its name)."""
    unknown = sorted(set(values) - config_fields(cls))
    owners = {key: name for key in unknown for name, m in stackable().items() if key in config_fields(import_object(m.settings))}
    stray = [key for key in unknown if key not in owners]
    if stray:
        raise UsageError(f"unknown setting(s) {listed(stray)} {what}".rstrip())
    if owners:
        key, owner = next(iter(owners.items()))
        flag = f"--{key.replace('_', '-')}" if key in given else key
        raise UsageError(f"{flag} is a setting of {owner}: it needs {needs.format(owner)}")


def upgraded(values: dict[str, Any], cls=TrainConfig) -> dict[str, Any]:
    """``values`` with the keys of older configs replaced by today's (``amp: false`` is
    ``precision: fp32``); a key given both ways must agree (``amp: false`` with
    ``precision: bf16`` is a contradiction, refused in one line)."""
    if "precision" not in config_fields(cls):
        return values
    out = {k: v for k, v in values.items() if k not in LEGACY_KEYS}
    for key, meanings in LEGACY_KEYS.items():
        if key not in values:
            continue
        value = values[key]
        if not isinstance(value, bool):
            raise UsageError(f"{key} must be true or false, got {value!r}")
        new, agrees = meanings[value]
        for name, allowed in agrees.items():
            if name in values and values[name] not in allowed:
                raise UsageError(f"{key}: {str(value).lower()} and {name}: {values[name]} contradict each other "
                                 f"({key} is the older key for {name}); give {name} alone")
        for name, today in new.items():
            out.setdefault(name, today)
    return out


def build_config(method: str | type, config: Any = None, given: Mapping[str, Any] | None = None, *,
                 data: Any = None, where: str = "--with") -> Any:
    """The one config builder, of every entry point: a command's flags, ``raypkg.run``'s
    keywords, a config file, a tune space's trial, a bench's settings.

    ``method``: a recipe name, with a stack joined by ``+`` (``"infobatch+sparse"``), or a
    config class (a command's). ``config``: None, a config object (of any recipe), a mapping,
    or a config file's path or URI (a run's config.yaml). ``given``: the flags or keywords
    given, on top (a flag of a group in ``cls.EXCLUSIVE`` drops the config's values of its
    whole group); ``data``: the API's ``data=`` (the dataset). Returns the config resolved,
    not validated (``Recipe.run`` validates, once); a config object of the class it would
    make, with nothing on top, is returned as it is (the CLI's, handed to ``raypkg.run``)."""
    if not isinstance(method, (str, type)):  # raypkg.run(None), run(123)
        raise UsageError(f"method must be a recipe name (one of: {', '.join(sorted(load_recipes()))}), "
                         f"got {method!r}")
    base, named = parse_stack(method) if isinstance(method, str) else (None, ())
    cls = find_recipe(base).config_cls if isinstance(method, str) else method  # find_recipe refuses ''
    what = f"for {method}" if base else ""
    values, from_file = config_values(config, cls)
    aliases = flag_aliases(cls)  # the flag's other name: select's method= for selection=
    given = {aliases.get(key, key): value for key, value in (given or {}).items()}
    for group in getattr(cls, "EXCLUSIVE", ()):
        if given.keys() & set(group):
            values = {k: v for k, v in values.items() if k not in group}
    values.update(given)
    if data is not None:
        values["dataset"] = data
    stack = stack_of(values.get("stack"))
    if named:  # "infobatch+sparse": the stack in the name
        twice = [name for name in stack if name in named] if "stack" in given else []
        if twice:  # stack= names it again, as --with sparse,sparse would (a config's own stack may repeat it)
            raise UsageError(f"stack names {twice[0]} twice: the method {method!r} names it already")
        stack = (*named, *(name for name in stack if name not in named))
        values["stack"] = list(stack)
    cls = with_stack(cls, stack, where)
    if type(config) is cls and not given and data is None:
        return config  # made by this builder already (the CLI's), or by hand: Recipe.run checks it
    for key in ("model", "dataset"):
        if key in values:
            values[key] = import_path(values[key])
    check_settings_known(cls, values, given, what=what)
    try:
        cfg = cls(**values).resolved()
    except TypeError as e:  # a value of the wrong type in the file, e.g. `epochs: [3]`
        raise UsageError(f"bad config value: {e}") from None
    check_needs(cfg, given)  # a flag or keyword given where it cannot act, even at its default value
    check_file_memory_format(cfg, from_file, given, config)
    return cfg


def config_values(config: Any, cls: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """The values of ``config`` (None, a config object, a mapping, or a config file's path or
    URI, read as ``cls``'s), and those of them that came from a file."""
    if isinstance(config, (str, os.PathLike)):
        values = read_config_file(config, cls)
        return values, dict(values)
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config), {}
    if config is None or isinstance(config, Mapping):
        return dict(config or {}), {}
    raise UsageError(f"config must be a config object, a mapping or a config file's path, got "
                     f"{type(config).__name__}")


def resolve_config(cls=TrainConfig, config_file: str | None = None, **flags) -> Any:
    """A command's config: ``build_config`` of its class, its ``--config`` file and the flags
    that were given (click's None and () are flags not given)."""
    return build_config(cls, config_file, {k: v for k, v in flags.items() if v is not None and v != ()})


def import_path(obj: Any) -> str:
    """``"module:qualname"`` of a module-level function or class (a name stays as it is)."""
    if isinstance(obj, str):
        return obj
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not name or "<" in name:
        raise UsageError(f"{obj!r} is not a module-level function or class: define it at the top level of a "
                         "module (or pass its name or 'module:name')")
    return f"{module}:{name}"
