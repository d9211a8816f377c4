"""The chain axis over several devices and hosts: a Mesh, padding, placement, gathering.

Chains are independent, so the chain axis (leading on every array the engine carries or
records) is split over a one-axis `jax.sharding.Mesh` named "chains", placed with
`NamedSharding(mesh, P("chains"))`, and each device runs the per-chain program on its own
rows inside `jax.shard_map`: no collective runs inside a generation, whatever the family
(GSPMD propagation alone would all-gather around ops it cannot partition, such as top_k).

n_chains not divisible by the number of devices is padded with copies of the last chain
and trimmed from every result; the real chains' keys and results do not change.

Several hosts: call `initialize_distributed()` first (before any JAX computation); the mesh
then spans every process's devices, every process places its own rows, and results are
gathered to every process (`process_allgather`), so each holds the whole Result.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcollapse import settings

CHAINS = "chains"


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None, **kwargs) -> None:
    """Join a multi-process run with `jax.distributed.initialize` (call before any JAX computation).

    Unset arguments are read from JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID,
    then left to JAX's cluster auto-detection (SLURM, Open MPI, Kubernetes, TPU pods).
    On CPU the cross-process collectives are gloo (JAX's default).
    """
    environment = settings.environment()
    num_processes = environment.num_processes if num_processes is None else num_processes
    process_id = environment.process_id if process_id is None else process_id
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, **kwargs)


def make_mesh(devices=None) -> Mesh:
    """A one-axis Mesh named "chains" over `devices`.

    devices: None (every device of every process), an int k (the first k of jax.devices()),
    a sequence of jax.Device, or a Mesh whose only axis is "chains".
    """
    if isinstance(devices, Mesh):
        if devices.axis_names != (CHAINS,):
            raise ValueError(f"devices must be a Mesh with the single axis {CHAINS!r}, got axes {devices.axis_names}")
        return devices
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and the {len(available)} available devices, got {devices}")
        chosen = available[:int(devices)]
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            raise ValueError(f"devices must be None, a count, a non-empty sequence of jax.Device or a Mesh, "
                             f"got {devices!r}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices must not repeat a device, got {chosen}")
    processes = {d.process_index for d in chosen}
    if jax.process_count() > 1 and len(processes) != jax.process_count():
        raise ValueError(f"devices must include devices of all {jax.process_count()} processes in a "
                         f"distributed run, got devices of processes {sorted(processes)}")
    return Mesh(np.array(chosen), (CHAINS,))


@dataclasses.dataclass(frozen=True)
class ChainLayout:
    """Where the chain axis lives: n_chains real chains, padded to n_padded rows over `mesh`.

    mesh is None when the run is on JAX's default device alone: arrays are then left where JAX puts them.
    """

    mesh: Mesh | None
    n_chains: int
    n_padded: int

    @classmethod
    def build(cls, devices, n_chains: int) -> "ChainLayout":
        mesh = make_mesh(devices)
        n_devices = mesh.devices.size
        if n_devices == 1 and jax.process_count() == 1 and mesh.devices.flat[0] == _default_device():
            return cls(None, n_chains, n_chains)
        return cls(mesh, n_chains, -(-n_chains // n_devices) * n_devices)

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

    @property
    def chain_sharding(self) -> NamedSharding | None:
        return None if self.mesh is None else NamedSharding(self.mesh, P(CHAINS))

    # ---- host -> devices ---------------------------------------------------------------
    def place(self, tree):
        """Pad the leading (chain) axis of every array leaf to n_padded and shard it over the mesh.

        Leaves are the whole [n_chains, ...] arrays, the same on every process (host or device
        arrays, typed PRNG keys included); each process places only its own devices' rows.
        """
        if self.mesh is None:
            return jax.tree_util.tree_map(lambda leaf: leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf), tree)
        return jax.tree_util.tree_map(lambda leaf: self._place_leaf(leaf, self.chain_sharding), tree)

    def replicate(self, tree):
        """A full copy of every array leaf on every device of the mesh (Python scalars stay as they are)."""
        if self.mesh is None:
            return tree
        sharding = NamedSharding(self.mesh, P())
        return jax.tree_util.tree_map(
            lambda leaf: self._put(leaf, sharding) if isinstance(leaf, (jax.Array, np.ndarray)) else leaf, tree)

    def _place_leaf(self, leaf, sharding):
        if leaf.shape[:1] != (self.n_chains,):
            raise ValueError(f"every per-chain array must lead with n_chains={self.n_chains}, got shape {leaf.shape}")
        if self.n_padded > self.n_chains:  # copies of the last chain: finite, valid, and trimmed later
            index = np.minimum(np.arange(self.n_padded), self.n_chains - 1)
            leaf = leaf[index] if isinstance(leaf, jax.Array) else np.asarray(leaf)[index]
        return self._put(leaf, sharding)

    def _put(self, leaf, sharding):
        if isinstance(leaf, jax.core.Tracer):  # jax.eval_shape of start(): shapes only
            return leaf
        if _is_key(leaf):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(self._put(jax.random.key_data(leaf), sharding), impl=impl)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    # ---- devices -> host ---------------------------------------------------------------
    def gather(self, tree):
        """Every array leaf as one whole host array with the padding trimmed (typed keys as local key arrays).

        In a multi-process run this is a collective: every process must call it, and every process
        gets the whole result.
        """
        return jax.tree_util.tree_map(self._gather_leaf, tree)

    def _gather_leaf(self, leaf):
        if isinstance(leaf, jax.core.Tracer):  # jax.eval_shape of start(): shapes only
            return leaf[:self.n_chains]
        if _is_key(leaf):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(self._gather_leaf(jax.random.key_data(leaf)), impl=impl)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            host = np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        else:
            host = np.asarray(jax.device_get(leaf))
        return host[:self.n_chains] if self.n_padded != self.n_chains else host


def over_chains(fn, mesh: Mesh | None, shared, *per_chain):
    """fn(shared, *per_chain), run shard by shard: each device applies fn to its own rows only.

    per_chain: pytrees whose every leaf leads with the chain axis (as does every output of fn);
    shared: a pytree every device sees whole (the family, the source). fn must not close over
    arrays placed on the mesh (pass them in `shared`). The compiled program holds no collective.
    """
    if mesh is None:
        return fn(shared, *per_chain)
    in_specs = (P(),) + (P(CHAINS),) * len(per_chain)
    # check_vma=False: no collectives here to type-check, and numpyro code inside scan trips the checker
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P(CHAINS), check_vma=False)(shared, *per_chain)


def _default_device():
    default = jax.config.jax_default_device
    return default if isinstance(default, jax.Device) else jax.devices()[0]


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
