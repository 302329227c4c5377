"""Shared click options (training flags that mirror TrainConfig, list-valued flags and their
checks, --set, --wandb) and what the commands print. (Over 400 lines: every command's
list flags are parsed and refused here, so that each kind of value has one check.)"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import typing
from typing import Sequence

import click

from raypkg.errors import EXIT_STATUS, Interrupted, RunFailed, UsageError, check_int64, choose
from raypkg.interrupts import release_logging_lock, sigterm_as_interrupt, stopped_by

INTERRUPTED = "interrupted: stopped by {by}; no half-written run directory is kept"

# Flags that take several values, written either `--lr 0.1 0.05` (the DeltaGrad README's
# form) or `--lr 0.1,0.05`. `join_list_flags` rewrites the first form into the second
# before click parses the command line.
LIST_FLAGS = ("--lr", "--lrlen", "--milestones")


def join_list_flags(args: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in LIST_FLAGS:
            values = []
            i += 1
            while i < len(args) and not _is_flag(args[i]):
                values.append(args[i])
                i += 1
            out.append(",".join(values))
            continue
        i += 1
    return out


def run_standalone(call) -> None:
    """Run ``call()`` (a click ``main(..., standalone_mode=False)``) and exit with its
    status; bad input of any kind ends as one line ``error: ...`` and status 2, a failed
    run (``RunFailed``) as one ``error: ...`` line and status 1, Ctrl-C as one line
    ``interrupted: ...`` and status 130 (what an ``Interrupted`` says, where it says something:
    a frontier's kept points), SIGTERM as Ctrl-C with status 143 (``raypkg.interrupts``)."""
    from raypkg.distributed.cluster import set_address

    set_address(None)  # until this command's --address says otherwise
    try:
        with sigterm_as_interrupt():
            try:
                status = call()
            except (KeyboardInterrupt, click.exceptions.Abort):  # Abort: click's Ctrl-C, without EffrayGroup
                raise Interrupted(by=stopped_by()) from None
    except (UsageError, RunFailed) as e:
        sys.exit(report_error(e))
    except Interrupted as e:
        release_logging_lock()  # a Ctrl-C inside wandb.init would otherwise hang the exit
        click.echo(f"interrupted: {e}" if str(e) else INTERRUPTED.format(by=e.by), err=True)
        sys.exit(EXIT_STATUS[e.by])
    except click.ClickException as e:
        where = f" (see '{e.ctx.command_path} --help')" if getattr(e, "ctx", None) else ""
        click.echo(f"error: {e.format_message()}{where}", err=True)
        sys.exit(e.exit_code)
    sys.exit(status if isinstance(status, int) else 0)


def report_error(e: UsageError | RunFailed) -> int:
    """Print ``error: ...`` (one line on stderr); the exit status: 2 for bad input, 1 for a
    run that failed."""
    click.echo(f"error: {e}", err=True)
    return 2 if isinstance(e, UsageError) else 1


def _is_flag(arg: str) -> bool:
    """``-h``, ``--epochs``: a flag; ``-0.5``, ``1e-3``: a value."""
    if not arg.startswith("-"):
        return False
    try:
        float(arg)
        return False
    except ValueError:
        return True


class EffrayGroup(click.Group):
    """Accepts `--lr 0.1 0.05` list flags, expands `~` in `--out=~/x` (``expand_home``), and
    turns bad input (our UsageError, and click's own errors such as `--epochs abc`) into
    one line ``error: ...`` on stderr with exit status 2 (no traceback), a failed run
    (RunFailed) into one line with status 1 and Ctrl-C into one line ``interrupted: ...``
    with status 130, for itself and every subcommand below it."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        run_standalone(lambda: super(EffrayGroup, self).main(args, prog_name, complete_var,
                                                              standalone_mode=False, **extra))

    def parse_args(self, ctx, args):
        from raypkg.paths import expand_home

        return super().parse_args(ctx, [expand_home(a) for a in join_list_flags(args)])

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (UsageError, RunFailed) as e:
            ctx.exit(report_error(e))
        except KeyboardInterrupt:  # past every `with` clean-up below; click would say "Aborted!"
            raise Interrupted(by=stopped_by()) from None

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        return name, command and with_plugin_flags(command, rest), rest


def with_plugin_flags(command: click.Command, args: list[str]) -> click.Command:
    """``command`` with the flags of the plug-in methods that ``--with`` names in ``args``
    (``--with mypkg.prune:LossPruning --keep 0.5``), hidden as a built-in's are
    (``stacked_fields``): a copy, the command itself unchanged. A command without --with,
    or a --with of built-ins only, is returned as it is."""
    import copy

    if not any(p.name == "stack" for p in command.params):
        return command
    given = [a.split("=", 1)[1] if a.startswith("--with=") else b for a, b in zip(["", *args], [*args, ""])
             if a.startswith("--with=") or a == "--with"]
    named = [name.strip() for value in given for name in value.split(",") if name.strip()]
    if not any(is_plugin_name(name) for name in named):
        return command
    from raypkg.method_registry import find_method

    own = {opt for p in command.params for opt in p.opts}
    added = []
    for name in named:
        method = find_method(name) if is_plugin_name(name) else None  # one line if it does not load
        if method is None or method.stacks or not method.plugin:
            continue  # refused with the stack, in its words
        from raypkg.algorithms import method_settings

        options = config_options(method_settings(method))(lambda: None).__click_params__
        for option in options:
            option.hidden = True
        added += [o for o in options if not set(o.opts) & own]
        own |= {opt for o in options for opt in o.opts}
    widened = copy.copy(command)
    widened.params = [*command.params, *added]
    return widened


def is_plugin_name(name: str) -> bool:
    """A method name that is not a registry row: an import path, or an installed entry point's."""
    from raypkg.method_registry import METHODS
    from raypkg.plugins import plugin_target

    return name not in {m.name for m in METHODS} and plugin_target("method", name) is not None


def parse_numbers(text, kind: type) -> list:
    """The numbers of a list flag (``0.1,0.05`` or ``0.1 0.05``) as ``kind``; ValueError if one is
    not, or an item is empty (``0.1,,0.05``, ``0.1,``)."""
    if not str(text).strip():
        return []
    return [kind(v) for item in str(text).split(",") for v in (item.split() or [""])]


class NumberList(click.ParamType):
    name = "list"

    def __init__(self, kind: type):
        self.kind = kind

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            numbers = parse_numbers(value, self.kind)
        except ValueError:
            self.fail(f"{value!r} is not a list of {self.kind.__name__} values", param, ctx)
        for number in numbers if self.kind is int else ():
            check_int64(param.opts[0] if param else "integer", number)
        return numbers


FLOATS, INTS = NumberList(float), NumberList(int)


class Int64(click.types.IntParamType):
    """click's integer, refused beyond 64 bits by ``check_int64`` (the one check of an
    integer's size, a config file's and the API's too), before it reaches any code."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        check_int64(param.opts[0] if param else "integer", number)
        return number


class Int64Range(click.IntRange):
    """``click.IntRange`` with ``Int64``'s check."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        check_int64(param.opts[0] if param else "integer", number)
        return number


def bound_integers(command: click.Command) -> click.Command:
    """``command`` (and every command of a group, a lazy one's as it loads) with each integer
    flag's type made ``Int64`` (an ``IntRange`` keeps its range): no entry point takes an
    integer torch and numpy cannot hold, whoever wrote the flag."""
    for param in command.params:
        kind = param.type
        if type(kind) is click.types.IntParamType:
            param.type = Int64()
        elif type(kind) is click.IntRange:
            param.type = Int64Range(kind.min, kind.max, kind.min_open, kind.max_open, kind.clamp)
    if isinstance(command, click.Group) and type(command).get_command is click.Group.get_command:
        for sub in command.commands.values():
            bound_integers(sub)
    return command


class NameList(click.ParamType):
    name = "names"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        names = [item.strip() for item in str(value).split(",")]
        if not all(names):
            self.fail(f"{value!r} is not a comma-separated list of names", param, ctx)
        return names


NAMES = NameList()


class ListOption(click.Option):
    """A flag whose value is a list: each time it is given adds to the list, so
    ``--with sparse --with infobatch`` is ``--with sparse,infobatch`` and the duplicate
    check of the comma form sees every item (``--with infobatch --with infobatch`` is
    refused as ``--with infobatch,infobatch`` is). A typed list (``NAMES``, ``FLOATS``,
    ``INTS``) parses to one list; a plain one (a bench's ``--methods``) to one string of the
    items joined by ``sep``, read later by ``name_list`` or ``number_list``. Not given, it
    parses to its default (None if it has none). A single-valued flag keeps click's rule:
    the last one given wins."""

    def __init__(self, *args, sep: str = ",", **kwargs):
        default = kwargs.pop("default", None)
        default = list(default) if isinstance(default, tuple) else default
        if kwargs.get("show_default") is True and default is not None:
            kwargs["show_default"] = sep.join(map(str, default)) if isinstance(default, list) else str(default)
        super().__init__(*args, multiple=True, default=None if default is None else (default,), **kwargs)
        self.sep = sep

    def type_cast_value(self, ctx, value):
        items = super().type_cast_value(ctx, value)
        if not items:
            return None
        if all(isinstance(item, list) for item in items):
            return [v for item in items for v in item]
        return self.sep.join(str(item) for item in items)


def list_option(*names: str, **kwargs):
    """``click.option`` of a list-valued flag (``ListOption``)."""
    return click.option(*names, cls=ListOption, **kwargs)


# The counts where 0 means none.
MAY_BE_ZERO = {"pretrain_epochs", "workers", "actors", "cli_runs", "gd_epochs", "gd_init", "online_requests"}


def check_bench_numbers(**values) -> None:
    """Sizes and counts must be >= 1, those of MAY_BE_ZERO >= 0 (None: not given), each a
    64-bit integer; fraction in (0, 1]; ``seeds`` (seeds 0 .. N-1) as ``check_seed_count``."""
    for name, value in values.items():
        flag, least = "--" + name.replace("_", "-"), 0 if name in MAY_BE_ZERO else 1
        if name == "fraction" and value is not None and not 0 < value <= 1:
            raise UsageError(f"{flag} must be in (0, 1], got {value:g}")
        if name != "fraction" and value is not None:
            check_int64(flag, value)
            if value < least:
                raise UsageError(f"{flag} must be >= {least}, got {value}")
            if name == "seeds":
                check_seed_count(value)


def check_seed_count(count: int, first: int = 0, flag: str = "--seeds") -> None:
    """``--seeds N`` of a bench runs seeds ``first`` .. ``first`` + N - 1, each a run of every
    row: each must be a seed (below 2**32, as ``--seed`` is), else a one-line UsageError
    before any work (not a bench that runs seed after seed until it is stopped)."""
    from raypkg.engine.config import SEED_LIMIT

    check_int64(flag, count)
    if first + count > SEED_LIMIT:
        raise UsageError(f"{flag} {count} runs seeds {first} .. {first + count - 1}; a seed must be below 2**32 "
                         f"(at most {SEED_LIMIT - first} seeds from {first})")


def once_each(values: list, flag: str) -> list:
    """``values`` if none is repeated (a repeated item is one row twice, its reference
    ambiguous), else a one-line UsageError."""
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{flag} names {', '.join(repeated)} more than once")
    return values


def number_list(text: str, flag: str, what: str, kind: type = float, minimum: float | None = None,
                example: str = "0.05,0.01", unit: bool = False) -> list:
    """Numbers of ``kind`` as the list flags take them (``--density 0.05,0.01``, ``--workers 1,2``),
    each once, finite, at least ``minimum`` when given and in (0, 1] with ``unit``, else a
    one-line UsageError."""
    try:
        values = parse_numbers(text, kind)
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and (minimum is None or v >= minimum) and (not unit or 0 < v <= 1)
                             for v in values):
        bound = " in (0, 1]" if unit else "" if minimum is None else f" >= {minimum}"
        raise UsageError(f"{flag} takes comma-separated {what}{bound}, e.g. {example}; got {text!r}")
    for value in values if kind is int else ():
        check_int64(flag, value)
    return once_each(values, flag)


