"""The mixer registry: every sequence mixer (attention, Mamba, ...) registers itself under a letter,
used in layer patterns ("MMMAMM"), and a name, used for its kernel files and its C decode step.

    @register_mixer("M", "mamba")
    class Mamba(Module):
        mlp_ratio = 2.5                      # default MLP width of its blocks: round(2.5 · d_model)
        test_options = dict(d_state=4)       # small sizes the conformance suite builds it with
        def __init__(self, d, rng, d_state=16, d_conv=4, expand=2, out_std=None): ...

A mixer's options are the keyword parameters of its constructor after (d, rng), less `out_std`
(the init scale of residual output projections, which the model sets); their defaults are the
constructor's, so they are stated once. A model config stores, per letter of its pattern, every
option's value; `resolve_options` fills in defaults, so a config written before an option existed
still loads.

Every module of hybridref.layers is imported the first time the registry is read, so a new mixer
module registers itself without being listed anywhere.
"""
import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field

_MIXERS = {}  # letter -> MixerSpec
_discovered = False
_NOT_OPTIONS = ("self", "d", "rng", "out_std")


@dataclass(frozen=True)
class MixerSpec:
    letter: str
    name: str
    cls: type
    options: dict = field(default_factory=dict)  # option -> default
    mlp_ratio: float = 4.0
    test_options: dict = field(default_factory=dict)

    def mlp_hidden(self, d):
        """The default MLP width of a block holding this mixer."""
        return int(round(self.mlp_ratio * d))

    def build(self, d, rng, options, out_std=None):
        return self.cls(d, rng, out_std=out_std, **options)


def register_mixer(letter, name):
    """Class decorator: register a mixer under a one-character `letter` and a `name` (an identifier:
    its kernel files are backends/numpy/<name>.py, backends/c/<name>.py, csrc/<name>_step.c)."""
    if not (isinstance(letter, str) and len(letter) == 1 and letter.isalpha()):
        raise ValueError(f"register_mixer: a mixer's letter must be one letter, got {letter!r}")
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"register_mixer: a mixer's name must be an identifier, got {name!r}")

    def add(cls):
        from .mixer import Mixer
        if not issubclass(cls, Mixer):
            raise TypeError(f"register_mixer: {cls.__name__} must derive from hybridref.layers.mixer.Mixer")
        params = inspect.signature(cls.__init__).parameters
        for required in ("d", "rng", "out_std"):
            if required not in params:
                raise TypeError(f"register_mixer: {cls.__name__}.__init__ must take (d, rng, ..., out_std=None)")
        options = {k: p.default for k, p in params.items() if k not in _NOT_OPTIONS
                   and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        missing = [k for k, v in options.items() if v is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"register_mixer: options {missing} of {cls.__name__} need defaults")
        for other in _MIXERS.values():
            if (other.letter == letter or other.name == name) and other.cls.__qualname__ != cls.__qualname__:
                raise ValueError(f"register_mixer: {letter!r}/{name!r} is taken by {other.cls.__name__} "
                                 f"({other.letter}={other.name})")
        _MIXERS[letter] = MixerSpec(letter, name, cls, options, float(getattr(cls, "mlp_ratio", 4.0)),
                                    dict(getattr(cls, "test_options", {})))
        cls.letter, cls.mixer_name = letter, name
        return cls

    return add


def _discover():
    global _discovered
    if not _discovered:
        _discovered = True
        import hybridref.layers as pkg
        for info in pkgutil.iter_modules(pkg.__path__):
            importlib.import_module(f"hybridref.layers.{info.name}")


def mixers():
    """{letter: MixerSpec} of every registered mixer, in the order of their names: registration follows the
    order of imports, which differs between processes (a module imported early registers early), and
    whatever lists the mixers (the scaling grid and its report, error messages) must not."""
    _discover()
    return dict(sorted(_MIXERS.items(), key=lambda item: item[1].name))


def known():
    return ", ".join(f"{s.letter}={s.name}" for s in mixers().values())


def mixer_spec(letter):
    spec = mixers().get(letter)
    if spec is None:
        raise ValueError(f"unknown mixer letter {letter!r}; known: {known()}")
    return spec


def check_pattern(pattern):
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"layer pattern must be a non-empty string of mixer letters ({known()}), got {pattern!r}")
    unknown = sorted(set(pattern) - set(mixers()))
    if unknown:
        raise ValueError(f"layer pattern {pattern!r}: unknown mixer letters {unknown}; known: {known()}")
    return pattern


def resolve_options(pattern, mixers_cfg=None, defaults=None, flat=None, strict=True):
    """{letter: {option: value}} for every letter of `pattern`, each option set, in this order of
    precedence: mixers_cfg[letter] (per mixer), flat (an option given once, for every mixer of the
    pattern that has it), defaults[letter] (the model's own defaults), the mixer's.

    Unknown letters or options are a ValueError naming what is known. A flat option of a mixer the
    pattern does not use is ignored (a config written before options were stored per mixer holds
    every mixer's options, whatever its pattern); with strict=False so is one no mixer has.""" 
    check_pattern(pattern)
    mixers_cfg, defaults, flat = dict(mixers_cfg or {}), dict(defaults or {}), dict(flat or {})
    letters = sorted(set(pattern), key=pattern.index)
    extra = sorted(set(mixers_cfg) - set(letters))
    if extra:
        raise ValueError(f"mixer options given for {extra}, which the pattern {pattern!r} does not use")
    out = {}
    for letter in letters:
        spec = mixer_spec(letter)
        given = mixers_cfg.get(letter) or {}
        if not isinstance(given, dict):
            raise ValueError(f"options of mixer {letter} ({spec.name}) must be a dict, got {given!r}")
        bad = sorted(set(given) - set(spec.options))
        if bad:
            raise ValueError(f"mixer {letter} ({spec.name}) has no option {bad[0]!r}; its options: "
                             f"{', '.join(spec.options) or 'none'}")
        own = {k: v for k, v in flat.items() if k in spec.options}
        out[letter] = {**spec.options, **defaults.get(letter, {}), **own, **given}
    if strict:
        unknown = sorted(k for k in flat if not any(k in spec.options for spec in mixers().values()))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an option of any mixer; options: " +
                             "; ".join(f"{s.letter} ({s.name}): {', '.join(s.options)}" for s in mixers().values()))
    return out


def resolve_mlp_hidden(pattern, d, mlp_hidden=None):
    """{letter: MLP width} for the letters of `pattern`: an int for all, a dict per letter (letters
    it leaves out, and None, take the mixer's default width)."""
    check_pattern(pattern)
    letters = sorted(set(pattern), key=pattern.index)
    if mlp_hidden is None or isinstance(mlp_hidden, dict):
        given = mlp_hidden or {}
        return {c: int(given[c]) if c in given else mixer_spec(c).mlp_hidden(d) for c in letters}
    if isinstance(mlp_hidden, bool) or not isinstance(mlp_hidden, int) or mlp_hidden < 0:
        raise ValueError(f"mlp_hidden must be an int >= 0 or a dict {{letter: width}}, got {mlp_hidden!r}")
    return {c: mlp_hidden for c in letters}
