"""The engine's contract as a check any family or stage can run: the built-in ones, and your own.

    report = jc.testing.check_family(family, source)          # AssertionError, in words, if anything fails
    report = jc.testing.check_stage(stage, family, source)
    report = jc.testing.check_family(family, source, raise_on_failure=False)   # report.ok, report.failures

check_family runs, in this order (each failure is one sentence in the report; every check runs even
after another failed, except those that need a run that could not be made):
  - the protocol: every member of jaxcollapse.Family is there; no optional hook is declared in part
    (the engine would ignore it); a `has_stats` flag agrees with the SufficientStats hook; the family
    is a JAX pytree; points drawn by sample() have point_shape and point_dtype (or point_struct).
  - one run: `n_chains` chains of `n_generations` generations with 25% real data in every training set
    (jc.keep_real(0.25)) and snapshots: no chain fails and no metric is NaN.
  - vmapped == replayed: each chain of that run equals the chain run alone from `res.chain_key(i)`.
  - chunked == one piece: the run in chunks of 3 generations equals it bit for bit.
  - traced numbers: the family with `traced` new values (and keep_real(0.5)) runs without tracing the
    engine's programs again (jaxcollapse.engine.trace_count()) and changes the numbers.
  - a zero-weight point equals the point removed: fit on n points + one outlier of weight 0 equals the
    fit on the n points (rtol 1e-4, atol 1e-5), and the outlier with weight 1 moves the fit.
  - records finite at collapse: one chain refitted on its own samples (replace) for
    `collapse_generations` generations, the family's functions called as the engine calls them
    (generate_local / fit_local where declared): no metric is NaN and every fit is finite.
  - each optional hook the family declares (families/base.py HOOKS), against the required methods:
    sufficient statistics fit as the points do (merged halves as the whole); generate_local's points
    are generate's and fit_local fits them as fit does; chain_source is a function of its key;
    record_params gives a NamedTuple; resize_params keeps the model (log_prob) in the new shape;
    heldout_size held-out points reach the chain; the fit in pieces ends where fit() does.

Tolerances: `rtol=None` asks vmapped chains to equal replayed ones bit for bit. A family whose numbers a
batch of chains computes in differently vectorised float32 code (iterative fits: EM, Adam; XLA may fuse
a batch otherwise than one chain) passes a tolerance (the built-in GMM, VAE and transformer use 1e-3).
Chunked runs are always compared bit for bit. The hook comparisons use max(rtol, 1e-4), atol a tenth.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcollapse.engine.program import trace_count
from jaxcollapse.engine.simulate import simulate
from jaxcollapse.families import base
from jaxcollapse.stages import base as stages_base
from jaxcollapse.stages import mixing
from jaxcollapse.types import Context, TrainingSet, draw_real, n_points, weights

__all__ = ["Report", "check_family", "check_stage"]

CHUNK = 3            # generations per chunk of the chunked run
HOOK_RTOL = 1e-4     # the zero-weight and hook comparisons (fits computed along two paths)


@dataclasses.dataclass
class Report:
    """What check_family / check_stage found.

    passed: the checks that passed; failed: those that did not; failures: one sentence per thing found wrong
    (a check may find several); skipped: checks that did not apply, and why. ok: nothing failed.
    """

    subject: str
    passed: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    failures: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    _open: int = dataclasses.field(default=0, repr=False)   # checks running now (their failures are theirs)

    @property
    def ok(self) -> bool:
        return not self.failures

    def __str__(self) -> str:
        n = len(self.passed) + len(self.failed)
        head = (f"{self.subject}: all {n} checks passed" if self.ok
                else f"{self.subject}: {len(self.failed)} of {n} checks failed")
        lines = [head] + [f"  FAILED: {f}" for f in self.failures] + [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)

    def raise_if_failed(self) -> "Report":
        """The report itself, or one AssertionError that lists every failure."""
        if not self.ok:
            raise AssertionError(str(self))
        return self

    @contextlib.contextmanager
    def check(self, what: str):
        """Run one check: a failure it appends stays; an exception becomes the sentence '<what> raised ...'."""
        before = len(self.failures)
        self._open += 1
        try:
            yield
        except Exception as error:  # noqa: BLE001  (a check reports, it does not stop the others)
            self.failures.append(f"{what} raised {type(error).__name__}: {_first_line(error)}")
        finally:
            self._open -= 1
        (self.passed if len(self.failures) == before else self.failed).append(what)

    def fail(self, sentence: str) -> None:
        """One thing found wrong (outside a check, it is a check of its own)."""
        self.failures.append(sentence)
        if not self._open:
            self.failed.append(sentence)


def check_family(family, source, *, n_samples: int = 8, traced: dict | None = None, rtol: float | None = None,
                 model: Callable | None = None, n_chains: int = 3, n_generations: int = 4,
                 collapse_generations: int = 100, collapse_samples: int | None = None, key=7,
                 raise_on_failure: bool = True) -> Report:
    """Check a family against the engine's contract (the module's docstring lists the checks).

    Args:
      family: the family object (a registered built-in or your own).
      source: what jc.simulate takes: the true params, a real data array, or a jc.Source.
      n_samples: points per training set in every run.
      traced: {field: new value} of the family's traced numbers (fields that fix no shape); None or {}:
        only the stage's fraction changes in the traced-number check.
      rtol: None: vmapped chains equal replayed ones bit for bit; else within rtol (atol rtol / 10), for
        families whose float32 fits iterate (a batch is vectorised otherwise than one chain).
      model: (family, params) -> what "the same model" compares in the zero-weight and hook checks
        (default: the params; the KDE, whose params hold its training set, compares log_prob on a grid).
      n_chains, n_generations: the size of the run the engine checks share.
      collapse_generations, collapse_samples: the collapse check's chain (samples default: n_samples).
      key: an int seed or a JAX key.
      raise_on_failure: True: one AssertionError naming every failure; False: return the Report.

    Returns:
      The Report (.ok, .failures, .passed, .skipped).

    Examples:
      A family passes (about 20 s of compiling on 2 CPU cores, so not run here), or raises in words:

      >>> import jaxcollapse as jc
      >>> fam = jc.Categorical(3)
      >>> jc.testing.check_family(fam, fam.make_params([0.5, 0.3, 0.2])).ok   # doctest: +SKIP
      True

      What a failure says (this one is found before anything compiles):

      >>> class Coin:
      ...     def sample(self, key, params, n): ...
      >>> report = jc.testing.check_family(Coin(), None, raise_on_failure=False)
      >>> report.ok
      False
      >>> print(report.failures[0])  # doctest: +NORMALIZE_WHITESPACE
      the family lacks check_data, check_params, check_settings, fit, generate, log_prob, metrics, point_dtype,
      point_shape of the Family protocol (jaxcollapse.Family)
    """
    report = Report(_name(family))
    if not _protocol(report, family):
        return _finish(report, raise_on_failure)
    key = _key(key)
    project = (lambda params: params) if model is None else (lambda params: model(family, params))
    with report.check("the source and n_samples are accepted (make_source, check_settings)"):
        checked = base.make_source(family, source)
        family.check_settings(n_samples)
    if len(report.failures):
        return _finish(report, raise_on_failure)

    run = dict(n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
               snapshot_at=sorted({0, n_generations}))
    regime, other_regime = mixing.keep_real(0.25), mixing.keep_real(0.5)
    other = None
    if traced:
        with report.check(f"the family takes new values of {sorted(traced)} (dataclasses.replace)"):
            other = dataclasses.replace(family, **traced)
    _engine(report, family, source, key, run, regime, other if other is not None else family, other_regime,
            rtol, traced=sorted(traced or {}), stage_change="keep_real's fraction 0.25 -> 0.5")

    fits = _Fits(family)
    _zero_weight(report, family, checked, n_samples, fits, project)
    _collapse(report, family, checked, collapse_samples or n_samples, collapse_generations, fits, key)
    _hooks(report, family, checked, n_samples, fits, project, rtol)
    return _finish(report, raise_on_failure)


def check_stage(stage, family, source, *, n_samples: int = 8, traced: dict | None = None,
                rtol: float | None = None, n_chains: int = 3, n_generations: int = 4, collapse_generations: int = 32,
                key=7, raise_on_failure: bool = True) -> Report:
    """Check a stage (made with @jc.stage) against the engine's contract, run with `family` from `source`.

    Runs: vmapped == replayed chains, chunked == one piece (bit for bit), a new value of the stage's
    traced numbers (`traced={"field": value}`) runs without tracing the engine's programs again and
    changes the numbers, one generation's training set has finite weights >= 0 (one per point, or
    sufficient statistics), and `collapse_generations` generations with the stage keep every metric
    (the stage's record(state) included) free of NaN. Tolerances and the Report: as check_family.

    Examples:
      >>> import jaxcollapse as jc
      >>> fam = jc.Categorical(3)
      >>> stage = jc.fresh_real(0.5)
      >>> src = fam.make_params([0.5, 0.3, 0.2])
      >>> jc.testing.check_stage(stage, fam, src, traced={"fraction": 0.25}).ok   # doctest: +SKIP
      True
      >>> print(jc.testing.check_stage(object(), fam, None, raise_on_failure=False).failures[0])
      ... # doctest: +ELLIPSIS
      <object object at ...> is not a stage: make its class with @jaxcollapse.stage (init and update)
    """
    report = Report(f"stage {stages_base.describe(stage)}")
    if not isinstance(stage, stages_base.Stage) or not dataclasses.is_dataclass(stage):
        report.fail(f"{stage!r} is not a stage: make its class with @jaxcollapse.stage (init and update)")
        return _finish(report, raise_on_failure)
    if not _protocol(report, family):
        return _finish(report, raise_on_failure)
    key = _key(key)
    other = stage
    if traced:
        with report.check(f"the stage takes new values of {sorted(traced)} (dataclasses.replace)"):
            other = dataclasses.replace(stage, **traced)
    run = dict(n_chains=n_chains, n_generations=n_generations, n_samples=n_samples,
               snapshot_at=sorted({0, n_generations}))
    _engine(report, family, source, key, run, stage, family, other, rtol, traced=sorted(traced or {}),
            stage_change=None, subject="the stage")
    with report.check("one generation's training set has finite weights >= 0"):
        _one_update(report, stage, family, base.make_source(family, source), n_samples, key)
    with report.check(f"records finite over {collapse_generations} generations with the stage"):
        res = simulate(key, family, source, n_chains=2, n_generations=collapse_generations, n_samples=n_samples,
                       regime=stage)
        _no_nan(report, res, f"a run of {collapse_generations} generations with the stage")
    return _finish(report, raise_on_failure)


# ---------------------------------------------------------------- the protocol
def _protocol(report: Report, family) -> bool:
    """The static checks; False when the family is too incomplete for the engine to run."""
    missing = base.missing_members(family)
    if missing:
        report.fail(f"the family lacks {', '.join(missing)} of the Family protocol (jaxcollapse.Family)")
        return False
    report.passed.append("every member of the Family protocol is there")
    for hook, absent in base.partial_hooks(family).items():
        report.fail(f"the family declares the {hook} hook only in part (no {', '.join(absent)}): "
                    "the engine ignores it")
    flag = getattr(family, "has_stats", None)
    if flag is not None and bool(flag) != base.has_sufficient_stats(family):
        report.fail(f"has_stats is {bool(flag)} but the family {'lacks' if flag else 'has'} "
                    "stats / merge_stats / fit_stats (the SufficientStats hook)")
    leaves, _ = jax.tree_util.tree_flatten(family)
    if len(leaves) == 1 and leaves[0] is family:
        report.fail("the family is not a JAX pytree: make its class with @jaxcollapse.families.base.family(static=...)")
        return False
    return True


def _points_match(report: Report, family, points, what: str) -> None:
    struct = base.point_struct(family)
    got = jax.tree_util.tree_structure(points)
    if got != jax.tree_util.tree_structure(struct):
        report.fail(f"{what} returned points structured as {got}, the family declares {struct}")
        return
    for s, a in zip(jax.tree_util.tree_leaves(struct), jax.tree_util.tree_leaves(points)):
        if tuple(a.shape[1:]) != tuple(s.shape) or np.dtype(a.dtype) != np.dtype(s.dtype):
            report.fail(f"{what} returned points of shape {tuple(a.shape[1:])} and dtype {np.dtype(a.dtype)}, "
                        f"the family declares point_shape {tuple(s.shape)} and point_dtype {np.dtype(s.dtype)}")


# ---------------------------------------------------------------- the engine's runs
def _engine(report, family, source, key, run, regime, other_family, other_regime, rtol, *, traced, stage_change,
            subject="the family"):
    """One run and what it is compared with: replayed chains, the chunked run, new traced numbers."""
    res = None
    with report.check(f"{run['n_chains']} chains of {run['n_generations']} generations run without failing"):
        res = simulate(key, family, source, regime=regime, **run)
        failed = np.flatnonzero(res.failed)
        if failed.size:
            g = int(np.flatnonzero(~np.asarray(res.info.finite)[failed[0]])[0])
            report.fail(f"chain {failed[0]} produced non-finite params at generation {g} (info.finite)")
        _no_nan(report, res, "the run")
    if res is None:
        report.skipped.append("replayed chains, the chunked run and traced numbers: the run itself failed")
        return
    how = "bit for bit" if rtol is None else f"within rtol {rtol:g}"
    with report.check(f"each vmapped chain equals the chain replayed alone from res.chain_key(i) ({how})"):
        for i in range(res.n_chains):
            alone = simulate(res.chain_key(i), family, source, regime=regime, **{**run, "n_chains": 1})
            diff = _differences(res.chain(i), alone.chain(0), rtol, ("generation",), res.snapshot_at)
            if diff:
                report.fail(f"chain {i} replayed alone from res.chain_key({i}) differs from the vmapped run in {diff}")
    with report.check(f"a run in chunks of {CHUNK} generations equals the one-piece run bit for bit"):
        chunked = simulate(key, family, source, regime=regime, chunk_size=CHUNK, **run)
        diff = _differences(res, chunked, None, ("chain", "generation"), res.snapshot_at)
        if diff:
            report.fail(f"the run in chunks of {CHUNK} generations differs from the one-piece run in {diff}")
    changes = [f"new values of {subject}'s {', '.join(traced)}"] if traced else []
    changes += [stage_change] if stage_change else []
    if not changes:
        report.skipped.append(f"traced numbers: no traced= values given for {subject}")
        return
    said = " and ".join(changes)
    with report.check(f"{said} run without compiling anew and change the numbers"):
        before = trace_count()
        changed = simulate(key, other_family, source, regime=other_regime, **run)
        if trace_count() != before:
            report.fail(f"{said} traced the engine's program again ({trace_count() - before} new traces): "
                        "a number that fixes no shape must be a pytree leaf, not a static field")
        if not _differences(res, changed, None, ("chain", "generation"), res.snapshot_at, sections=("metrics",)):
            report.fail(f"{said} left every metric unchanged: the new values were not used")


def _no_nan(report: Report, res, what: str) -> None:
    for path, a in jax.tree_util.tree_flatten_with_path(res.metrics)[0]:
        a = np.asarray(a)
        if np.issubdtype(a.dtype, np.inexact) and np.isnan(a).any():
            where = _where(tuple(np.argwhere(np.isnan(a))[0]), ("chain", "generation"), ())
            report.fail(f"{what} recorded NaN in metrics{jax.tree_util.keystr(path)} at {where}")


def _differences(a, b, rtol, axes, snapshot_at, sections=("params", "metrics", "info", "snapshots")) -> str | None:
    """Where two results differ, in words: '<array> at chain 1, generation 3 (x against y; k of n entries differ)',
    then the names of the other arrays that differ; None where they are the same."""
    out = []
    for section in sections:
        left, right = getattr(a, section), getattr(b, section)
        (lleaves, ltree), (rleaves, rtree) = (jax.tree_util.tree_flatten_with_path(left),
                                              jax.tree_util.tree_flatten_with_path(right))
        if ltree != rtree:
            out.append((section, f"{section}, structured as {ltree} against {rtree}"))
            continue
        for (path, x), (_, y) in zip(lleaves, rleaves):
            name = section + jax.tree_util.keystr(path)
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape:
                out.append((name, f"{name}, of shape {x.shape} against {y.shape}"))
                continue
            bad = _mismatch(x, y, rtol)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                names = (axes[:1] + ("snapshot",)) if section == "snapshots" and len(axes) == 2 else axes
                names = ("snapshot",) if section == "snapshots" and len(axes) == 1 else names
                out.append((name, f"{name} at {_where(index, names, snapshot_at)} ({_number(x[index])} against "
                                  f"{_number(y[index])}; {int(bad.sum())} of {bad.size} entries differ)"))
    if not out:
        return None
    others = [name for name, _ in out[1:]]
    more = "" if not others else f", and in {len(others)} more array{'s' if len(others) > 1 else ''} ({', '.join(others)})"
    return out[0][1] + more


def _number(value) -> str:
    value = np.asarray(value)
    if value.dtype == bool or np.issubdtype(value.dtype, np.integer):
        return str(value.item())
    return f"{float(value):.9g}"


def _mismatch(x, y, rtol):
    if np.issubdtype(x.dtype, np.inexact) or np.issubdtype(y.dtype, np.inexact):
        x, y = x.astype(np.float64), y.astype(np.float64)
        if rtol is None:
            return ~((x == y) | (np.isnan(x) & np.isnan(y)))
        return ~np.isclose(x, y, rtol=rtol, atol=rtol / 10, equal_nan=True)
    return x != y


def _where(index, names, snapshot_at) -> str:
    parts = []
    for axis, i in enumerate(index):
        name = names[axis] if axis < len(names) else None
        if name == "snapshot":
            parts.append(f"the snapshot of generation {snapshot_at[i]}" if i < len(snapshot_at) else f"snapshot {i}")
        elif name is not None:
            parts.append(f"{name} {i}")
    rest = index[len(names):]
    if rest:
        parts.append(f"entry {rest[0] if len(rest) == 1 else rest}")
    return ", ".join(parts) if parts else "the only entry"


# ---------------------------------------------------------------- direct checks of the family's functions
class _Fits:
    """The family's functions, each compiled once and shared by the checks below."""

    def __init__(self, family):
        self.fit = jax.jit(family.fit)
        self.generate = jax.jit(family.generate, static_argnums=2)
        if base.has_local_coordinates(family):
            self.generate_local = jax.jit(family.generate_local, static_argnums=2)
            self.fit_local = jax.jit(family.fit_local)


def _zero_weight(report, family, source, n, fits, project):
    with report.check("a zero-weight point equals the point removed"):
        x = draw_real(family, source, jax.random.key(3), n)
        _points_match(report, family, x, "sample()")
        init, _ = fits.fit(jax.random.key(4), x, weights(n), None)
        extra = jax.tree_util.tree_map(lambda a: a[:1] * 0 + 3, x)   # an outlier that would move any fit
        padded = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), x, extra)
        w = jnp.concatenate([weights(n), jnp.zeros(1, weights(1).dtype)])
        kept = project(fits.fit(jax.random.key(5), padded, w, init)[0])
        alone = project(fits.fit(jax.random.key(5), x, weights(n), init)[0])
        diff = _tree_diff(kept, alone, HOOK_RTOL)
        if diff:
            report.fail(f"a point of weight 0 changed the fit ({diff}): the fit must read w")
        with_point = project(fits.fit(jax.random.key(5), padded, weights(n + 1), init)[0])
        if not _tree_diff(with_point, alone, HOOK_RTOL):
            report.fail("an outlier (every coordinate 3) of weight 1 left the fit unchanged: the check cannot tell "
                        "a zero weight from an ignored point")


