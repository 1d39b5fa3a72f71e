"""Declared configs: every `vt` command is one `@dataclass` config + `run(cfg)`; `command(Config, run)`
makes the typer command from the dataclass, so each option is written once, as a field.

    @dataclass
    class ExportConfig:
        \"\"\"Export a built set for other trainers.\"\"\"      # the command's help
        data: Path = field(metadata={"argument": True})
        \"\"\"A dataset built by `vt build-data`.\"\"\"          # the help of DATA
        out: Path = field(default=..., metadata={"flags": ["-o"]})
        \"\"\"Output directory.\"\"\"                            # the help of --out / -o

        def __post_init__(self):                           # checks: VtError -> one-line `error:`
            ...

    export_command = command(ExportConfig, run)

Fields -> options: `--field-name` (+ `metadata["flags"]` aliases), `metadata["argument"]` makes a
positional argument (with `flags`, also accepted as a flag: `DATA` or `--data`), `metadata["cli"] = False` hides a field, a nested dataclass field is flattened
(its fields become flags; the nested instance is built). Types: str, int, float, bool (`--x/--no-x`;
a field named `no_x` is the flag `--no-x`), Path, Optional / `X | None`, list[str] (repeatable),
Literal (choices). The help of an option is the field's attribute docstring (the string right after
the field in the class body, read from the source through the MRO; else `metadata["help"]`).
Every generated command also takes `--config FILE.yaml` (keys = field names; flags win; relative
Path values are relative to the file, like a data manifest's paths), unless the config has its own
`config` field.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import typer

from vtdata.console import VtError

CONFIG_FLAG = "config"
INT_BOUND = 2**63 - 1  # an int option beyond int64 means nothing (and overflows DuckDB, torch, numpy)
ALIAS = "_as_flag"  # the parameter of an argument's flag form (e.g. DATA and --data)


def field_docs(cls: type) -> dict[str, str]:
    """name -> attribute docstring of each field of a class and its bases (a subclass's doc wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(nxt.value.value)
    return docs


def _doc(cls: type) -> str | None:
    doc = cls.__doc__
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclass's generated signature is no help
        return None
    return inspect.cleandoc(doc)


def _unwrap(tp) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return tp, False


@dataclasses.dataclass
class _Opt:
    name: str           # the parameter name (= the field name)
    owner: str | None   # the nested dataclass field it belongs to, if any
    field: dataclasses.Field
    type: Any           # without None
    optional: bool
    required: bool
    default: Any


def _options(cls: type, owner: str | None = None) -> list[_Opt]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_") or f.metadata.get("cli") is False:
            continue
        tp, optional = _unwrap(hints[f.name])
        if dataclasses.is_dataclass(tp):
            if owner is not None:
                raise TypeError(f"{cls.__name__}.{f.name}: configs nest one level only")
            out += _options(tp, owner=f.name)
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        out.append(_Opt(f.name, owner, f, tp, optional or default is None, required, default))
    return out


def _params(opt: _Opt, help_: str) -> list[inspect.Parameter]:
    """The typer parameter of one field. Nothing is required at the click level: a required field may
    come from --config; a missing one is reported after merging (one line)."""
    f, tp = opt.field, opt.type
    flag = "--" + opt.name.replace("_", "-")
    metavar = None
    if tp is bool:
        decls = [flag if opt.name.startswith("no_") else f"{flag}/--no-{opt.name.replace('_', '-')}"]
        annotation: Any = Optional[bool]
    else:
        decls = [flag]
        origin = typing.get_origin(tp)
        if origin is list:
            annotation = Optional[list[str]]
        elif tp in (str, Path):
            annotation = Optional[tp]
        elif origin is Literal or tp in (int, float):  # parsed by `_convert`: a bad value is a one-line error
            annotation = Optional[str]
            metavar = "|".join(map(str, typing.get_args(tp))) if origin is Literal else tp.__name__.upper()
        else:
            raise TypeError(f"field {opt.name}: type {tp!r} is not supported on the command line")
    decls += [] if f.metadata.get("argument") else list(f.metadata.get("flags", []))
    if opt.required:
        help_ = (help_ + " " if help_ else "") + "(required)"
    default = None if opt.required else opt.default  # shown in --help; a value given is told apart by its source
    if not f.metadata.get("argument"):
        info = typer.Option(default, *decls, help=help_, show_default=default not in (None, [], ()), metavar=metavar)
        return [inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)]
    arg = typer.Argument(default, help=help_, metavar=opt.name.upper(), show_default=default is not None)  # str/Path only
    params = [inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=arg, annotation=annotation)]
    if f.metadata.get("flags"):  # a positional argument that may also be given as a flag
        alias = typer.Option(None, *f.metadata["flags"], help=f"{opt.name.upper()} as a flag.", show_default=False)
        params.append(inspect.Parameter(opt.name + ALIAS, inspect.Parameter.KEYWORD_ONLY, default=alias,
                                        annotation=annotation))
    return params


