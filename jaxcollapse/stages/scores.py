"""Scores and checks of synthetic points, for filter_top, verify and curate.

A score maps a batch of points to one number per point, higher = better. It is a plain function
`fn(ctx, x) -> [n]`, or an object with `init(real, ctx) -> state` (once, after generation 0, where
ctx.params is the generation-0 model) and `__call__(state, ctx, x) -> [n]`. Shipped:

    source_log_prob()       log-density under the true distribution: a perfect quality check
    generation0_log_prob()  log-density under the generation-0 model: a fixed verifier trained once
                            on real data
    model_log_prob()        log-density under the current model: its own confidence

by name in TOML: score = "source" | "generation0" | "model". Shipped checks (is_good for verify):
in_source_support (the source gives the point positive density).

Registries by name, each filled by its decorator (a plugin's names then count in TOML too):
SCORES (`@register_score("name")` over fn(ctx, x) -> [n], or a score class / object as above),
VERIFIERS (`@register_verifier("name")` over fn(ctx, x) -> [n] bool, verify's is_good) and
REWARDS (`@register_reward("name")` over fn(ctx, x) -> [n], curate's reward).

Scores are static settings of a stage (they fix code): shipped ones compare equal when made
twice, so runs that use them share compiled programs; a user function is compared by identity.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxcollapse._registry import Registry
from jaxcollapse.types import n_points

SCORES = Registry("score")
VERIFIERS = Registry("verifier")
REWARDS = Registry("reward")


def register_score(name: str):
    """Decorator: a score named in TOML (filter_top's score): fn(ctx, x) -> [n] (higher = better), or a
    class / object with init(real, ctx) -> state and __call__(state, ctx, x) -> [n] (a class is made with cls())."""
    return SCORES.register(name)


def register_verifier(name: str):
    """Decorator: a check named in TOML (verify's is_good): fn(ctx, x) -> [n] bool, True for a good point."""
    return VERIFIERS.register(name)


def register_reward(name: str):
    """Decorator: a reward named in TOML (curate's reward): fn(ctx, x) -> [n], higher = picked more often."""
    return REWARDS.register(name)


def _source_params(ctx, who: str):
    if ctx.source.params is None:
        raise ValueError(f"{who} needs the true distribution as the source (its params), not a real data array")
    return ctx.source.params


@register_score("source")
@dataclasses.dataclass(frozen=True)
class SourceLogProb:
    """log p_source(x): a perfect quality check (needs a parametric source)."""

    name = "source"

    def init(self, real, ctx):
        _source_params(ctx, "score 'source'")
        return ()

    def __call__(self, state, ctx, x):
        return ctx.family.log_prob(_source_params(ctx, "score 'source'"), x)


@register_score("generation0")
@dataclasses.dataclass(frozen=True)
class Generation0LogProb:
    """log p_0(x) under the generation-0 model (fitted on real data): a fixed verifier."""

    name = "generation0"

    def init(self, real, ctx):
        return ctx.params

    def __call__(self, state, ctx, x):
        return ctx.family.log_prob(state, x)


@register_score("model")
@dataclasses.dataclass(frozen=True)
class ModelLogProb:
    """log p_t(x) under the current model (the one that generated x): self-confidence."""

    name = "model"

    def init(self, real, ctx):
        return ()

    def __call__(self, state, ctx, x):
        return ctx.family.log_prob(ctx.params, x)


@dataclasses.dataclass(frozen=True)
class FunctionScore:
    """A user's fn(ctx, x) -> [n]."""

    fn: Callable

    @property
    def name(self) -> str:
        return getattr(self.fn, "__name__", "function")

    def init(self, real, ctx):
        return ()

    def __call__(self, state, ctx, x):
        return self.fn(ctx, x)


def source_log_prob() -> SourceLogProb:
    return SourceLogProb()


def generation0_log_prob() -> Generation0LogProb:
    return Generation0LogProb()


def model_log_prob() -> ModelLogProb:
    return ModelLogProb()


def as_score(score) -> Any:
    """A score object from a registered name, a score object, or a plain fn(ctx, x)."""
    if isinstance(score, str):
        if score not in SCORES:
            raise ValueError(f"score must be one of {sorted(SCORES)} or a function (ctx, x) -> [n], got {score!r}")
        score = SCORES[score]
        if isinstance(score, type):
            return score()
    if hasattr(score, "init") and callable(score):
        return score
    if callable(score):
        return FunctionScore(score)
    raise ValueError(f"score must be one of {sorted(SCORES)} or a function (ctx, x) -> [n], got {score!r}")


@register_verifier("source_support")
def in_source_support(ctx, x):
    """True where the source gives x positive density (Categorical: a state the source can emit)."""
    return ctx.family.log_prob(_source_params(ctx, "is_good 'source_support'"), x) > -jnp.inf


def as_check(is_good) -> Callable:
    if isinstance(is_good, str):
        if is_good not in VERIFIERS:
            raise ValueError(f"is_good must be one of {sorted(VERIFIERS)} or a function (ctx, x) -> [n] bool, "
                             f"got {is_good!r}")
        return VERIFIERS[is_good]
    if not callable(is_good):
        raise ValueError(f"is_good must be one of {sorted(VERIFIERS)} or a function (ctx, x) -> [n] bool, "
                         f"got {is_good!r}")
    return is_good


def as_reward(reward) -> Callable:
    """A registered reward's function, by name."""
    if reward not in REWARDS:
        known = ", ".join(map(repr, REWARDS)) or "none is registered"
        raise ValueError(f"reward {reward!r} is not a registered reward ({known}); give one number per state, "
                         "a function (ctx, x) -> [n], or the name of one made with @register_reward")
    return REWARDS[reward]


def check_per_point(what: str, fn: Callable, x, kind: str = "number") -> None:
    """Trace-time check that fn(x) gives one `kind` per point (shape [n]); ValueError naming `what` if not."""
    out = jax.eval_shape(fn, x)
    n = n_points(x)
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != (n,):
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"{what} must return one {kind} per point, shape ({n},), got {shape}")
    if kind == "number" and not (jnp.issubdtype(out.dtype, jnp.floating) or jnp.issubdtype(out.dtype, jnp.integer)):
        raise ValueError(f"{what} must return real numbers, got dtype {out.dtype}")