def _collapse(report, family, source, n, generations, fits, key):
    what = f"records finite over {generations} generations of a chain refitted on its own {n} samples"
    with report.check(what):
        view = base.chain_view(family, jax.random.fold_in(key, 0xFFFFFFFF), source, n)
        k_real, k_fit = jax.random.split(jax.random.fold_in(key, 0))
        params, info = fits.fit(k_fit, draw_real(family, view, k_real, n), weights(n), None)
        local = base.has_local_coordinates(family)
        history = [(params, info)]
        for g in range(1, generations + 1):
            k_gen, k_fit = jax.random.split(jax.random.fold_in(key, g))
            if local:
                _, coords = fits.generate_local(k_gen, params, n, view)
                params, info = fits.fit_local(k_fit, coords, weights(n), params)
            else:
                params, info = fits.fit(k_fit, fits.generate(k_gen, params, n, view), weights(n), params)
            history.append((params, info))
        for g, (params, info) in enumerate(history):
            if not bool(info.finite):
                report.fail(f"the fit returned non-finite params at generation {g} of a chain refitted on its own "
                            f"{n} samples (the engine's 'failed' flag)")
                return
        metrics = jax.jit(family.metrics)
        for g, (params, _) in enumerate(history):
            for path, a in jax.tree_util.tree_flatten_with_path(metrics(key, params, view))[0]:
                if jnp.issubdtype(a.dtype, jnp.inexact) and np.isnan(np.asarray(a)).any():
                    report.fail(f"metrics{jax.tree_util.keystr(path)} is NaN at generation {g} of a chain refitted on "
                                f"its own {n} samples: a collapsed model's metrics must stay finite (or +-inf)")
                    return