def name_list(text: str, flag: str, allowed=None, what: str = "name") -> list[str]:
    """Comma-separated names, each once (and one of ``allowed`` when given), else a one-line UsageError."""
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise UsageError(f"{flag} takes comma-separated names, got {text!r}")
    if not all(names):
        raise UsageError(f"{flag} {text!r} has an empty item: give comma-separated names, none empty")
    return once_each([choose(what, n, allowed) for n in names] if allowed is not None else names, flag)


def _set_address(ctx, param, value):
    from raypkg.distributed.cluster import set_address

    set_address(value)


def address_option(func):
    """``--address``: the Ray cluster to join (recorded for ``raypkg.distributed.cluster.connect_ray``)."""
    return click.option("--address", expose_value=False, callback=_set_address,
                        help="Ray cluster to join (HOST:PORT or ray://HOST:PORT). Default: RAY_ADDRESS "
                             "if set (as `ray job submit` sets it), else a private local Ray.")(func)


def config_options(cls: type, only: Sequence[str] | None = None, skip: Sequence[str] = (),
                   defaults: dict | None = None, fill_defaults: bool = False, more_help: dict | None = None):
    """Click options made from the fields of config dataclass ``cls`` (see
    ``raypkg.engine.config.setting``): ``--field-name`` with the field's type, help, choices
    and default in the help (``defaults`` overrides the defaults shown, for a command that
    fills in its own). All parse to None when absent, so --config values stay.

    ``fill_defaults=True`` (a bench's flags, no --config): each option parses to its default
    when absent, the ``defaults`` value or else the field's, shown as click's ``[default: ...]``.
    ``more_help`` maps a field name to text appended to its help."""
    def decorate(func):
        options = []
        fields = [(f, cls, False) for f in dataclasses.fields(cls)]
        if "stack" in {f.name for f, _, _ in fields} and "stack" not in skip and not fill_defaults and only is None:
            fields += stacked_fields(cls)
        for f, owner, hidden in fields:
            meta = f.metadata
            if not meta.get("cli", True) or f.name in skip or (only is not None and f.name not in only):
                continue
            kind = type_hints(owner)[f.name]
            args = typing.get_args(kind)
            base = next((a for a in args if a is not type(None)), kind) if type(None) in args else kind
            flag = meta.get("flag") or "--" + f.name.replace("_", "-")
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            default = (defaults or {}).get(f.name, default)
            help_text = " ".join(filter(None, [meta.get("help"), (more_help or {}).get(f.name),
                                               f.name == "stack" and stack_help()]))
            if fill_defaults:
                given = {"default": default, "show_default": True, "help": help_text}
            else:
                shown = "" if default is None or default == [] else f" Default: {default_text(default)}."
                given = {"default": None, "help": help_text + shown, "hidden": hidden}
            names = flag.split("/") if "/" in flag and base is not bool else [flag]
            if base is bool:
                switch = flag if "/" in flag else f"{flag}/--no-{flag[2:]}"
                options.append(click.option(switch, f.name, **given))
            elif meta.get("choices"):
                options.append(click.option(*names, f.name, type=click.Choice(list(meta["choices"])), **given))
            elif typing.get_origin(base) is list:
                item = typing.get_args(base)[0]
                options.append(list_option(*names, f.name, type={float: FLOATS, int: INTS, str: NAMES}[item],
                                           **given))
            elif base in (int, float, str):
                options.append(click.option(*names, f.name, type=base, **given))
        return functools.reduce(lambda fn, opt: opt(fn), reversed(options), func)

    return decorate


