"""Reading the entries of a `transformers` config.json by name, and refusing what is not implemented.

A config.json holds many entries; an architecture's converter reads those that change the forward
pass (sizes, epsilons, RoPE, biases), each with transformers' default when absent, and names the
entry it refuses. Entries that only matter for initialization, training or transformers' own
runtime (initializer_range, time_step_*, use_cache, ...) are listed by the converter as ignored;
others are ignored as transformers itself ignores entries its config class does not define.
"""
import numbers

from ..errors import UserError


class HFConfig:
    """A config.json dict and where it came from; each getter checks the entry's type."""

    def __init__(self, config, where):
        self.config, self.where = config, where

    def _value(self, name, default):
        """The entry, or `default` when it is absent or null (transformers writes null for "the default")."""
        value = self.config.get(name)
        return default if value is None else value

    def _bad(self, name, value, what):
        return UserError(f"{self.where}: config.json entry {name!r} is {value!r}, not {what}")

    def count(self, name, default=None, minimum=1):
        """A whole number >= minimum (JSON has no int/float distinction for 2.0: refused, as transformers
        would build a layer of size 2.0)."""
        value = self._value(name, default)
        if value is None:
            raise UserError(f"{self.where}: config.json has no {name!r}")
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self._bad(name, value, f"a whole number >= {minimum}")
        return value

    def number(self, name, default):
        value = self._value(name, default)
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value > 0:
            raise self._bad(name, value, "a positive number")
        return float(value)

    def flag(self, name, default):
        value = self._value(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, value, "true or false")
        return value

    def get(self, name, default=None):
        return self._value(name, default)

    def refuse(self, name, value, supported):
        """UserError: entry `name` has a value whose forward hybridref does not implement."""
        return UserError(f"{self.where}: config.json entry {name!r} = {value!r} is not supported by the conversion "
                         f"({supported})")

    def require(self, name, default, allowed, supported):
        """The entry's value (default when absent), refused unless it is one of `allowed`."""
        value = self._value(name, default)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise self.refuse(name, value, supported)
        return value