def _hooks(report, family, source, n, fits, project, rtol):
    declared = base.hooks(family)
    tol = max(rtol or 0.0, HOOK_RTOL)
    x = draw_real(family, source, jax.random.key(3), n)
    w = weights(n)
    k = jax.random.key(5)
    view = base.chain_view(family, jax.random.key(6), source, n)
    params = None
    with report.check("generate() returns points of point_shape and point_dtype"):
        params = fits.fit(jax.random.key(4), x, w, None)[0]
        _points_match(report, family, jax.eval_shape(lambda: family.generate(k, params, n, view)), "generate()")
    if params is None:
        return
    with report.check("generate(key, ...) draws from its key (two keys, two samples)"):
        if not _tree_diff(fits.generate(jax.random.key(11), params, n, view), fits.generate(k, params, n, view), 0.0):
            report.fail("generate(key, ...) returned the same points for two keys: it must draw from the key it is "
                        "given (else every chain and generation repeats one sample)")
    if "sufficient_stats" in declared:
        with report.check("fit_stats(stats(x, w)) fits as fit does, and merged halves as the whole"):
            half = n // 2
            first, rest = (jax.tree_util.tree_map(lambda a: a[:half], x), jax.tree_util.tree_map(lambda a: a[half:], x))

            @jax.jit
            def by_stats(x, w):
                whole = family.fit_stats(family.stats(x, w))[0]
                merged = family.fit_stats(family.merge_stats(family.stats(first, w[:half]),
                                                             family.stats(rest, w[half:])))[0]
                return whole, merged

            whole, merged = by_stats(x, w)
            diff = _tree_diff(project(whole), project(fits.fit(k, x, w, None)[0]), tol)
            if diff:
                report.fail(f"fit_stats(stats(x, w)) differs from fit(key, x, w, None) ({diff})")
            diff = _tree_diff(project(merged), project(whole), tol)
            if diff:
                report.fail(f"merge_stats of two halves' stats fits otherwise than the whole's ({diff})")
    if "local_coordinates" in declared:
        with report.check("generate_local's points are generate's, and fit_local fits them as fit does"):
            points, coords = fits.generate_local(k, params, n, view)
            diff = _tree_diff(points, fits.generate(k, params, n, view), 1e-5)
            if diff:
                report.fail(f"generate_local(key, ...)'s points differ from generate(key, ...)'s ({diff})")
            diff = _tree_diff(project(fits.fit_local(k, coords, w, params)[0]), project(fits.fit(k, points, w, params)[0]),
                              tol)
            if diff:
                report.fail(f"fit_local on the generated points' own coordinates differs from fit on the points ({diff})")
    if "chain_source" in declared:
        with report.check("chain_source(key, source, n_samples) is a Source and a function of its key"):
            again = base.chain_view(family, jax.random.key(6), source, n)
            if type(again) is not type(source):
                report.fail(f"chain_source returned a {type(again).__name__}, not a jaxcollapse Source")
            elif _tree_diff(again, view, None):
                report.fail("chain_source gave two different sources for the same key: it must draw from its key only")
    if "record_params" in declared:
        with report.check("record_params(params) is a NamedTuple of arrays"):
            recorded = family.record_params(params)
            if not hasattr(recorded, "_asdict"):
                report.fail(f"record_params returned a {type(recorded).__name__}: record= names need a NamedTuple")
    if "resize_params" in declared:
        with report.check("resize_params(params, like) takes like's shapes and keeps the model"):
            x2 = jax.tree_util.tree_map(lambda a: jnp.concatenate([a, a]), x)
            like = jax.eval_shape(lambda: fits.fit(k, x2, weights(2 * n), None)[0])
            resized = family.resize_params(params, like)
            shapes = jax.tree_util.tree_map(lambda a: (tuple(a.shape), np.dtype(a.dtype)), (resized, like))
            if shapes[0] != shapes[1]:
                report.fail(f"resize_params returned {shapes[0]}, not like's shapes {shapes[1]}")
            diff = _tree_diff(family.log_prob(resized, x), family.log_prob(params, x), tol)
            if diff:
                report.fail(f"resize_params changed the model: log_prob of the same points differs ({diff})")
    if "heldout" in declared and source.params is None:
        report.skipped.append("heldout_size: the source holds data, not a distribution, so no held-out points are drawn")
    elif "heldout" in declared:
        size = base.heldout_size(family)
        with report.check(f"a parametric source's chain gets heldout_size ({size}) held-out points"):
            got = None if view.heldout is None else n_points(view.heldout)
            if got != size:
                report.fail(f"the chain's source holds {got} held-out points, heldout_size says {size}")
    if "fit_in_pieces" in declared:
        with report.check("fit_begin, fit_iterate while fit_running, fit_end ends where fit does"):
            @jax.jit
            def in_pieces(key, x, w, init):
                state, data = family.fit_begin(key, x, w, init)
                states, datas = jax.tree_util.tree_map(lambda a: a[None], (state, data))
                states = jax.lax.while_loop(lambda s: jnp.any(jax.vmap(family.fit_running)(s)),
                                            lambda s: family.fit_iterate(s, datas), states)
                return family.fit_end(jax.tree_util.tree_map(lambda a: a[0], states), data)

            diff = _tree_diff(project(in_pieces(k, x, w, params)[0]), project(fits.fit(k, x, w, params)[0]), tol)
            if diff:
                report.fail(f"the fit in pieces ends elsewhere than fit() ({diff})")