@functools.cache
def type_hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def stacked_fields(cls: type) -> list:
    """(field, its class, hidden) of every stackable algorithm's setting that ``cls`` lacks:
    flags that act with ``--with NAME`` (refused without it), out of ``--help``."""
    from raypkg.algorithms import stackable
    from raypkg.method_registry import import_object

    own = {f.name for f in dataclasses.fields(cls)}
    out = []
    for method in stackable().values():
        settings = import_object(method.settings)
        out += [(f, settings, True) for f in dataclasses.fields(settings) if f.name not in own]
        own |= {f.name for f in dataclasses.fields(settings)}
    return out


def stack_help() -> str:
    """The names ``--with`` takes, from the registry (``raypkg.method_registry``)."""
    from raypkg.algorithms import stackable

    return f"Those that stack: {', '.join(stackable())}."


def default_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def config_file_option(func):
    return click.option("--config", "config_file", type=click.Path(dir_okay=False),
                        help="YAML/JSON file of config keys (e.g. a run's config.yaml); flags override it.")(func)


def train_options(func):
    """``--config FILE``, the TrainConfig flags and ``--address``."""
    from raypkg.engine.config import TrainConfig

    return address_option(config_file_option(config_options(TrainConfig)(func)))


def parse_options(pairs: tuple[str, ...], flag: str = "--option") -> dict | None:
    """``("eta=0.05", "batch=4")`` -> ``{"eta": 0.05, "batch": 4}`` (values read as YAML, by
    the config files' parser: ``raypkg.config.load_yaml``)."""
    import yaml

    from raypkg.config import load_yaml

    if not pairs:
        return None
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} takes KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = load_yaml(value) if value.strip() else None
        except yaml.YAMLError as e:
            raise UsageError(f"{flag} {pair!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return out


def set_option(help: str):
    """``--set KEY=VALUE``, repeatable (read by ``parse_options``, or a bench's ``bench_settings``)."""
    return click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help=help)


