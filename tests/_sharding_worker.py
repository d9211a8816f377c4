"""Run by tests/test_sharding.py in a subprocess, so that fake devices and jax.distributed stay out of
the test process.

    python _sharding_worker.py mesh OUT.npz                       8 fake CPU devices, one process
    python _sharding_worker.py process OUT.npz PORT ID COUNT      one of COUNT processes (2 fake devices each)
    python _sharding_worker.py gmm OUT.npz                        the GMM study on 2 and on 8 fake devices
"""
import json
import os
import sys

N_CHAINS = 13  # not a multiple of 8 (or of 4): the padding path
KINDS = ("keep_real", "accumulate_subsample")


def study(kind):
    """(family, source, simulate kwargs) of the small study every mode runs; keep_real has one fraction per chain."""
    import numpy as np

    import jaxcollapse as jc

    family = jc.Gaussian(dim=2, ddof=1)
    source = family.make_params(mean=[0.0, 1.0], cov=[[1.0, 0.3], [0.3, 0.5]])
    regime = jc.keep_real(np.linspace(0.0, 0.6, N_CHAINS)) if kind == "keep_real" else jc.accumulate_subsample()
    return family, source, dict(n_chains=N_CHAINS, n_generations=4, n_samples=12, regime=regime, snapshot_at=[2],
                                chunk_size=2)


def gmm_study():
    """(family, source, simulate kwargs): the paper's GMM chain, small. 96 chains: 24 EM slots on one device,
    12 per device on 2 (48 chains each), none on 8 (12 each: the blocks alone)."""
    import numpy as np

    import jaxcollapse as jc

    family = jc.GMM(2, dim=2, tol=1e-5, max_iter=2000)
    source = family.make_params(weights=[1.0], means=[[0.0, 0.0]], covs=[np.eye(2)])
    return family, source, dict(n_chains=96, n_generations=6, n_samples=300)


def flat(result, prefix):
    """A Result as named host arrays (for np.savez and comparisons)."""
    import jax
    import numpy as np

    out = {f"{prefix}/keys": np.asarray(jax.random.key_data(result.keys))}
    if result.snapshots is not None:
        out[f"{prefix}/snapshots"] = np.asarray(result.snapshots)
    for name, tree in (("params", result.params), ("metrics", result.metrics), ("info", result.info)):
        if tree is None:
            continue
        items = tree._asdict() if hasattr(tree, "_asdict") else tree
        out.update({f"{prefix}/{name}.{k}": np.asarray(v) for k, v in items.items()})
    return out


def collectives(program, state):
    """Names of cross-device operations in the compiled advance() program."""
    import numpy as np

    from jaxcollapse.engine import program as chain

    lowered = chain._advance_jit.lower(
        state.carry, *program.layout.replicate((np.int32(1), np.int32(2))), program.family, program.regime,
        program.source, program.spec, 2, mesh=program.layout.mesh)
    text = lowered.compile().as_text()
    names = ("all-gather", "all-reduce", "all-to-all", "collective-permute", "reduce-scatter")
    return sorted(name for name in names if name in text)


def mesh_mode(out):
    import jax
    import numpy as np

    import jaxcollapse as jc
    from jaxcollapse.engine import program as chain

    arrays, checks = {}, {}
    for kind in KINDS:
        family, source, kwargs = study(kind)
        # the one-device reference runs in the test process, at the same time
        arrays.update(flat(jc.simulate(jax.random.key(7), family, source, devices=None, **kwargs), f"{kind}/all"))
        # the carry stays sharded over all 8 devices between chunks (same programs as above: no recompile)
        kwargs.pop("chunk_size")
        program = chain.ChainProgram(family, source, devices=None, **kwargs)
        state, first = program.start(jax.random.key(7))
        state, second = program.advance(state, 2)
        shardings = [leaf.sharding for leaf in jax.tree_util.tree_leaves(state.carry)]
        checks[kind] = {"n_padded": program.layout.n_padded,
                        "carry_devices": sorted({len(s.device_set) for s in shardings}),
                        "carry_specs": sorted({str(s.spec) for s in shardings})}
        if kind == "accumulate_subsample":  # top_k over the pool: what GSPMD alone would all-gather
            checks[kind]["collectives"] = collectives(program, state)
        if kind == "keep_real":  # checkpoint on 8 devices, resume on 3 (13 chains padded to 15)
            saved = program.host_state(state)
            resumed = chain.ChainProgram(family, source, devices=3, **kwargs)
            state3, third = resumed.advance(resumed.device_state(saved), 2)
            arrays.update(flat(resumed.result(state3, [first, second, third]), f"{kind}/resumed"))
            checks[kind]["resumed_devices"] = len(state3.carry.params.cov.sharding.device_set)
    np.savez(out, **arrays)
    print(json.dumps({"devices": jax.device_count(), "checks": checks}))


def gmm_mode(out):
    import jax
    import numpy as np

    import jaxcollapse as jc

    family, source, kwargs = gmm_study()
    arrays = {}
    for devices in (2, 8):
        arrays.update(flat(jc.simulate(jax.random.key(7), family, source, devices=devices, **kwargs), f"gmm/{devices}"))
    np.savez(out, **arrays)
    print(json.dumps({"devices": jax.device_count()}))


def process_mode(out, port, process_id, n_processes):
    import jax
    import numpy as np

    from jaxcollapse import sharding

    sharding.initialize_distributed(f"127.0.0.1:{port}", int(n_processes), int(process_id), initialization_timeout=60)
    import jaxcollapse as jc

    family, source, kwargs = study("keep_real")
    result = jc.simulate(jax.random.key(7), family, source, **kwargs)
    np.savez(out, **flat(result, "keep_real"))
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                      "devices": jax.device_count(), "local_devices": jax.local_device_count()}))
    jax.distributed.shutdown()


if __name__ == "__main__":
    mode = sys.argv[1]
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={2 if mode == 'process' else 8}"
    {"mesh": mesh_mode, "process": process_mode, "gmm": gmm_mode}[mode](*sys.argv[2:])
