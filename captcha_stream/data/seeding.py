"""Seeded randomness for the captcha package, which draws every number from the unseedable `secrets`.

Patching `captcha.image.secrets` globally would make all renderers in a process share (and race
for) one stream. Instead each renderer gets its own copies of the package's functions whose global
namespace maps `secrets` to a seeded source owned by that renderer: the package's code runs
unmodified, draw for draw, but every draw comes from the renderer's `random.Random`.
"""

from __future__ import annotations

import random
import types
from typing import Any

import numpy as np
from captcha import image as captcha_image

from ..errors import CaptchaStreamError


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from a tuple of non-negative integers (base seed, rank, index, ...).

    SeedSequence mixes the keys so that nearby tuples give unrelated streams, and the
    result does not depend on the process, the platform or PYTHONHASHSEED.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class SeededSecrets:
    """Stands in for the `secrets` module inside the captcha package's functions."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        # below(n) is randbelow(n) for a known positive n, without the check. randrange(n)
        # is _randbelow(n) for n > 0, minus two Python calls; a captcha draws about a
        # hundred of these, so it shows.
        self.below = getattr(rng, "_randbelow", rng.randrange)

    def randbelow(self, exclusive_upper_bound: int) -> int:
        if exclusive_upper_bound <= 0:
            raise ValueError("Upper bound must be positive.")
        return self.below(exclusive_upper_bound)

    def randbits(self, k: int) -> int:
        return self.rng.getrandbits(k)

    def choice(self, seq: Any) -> Any:
        return self.rng.choice(seq)

    def __getattr__(self, name: str) -> Any:
        # A newer captcha release calling something else from `secrets` must not fall
        # back to unseeded randomness silently.
        raise CaptchaStreamError(
            f"the installed captcha package calls secrets.{name}, which captcha_stream does not seed; "
            "pin captcha==0.7.1 or extend captcha_stream.data.seeding.SeededSecrets"
        )


def _rebind(func: types.FunctionType, namespace: dict[str, Any]) -> types.FunctionType:
    clone = types.FunctionType(func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__)
    clone.__kwdefaults__ = func.__kwdefaults__
    clone.__qualname__ = func.__qualname__
    return clone


def seeded_captcha_class(source: SeededSecrets) -> type[captcha_image.ImageCaptcha]:
    """A subclass of ImageCaptcha whose methods draw from `source` instead of `secrets`."""
    module_globals = vars(captcha_image)
    namespace = dict(module_globals)
    namespace["secrets"] = source
    # Module-level helpers (random_color) are called through the globals, so they are
    # cloned into the same namespace.
    for name, value in module_globals.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is module_globals:
            namespace[name] = _rebind(value, namespace)
    members: dict[str, Any] = {}
    for name, value in vars(captcha_image.ImageCaptcha).items():
        if isinstance(value, staticmethod) and isinstance(value.__func__, types.FunctionType):
            members[name] = staticmethod(_rebind(value.__func__, namespace))
        elif isinstance(value, types.FunctionType):
            members[name] = _rebind(value, namespace)
    return type("SeededImageCaptcha", (captcha_image.ImageCaptcha,), members)