def bench_settings(pairs: tuple[str, ...], allowed: set[str], what: str, own_flags: set[str] = frozenset(),
                   flag: str = "--set") -> dict:
    """``--set KEY=VALUE`` pairs (values read as YAML) as config fields of ``allowed``; other
    keys, and those the bench sets from its own flags or per row, are refused in one line."""
    extra = parse_options(pairs, flag) or {}
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise UsageError(f"{flag}: {', '.join(unknown)} is not a {what} setting (underscores for dashes)")
    taken = sorted(set(extra) & own_flags)
    if taken:
        raise UsageError(f"{flag} {', '.join(taken)}: the bench sets it (use its own flag)")
    return extra


def _check_target_acc(ctx, param, value):
    from raypkg.engine.config import check_target_acc

    return None if value is None else check_target_acc(value, param.opts[0].lstrip("-"))


def target_acc_option(help: str, flag: str = "--target-acc", **kwargs):
    """``--target-acc`` (or another accuracy ``flag``) of a command that is not a training
    config's (``report``, ``bench frontier``, ``bench sparse``): checked by the same function
    as a training config's (nan refused)."""
    return click.option(flag, type=float, callback=_check_target_acc, help=help, **kwargs)


def wandb_option(help: str):
    """``--wandb offline|online|disabled`` (default offline: never a prompt for a key). The
    modes are tracking.wandb_logger.WANDB_MODES, written out: importing raypkg.tracking
    imports pandas, which `effray --help` does not."""
    return click.option("--wandb", type=click.Choice(("offline", "online", "disabled")), default="offline",
                        show_default=True, help=help)