def _from_file(path: Path, opts: list[_Opt], nested: set[str]) -> dict:
    """The values of a --config YAML: field names as keys (a nested config may be a mapping under its
    field name); relative Path values are relative to the file."""
    from vtdata.safeload import load_yaml
    data = load_yaml(path, "--config") or {}
    if not isinstance(data, dict):
        raise VtError(f"--config {path} must be a mapping of option: value")
    flat: dict = {}
    for k, v in data.items():
        k = str(k).replace("-", "_")
        if k in nested and isinstance(v, dict):
            flat.update({str(a).replace("-", "_"): b for a, b in v.items()})
        else:
            flat[k] = v
    known = {o.name: o for o in opts}
    unknown = sorted(set(flat) - set(known))
    if unknown:
        raise VtError(f"--config {path}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for k, v in flat.items():
        if known[k].type is Path and isinstance(v, str):
            flat[k] = v if Path(v).is_absolute() else str(path.parent / v)
    return flat


def command(cfg_cls: type, run: Callable[[Any], Any], context_settings: dict | None = None) -> Callable:
    """A typer command function for `cfg_cls`: its options are the config's fields; it builds
    `cfg_cls(**values)` (checks in `__post_init__` raise VtError) and returns `run(cfg)`."""
    opts = _options(cfg_cls)
    names = [o.name for o in opts]
    dup = {n for n in names if names.count(n) > 1}
    if dup or "ctx" in names:
        raise TypeError(f"{cfg_cls.__name__}: option name(s) {', '.join(sorted(dup or {'ctx'}))} used twice")
    docs = field_docs(cfg_cls)
    nested = _nested(cfg_cls)
    for tp in nested.values():
        docs.update({k: v for k, v in field_docs(tp).items() if k not in docs})
    params = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    # positional arguments first, in field order; then options
    ordered = [o for o in opts if o.field.metadata.get("argument")] + [o for o in opts if not o.field.metadata.get("argument")]
    for o in ordered:
        help_ = docs.get(o.name) or o.field.metadata.get("help", "")
        params += _params(o, " ".join(help_.split()))
    with_file = CONFIG_FLAG not in names
    if with_file:
        params.append(inspect.Parameter(CONFIG_FLAG, inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                        default=typer.Option(None, "--config", help="YAML file of options (keys = "
                                                             "option names with underscores); flags override it.")))

    def fn(ctx: typer.Context, **kw):
        file = kw.pop(CONFIG_FLAG, None) if with_file else None
        values = _from_file(file, opts, set(nested)) if file else {}
        for o in opts:
            flag_form = kw.pop(o.name + ALIAS, None)
            if flag_form is not None:
                if kw[o.name] is not None and kw[o.name] != flag_form:
                    raise VtError(f"{o.name.upper()} given twice ({kw[o.name]} and {flag_form})")
                values[o.name] = flag_form
            src = ctx.get_parameter_source(o.name)
            given = src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")
            if given and kw[o.name] is not None and not (typing.get_origin(o.type) is list and not kw[o.name]):
                values[o.name] = list(kw[o.name]) if typing.get_origin(o.type) is list else kw[o.name]
        return run(build(cfg_cls, values, opts, nested))

    fn.__signature__ = inspect.Signature(params)
    fn.__annotations__ = {p.name: p.annotation for p in params}
    fn.__name__ = f"{cfg_cls.__name__}_command"
    fn.__qualname__ = fn.__name__
    fn.__doc__ = _doc(cfg_cls) or inspect.getdoc(run)
    fn.__module__ = getattr(run, "__module__", cfg_cls.__module__)
    fn.config_class = cfg_cls
    if context_settings:
        fn.context_settings = context_settings
    return fn


def _nested(cfg_cls: type) -> dict:
    """field name -> dataclass type of the config's nested configs (flattened on the command line)."""
    hints = typing.get_type_hints(cfg_cls)
    return {f.name: tp for f in dataclasses.fields(cfg_cls)
            if f.init and dataclasses.is_dataclass(tp := _unwrap(hints[f.name])[0])}


def _flag(o: _Opt) -> str:
    """How the command line names an option: ARG for a positional argument, else --its-flag."""
    return o.name.upper() if o.field.metadata.get("argument") else "--" + o.name.replace("_", "-")


def build(cfg_cls: type, values: dict, opts: list[_Opt] | None = None, nested: dict | None = None):
    """`cfg_cls(**values)` with nested configs built from their flat fields; a missing required option
    or a value of the wrong type is a one-line VtError."""
    opts = _options(cfg_cls) if opts is None else opts
    nested = _nested(cfg_cls) if nested is None else nested
    missing = [o for o in opts if o.required and o.name not in values]
    if missing:
        raise VtError("missing " + ", ".join(_flag(o) for o in missing))
    top, sub = {}, {k: {} for k in nested}
    for o in opts:
        if o.name in values:
            (sub[o.owner] if o.owner else top)[o.name] = _convert(o, values[o.name])
    for k, tp in nested.items():
        if sub[k]:
            top[k] = tp(**sub[k])
    try:
        return cfg_cls(**top)
    except TypeError as err:
        raise VtError(f"bad options: {str(err).splitlines()[0]}") from None


def _bounded(flag: str, v, meta) -> int | float:
    """A number within the field's `metadata["min"]` / `["max"]` (and an int within int64)."""
    if isinstance(v, int) and abs(v) > INT_BOUND:
        raise VtError(f"{flag} {v} is out of range (at most {INT_BOUND})")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and v < lo:
        raise VtError(f"{flag} must be >= {lo}, got {v}")
    if hi is not None and v > hi:
        raise VtError(f"{flag} must be <= {hi}, got {v}" + (f" ({meta['why']})" if meta.get("why") else ""))
    return v


def _convert(o: _Opt, v):
    """A flag's or a file's value as the field's type; a value that is not one is a one-line VtError."""
    flag = _flag(o)
    if v is None:
        if o.required or not o.optional:  # `data: null` in a --config: a field that needs a value got none
            raise VtError(f"{flag} needs a value, got null" + (f" (default {o.default!r})" if not o.required else ""))
        return None
    if typing.get_origin(o.type) is Literal:
        choices = typing.get_args(o.type)
        match = [c for c in choices if str(c) == str(v)]
        if not match:
            raise VtError(f"{flag} must be one of {', '.join(map(str, choices))}, got {v!r}")
        return match[0]
    if o.type in (int, float) and not (isinstance(v, (int, float)) and not isinstance(v, bool)):
        try:
            v = o.type(str(v).strip())
        except ValueError:
            raise VtError(f"{flag} must be {'an integer' if o.type is int else 'a number'}, got {v!r}") from None
    if o.type is float and not math.isfinite(v):  # nan compares false with every bound a check sets
        raise VtError(f"{flag} must be a finite number, got {v!r}")
    if o.name.endswith("api_key_env"):
        from vtdata.console import check_env_name
        check_env_name(v if isinstance(v, str) else str(v), flag)
    if o.type in (str, Path) and isinstance(v, (dict, list)):  # a YAML mapping or list where text goes
        raise VtError(f"{flag} must be {'a path' if o.type is Path else 'a text value'}, got "
                      f"{type(v).__name__} {str(v)[:60]!r}")
    if o.type is int and isinstance(v, float):
        if not v.is_integer():
            raise VtError(f"{flag} must be an integer, got {v!r}")
        v = int(v)
    if o.type in (int, float):
        return _bounded(flag, v, o.field.metadata)
    if o.type is Path and not isinstance(v, Path):
        return Path(v)
    if typing.get_origin(o.type) is list and isinstance(v, (str, Path)):
        return [str(v)]
    return v
