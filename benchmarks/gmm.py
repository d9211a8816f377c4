"""GMM collapse chains: jaxcollapse against the two baselines a careful researcher would run on a CPU.

The paper's setting (Shumailov et al.): source N(0, I_2), K = 2, full covariance, 1000 samples per
generation, tol 1e-5, max_iter 2000, k-means init afresh each generation. In one run, for each
chain count:
  - jaxcollapse: one `jc.simulate` call (vmap over chains, float32); compile time printed apart
    (first call minus a timed call), the timed call the best of --repeats;
  - vectorised NumPy (benchmarks/numpy_gmm.py): all chains at once, [C, K, d, n] float32 arrays,
    batched linear algebra, an active set of still-iterating chains, jaxcollapse's k-means init;
    in one process, and split over --processes processes (one per core);
  - scikit-learn as the paper's code (one GaussianMixture fit per chain per generation, float64,
    its own k-means init), one single-threaded process per core (multiprocessing, threadpoolctl
    limits and OMP/OPENBLAS threads 1). Its fits run one after another, so its rate does not
    depend on the chain count: it runs --sklearn-chains chains per process once.
The NumPy and scikit-learn processes get OMP/OPENBLAS/MKL_NUM_THREADS=1 and glibc malloc
thresholds that keep freed arrays in the heap (this VM's page faults cost NumPy up to 2x); the
jaxcollapse process runs as started.

Rates are chain-generations per second (cg/s) = chains x (generations + 1) / seconds. Break-even:
the run size (chain-generations) below which NumPy finishes first once jaxcollapse's compile time
is counted, compile / (1 / numpy rate - 1 / jaxcollapse rate). jaxcollapse's EM runs natively
where it builds (jaxcollapse/native); JAXCOLLAPSE_NATIVE=off times XLA's batched EM instead.

    python benchmarks/gmm.py                                   64, 256 and 1024 chains x 21 fits
    python benchmarks/gmm.py --n-chains 256 --n-generations 2050 --jax-only     the paper's run
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import pathlib
import platform
import time
import warnings

import numpy as np

SETTINGS = dict(n_samples=1000, tol=1e-5, max_iter=2000, seed=0)
BASELINE_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**31)}


# ------------------------------------------------------------------ jaxcollapse
def run_jax(cfg, n_chains, init="kmeans++"):
    """(result, best timed seconds, compile seconds)."""
    import jax

    import jaxcollapse as jc

    fam = jc.GMM(2, dim=2, covariance="full", tol=cfg.tol, max_iter=cfg.max_iter, init=init)
    src = fam.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])
    kwargs = dict(n_chains=n_chains, n_generations=cfg.n_generations, n_samples=cfg.n_samples,
                  record=("component_std",))
    began = time.perf_counter()
    jc.simulate(jax.random.key(cfg.seed + 1), fam, src, **kwargs)  # same shapes, another key: compiles
    first = time.perf_counter() - began
    times = []
    for _ in range(cfg.repeats):
        began = time.perf_counter()
        res = jc.simulate(jax.random.key(cfg.seed), fam, src, **kwargs)
        times.append(time.perf_counter() - began)
    return res, min(times), max(first - min(times), 0.0)


# ------------------------------------------------------------------ baselines (worker processes)
def _numpy_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("numpy_gmm", pathlib.Path(__file__).with_name("numpy_gmm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _single_threaded():
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _numpy_part(args):
    """One process's share of the NumPy chains: (component stds [c, K], iterations, seconds)."""
    seed, n_chains, cfg = args
    began = time.perf_counter()
    stds, iterations = _numpy_module().run_chains(np.random.default_rng(seed), n_chains, cfg["n_generations"],
                                                  cfg["n_samples"], tol=cfg["tol"], max_iter=cfg["max_iter"])
    return stds, iterations, time.perf_counter() - began


def _sklearn_chain(args):
    """The paper's loop for one chain: sample from the current mixture, fit a fresh GaussianMixture."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    seed, cfg = args
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg["n_samples"], 2))
    iterations = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(cfg["n_generations"] + 1):
            gm = GaussianMixture(2, covariance_type="full", tol=cfg["tol"], max_iter=cfg["max_iter"],
                                 random_state=int(rng.integers(2**31))).fit(x)
            iterations.append(gm.n_iter_)
            x = gm.sample(cfg["n_samples"])[0]
            rng.shuffle(x)  # sample() returns points grouped by component
    return np.sqrt(np.trace(gm.covariances_, axis1=1, axis2=2) / 2), np.asarray(iterations)


def _warm(_):
    import sklearn.mixture  # noqa: F401  (imports paid before the clock starts)

    _numpy_module()
    return os.getpid()


class Baselines:
    """A pool of single-threaded worker processes (spawned with BASELINE_ENV)."""

    def __init__(self, processes):
        saved = {k: os.environ.get(k) for k in BASELINE_ENV}
        os.environ.update(BASELINE_ENV)  # inherited by the spawned workers only
        try:
            self.pool = multiprocessing.get_context("spawn").Pool(processes, initializer=_single_threaded)
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        self.processes = processes
        self.pool.map(_warm, range(processes))

    def numpy(self, cfg, n_chains, processes):
        """NumPy chains split over `processes` workers: (stds, iterations, wall seconds)."""
        shares = np.array_split(np.arange(n_chains), processes)
        jobs = [(cfg["seed"] + 7919 * i, len(s), cfg) for i, s in enumerate(shares) if len(s)]
        began = time.perf_counter()
        parts = self.pool.map(_numpy_part, jobs, chunksize=1)
        seconds = time.perf_counter() - began
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), seconds

    def sklearn(self, cfg, n_chains):
        """n_chains of the paper's loop over all workers: (stds, iterations, wall seconds)."""
        began = time.perf_counter()
        parts = self.pool.map(_sklearn_chain, [(cfg["seed"] + c, cfg) for c in range(n_chains)], chunksize=1)
        seconds = time.perf_counter() - began
        return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts]), seconds

    def close(self):
        self.pool.close()
        self.pool.join()