def print_summary(summary: dict) -> None:
    """A run's summary in two lines: accuracy, wall time and phases; its run directory."""
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in summary.get("phases", {}).items())
    if "epochs_s" in summary:
        phases += f"; in epochs {summary['epochs_s']:.1f}s, outside them {summary['overhead_s']:.1f}s"
    acc = summary.get("test_acc")
    click.echo(f"{summary['method']} {summary['dataset']}/{summary['model']}: "
               f"test_acc {acc:.4f}  wall {summary['wall_s']:.1f}s  ({phases})" if acc is not None
               else f"{summary['method']}: wall {summary['wall_s']:.1f}s ({phases})")
    echo_run_directory(summary)


def echo_run_directory(summary: dict) -> None:
    """The last line of a run's output, its run directory; before it, with --storage, where
    the run directory was copied."""
    if summary.get("storage"):
        click.echo(f"copied to storage: {summary['storage']}")
    click.echo(f"run directory: {summary['run_dir']}")


def print_table(rows: list[dict], columns: list[str], formats: dict[str, str] | None = None) -> None:
    """Aligned columns; floats as 4 significant digits unless ``formats`` names a format, NaN as -."""
    def fmt(c, v):
        if v is None or isinstance(v, float) and math.isnan(v):
            return "-"
        return format(v, (formats or {}).get(c, ".4g")) if isinstance(v, float) else str(v)

    widths = {c: max(len(c), *(len(fmt(c, r.get(c, ""))) for r in rows)) for c in columns}
    for cells in [{c: c for c in columns}] + [{c: fmt(c, r.get(c, "")) for c in columns} for r in rows]:
        click.echo("  ".join(cells[c].ljust(widths[c]) for c in columns))