def _tree_diff(a, b, rtol) -> str | None:
    """None if two pytrees are equal (within rtol, atol rtol / 10; None: bit for bit), else where they differ."""
    (la, ta), (lb, tb) = jax.tree_util.tree_flatten_with_path(a), jax.tree_util.tree_flatten_with_path(b)
    if ta != tb:
        return f"structured as {ta} against {tb}"
    for (path, x), (_, y) in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            return f"{jax.tree_util.keystr(path).lstrip('.') or 'the value'}: shape {x.shape} against {y.shape}"
        bad = _mismatch(x, y, rtol)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            return (f"{jax.tree_util.keystr(path).lstrip('.') or 'the value'}{list(index) if index else ''}: "
                    f"{_number(x[index])} against {_number(y[index])}")
    return None


def _one_update(report, stage, family, source, n, key):
    """One generation's training set, formed by the stage for one chain (weights finite and >= 0)."""
    one = jax.tree_util.tree_map(lambda a: a[0], stages_base.per_chain(stage, 1))
    n_batch = stage.batch_size(n)

    @jax.jit
    def form(key, one):
        k_real, k_fit, k_gen, k_stage = jax.random.split(key, 4)
        real = draw_real(family, source, k_real, n)
        params, _ = family.fit(k_fit, real, weights(n), None)
        ctx = Context(family, params, source, jnp.asarray(1, jnp.int32), 1, n, k_real)
        state = one.init(real, ctx)
        batch = TrainingSet(family.generate(k_gen, params, n_batch, source), weights(n_batch))
        return one.update_to_fit(k_stage, state, batch, ctx)[1]

    training = form(key, one)
    if training.stats is not None:
        return
    w = np.asarray(training.w)
    if w.shape != (n_points(training.x),):
        report.fail(f"the training set holds {n_points(training.x)} points but weights of shape {w.shape}")
    elif not np.all(np.isfinite(w)) or (w < 0).any():
        report.fail(f"the training set's weights must be finite and >= 0, got {w[~(np.isfinite(w) & (w >= 0))][:3]}")


# ---------------------------------------------------------------- small helpers
def _finish(report: Report, raise_on_failure: bool) -> Report:
    return report.raise_if_failed() if raise_on_failure else report


def _key(key):
    return jax.random.key(key) if isinstance(key, (int, np.integer)) else key


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


def _name(family) -> str:
    registered = getattr(type(family), "registry_name", None)
    return type(family).__name__ + (f" (registered as {registered!r})" if registered else " (not registered)")
