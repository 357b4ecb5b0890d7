"""The upscale options as click options: declared once (vidsr.config.OPTIONS), shared by
`vidsr upscale` and `vidsr watch`. `--preset` fills ctx.default_map, so `--help` shows the
preset's real defaults and any flag given on the command line still wins.
"""

from __future__ import annotations

from typing import Any

import click
from click.core import ParameterSource

from ..config import CODEC_BOUND, OPTION_NAMES, OPTIONS, Option
from ..errors import VidsrError


class Parsed(click.ParamType):
    """A click type that is the option's own parser: one rule for flags, presets and the API."""

    def __init__(self, opt: Option):
        self.opt = opt
        self.name = opt.metavar or opt.name

    def convert(self, value: Any, param, ctx) -> Any:
        try:
            return self.opt.parse(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


def parsed(name: str) -> Parsed:
    """The click type of upscale option `name`, for a command that takes it on its own (eval,
    compare): the same parser, the same messages."""
    return Parsed(OPTION_NAMES[name])


def _apply_preset(ctx: click.Context, param, value: str | None) -> str | None:
    """Eager: the preset's values become this command's defaults before other options parse."""
    if value is None or ctx.resilient_parsing:
        return value
    from ..jobs.presets import load_preset

    try:
        preset = load_preset(value)
    except VidsrError as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    shown = {o.name: o.default for o in OPTIONS}  # None in a preset means the option's "auto"
    defaults = {k: (shown[k] if v is None else v) for k, v in preset.values.items()}
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta["vidsr.preset"] = preset
    return value


def upscale_options(
    fn=None,
    *,
    exclude: tuple[str, ...] = (),
    only: tuple[str, ...] | None = None,
    preset: bool = True,
):
    """Put the upscale options (and --preset) on a command: `upscale`, `watch` and `bench`
    share them. `exclude` leaves out options a command decides itself (the watcher never
    overwrites); `only` keeps just those named (bench); `preset=False` leaves out --preset.
    """
    if fn is None:
        return lambda f: upscale_options(f, exclude=exclude, only=only, preset=preset)
    for opt in reversed(OPTIONS):
        if opt.name in exclude or (only is not None and opt.name not in only):
            continue
        kwargs: dict[str, Any] = {"help": opt.help, "show_default": True}
        if opt.is_flag:
            # A flag flips its default: --overwrite sets True, --no-resume sets False.
            kwargs.update(
                is_flag=True, default=opt.default, flag_value=not opt.default, show_default=False
            )
        else:
            kwargs.update(type=Parsed(opt), default=opt.default)
            if opt.flag_value is not None:  # the value may be left out: `--ray` is `--ray auto`
                kwargs.update(is_flag=False, flag_value=opt.flag_value)
        fn = click.option(*opt.flags, opt.name, **kwargs)(fn)
    if not preset:
        return fn
    return click.option(
        "--preset",
        is_eager=True,
        expose_value=True,
        callback=_apply_preset,
        metavar="NAME|FILE",
        help="fast, balanced, quality, archival (see `vidsr presets`) or a .toml file: its values "
        "become the defaults below; explicit flags override them.",
    )(fn)


def options_from(ctx: click.Context, params: dict[str, Any]) -> dict[str, Any]:
    """The upscale option values of an invocation, with the preset's codec rule applied.

    Taken out of `params` (what is left are the command's own parameters).
    """
    values = {o.name: params.pop(o.name) for o in OPTIONS if o.name in params}
    params.pop("preset", None)
    preset = ctx.meta.get("vidsr.preset")
    explicit = ctx.get_parameter_source("codec") not in (
        ParameterSource.DEFAULT,
        ParameterSource.DEFAULT_MAP,
    )
    if preset is not None and explicit and values.get("codec") != preset.values.get("codec"):
        defaults = {o.name: o.parse(o.default) for o in OPTIONS}
        for key in CODEC_BOUND:
            if ctx.get_parameter_source(key) == ParameterSource.DEFAULT_MAP:
                values[key] = defaults[key]
    return values