# ------------------------------------------------------------------ report
def break_even(compile_seconds, numpy_rate, jax_rate):
    """Chain-generations below which NumPy (no compile) finishes before jaxcollapse (compile + run)."""
    gain = 1 / numpy_rate - 1 / jax_rate
    return compile_seconds / gain if gain > 0 else float("inf")


def ks(a, b):
    import scipy.stats

    result = scipy.stats.ks_2samp(np.ravel(a), np.ravel(b))
    return f"KS D={result.statistic:.3f} p={result.pvalue:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-chains", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--n-generations", type=int, default=20)
    for name, value in SETTINGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--repeats", type=int, default=3, help="timed jaxcollapse calls per chain count (best kept)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="baseline worker processes (one per core)")
    parser.add_argument("--sklearn-chains", type=int, default=None,
                        help="scikit-learn chains in all (default: 4 per process)")
    parser.add_argument("--jax-only", action="store_true", help="time jaxcollapse only (e.g. the whole paper run)")
    parser.add_argument("--jax-devices", type=int, default=1,
                        help="split the CPU into this many JAX devices, chains sharded over them (the baselines use "
                             "one process per core; README: one device per core)")
    cfg = parser.parse_args()
    if cfg.jax_devices > 1:  # before jax starts
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={cfg.jax_devices}").strip()
    import jax

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"jax {jax.__version__} ({jax.device_count()} device(s)), numpy {np.__version__}; {time.strftime('%Y-%m-%d')}")
    print(f"setting: {cfg.n_generations + 1} fits per chain (generation 0 included), n_samples {cfg.n_samples}, "
          f"K=2 full, tol {cfg.tol}, max_iter {cfg.max_iter}")
    fits = cfg.n_generations + 1
    plain = {k: getattr(cfg, k) for k in ("n_generations", "n_samples", "tol", "max_iter", "seed")}
    baselines = None if cfg.jax_only else Baselines(cfg.processes)
    sk_rate = None
    if baselines:
        sk_chains = cfg.sklearn_chains or 4 * cfg.processes
        sk_std, sk_iter, sk_seconds = baselines.sklearn(plain, sk_chains)
        sk_rate = sk_chains * fits / sk_seconds
        print(f"scikit-learn, {cfg.processes} single-threaded processes, {sk_chains} chains: {sk_seconds:.1f} s -> "
              f"{sk_rate:.1f} cg/s ({sk_rate / cfg.processes:.1f} per core); EM iterations mean {sk_iter.mean():.1f}")
    rows = []
    for n_chains in cfg.n_chains:
        res, jax_seconds, compile_seconds = run_jax(cfg, n_chains)
        jax_rate = n_chains * fits / jax_seconds
        n_iter = np.asarray(res.info.n_iter)
        from jaxcollapse.families.em.slots import lane_efficiency
        from jaxcollapse.native import em as native_em

        lanes = ("EM native (each chain to its own end)" if native_em.usable(2, 2, np.float32)
                 else f"lane efficiency {lane_efficiency(n_iter.T, jax.device_count()):.1%}")
        print(f"\n{n_chains} chains: jaxcollapse {jax_seconds:.2f} s -> {jax_rate:.0f} cg/s, compile {compile_seconds:.1f} s; "
              f"EM iterations mean {n_iter.mean():.1f} max {n_iter.max()}, {lanes}, "
              f"converged {np.mean(res.info.converged):.4f}")
        if not baselines:
            continue
        jax_std = np.asarray(res.metrics["component_std"])[:, -1]
        row = dict(n_chains=n_chains, jax=jax_rate, compile=compile_seconds)
        for processes in sorted({1, cfg.processes}):
            np_std, np_iter, np_seconds = baselines.numpy(plain, n_chains, processes)
            rate = n_chains * fits / np_seconds
            row[f"numpy{processes}"] = rate
            print(f"  NumPy vectorised, {processes} process(es): {np_seconds:.2f} s -> {rate:.0f} cg/s; "
                  f"EM iterations mean {np_iter.mean():.1f}; jaxcollapse / NumPy {jax_rate / rate:.1f}x; "
                  f"break-even {break_even(compile_seconds, rate, jax_rate):,.0f} chain-generations")
        print(f"  jaxcollapse / scikit-learn ({cfg.processes} processes) {jax_rate / sk_rate:.0f}x")
        print(f"  component std at generation {cfg.n_generations}, jaxcollapse vs NumPy: {ks(jax_std, np_std)}; "
              f"vs scikit-learn: {ks(jax_std, sk_std)}")
        rows.append(row)
    if baselines:
        baselines.close()
        print("\n| chains | jaxcollapse cg/s | compile s | NumPy 1 proc cg/s | ratio | NumPy "
              f"{cfg.processes} proc cg/s | ratio | scikit-learn {cfg.processes} proc cg/s | ratio | break-even cg |")
        for r in rows:
            p = cfg.processes
            print(f"| {r['n_chains']} | {r['jax']:.0f} | {r['compile']:.1f} | {r['numpy1']:.0f} | "
                  f"{r['jax'] / r['numpy1']:.1f}x | {r[f'numpy{p}']:.0f} | {r['jax'] / r[f'numpy{p}']:.1f}x | "
                  f"{sk_rate:.1f} | {r['jax'] / sk_rate:.0f}x | "
                  f"{break_even(r['compile'], max(r['numpy1'], r[f'numpy{p}']), r['jax']):,.0f} |")


if __name__ == "__main__":
    main()
