"""The engine's contract, checked over every registered family: one row per family in ROWS.

vmapped == a Python loop of single chains (each replayed from its key); chunked == one piece bit
for bit; a zero-weight point == the point removed; a new traced number never recompiles.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc
from jaxcollapse.engine import program as program_lib
from jaxcollapse.types import draw_real

DIGIT_LIKE = np.random.default_rng(0).uniform(size=(64, 4)).astype(np.float32)
TOKEN_BLOCKS = np.random.default_rng(1).integers(0, 6, size=(48, 8)).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Row:
    family: object
    source: object
    n_samples: int
    traced: dict            # a family field that is a traced number, and a new value for it
    rtol: float = 1e-5      # vmapped vs one chain: differently vectorised float32 code (~100 ulp; EM and Adam more)
    model: object = None    # (family, params) -> what "the same model" compares (default: the params)


ROWS = {
    "categorical": Row(jc.Categorical(4), jc.CategoricalParams(np.full(4, 0.25)), 8, {}),
    "gaussian": Row(jc.Gaussian(dim=2), jc.GaussianParams(np.zeros(2), np.eye(2)), 8, {"lam": 0.9}),
    # reg_covar well above float32's resolution: a component collapsed onto a 1e-6 floor turned jax 0.12's
    # FMA-level differences (a batch vectorised otherwise than one chain) into 1% of its l2 and log det
    "gmm": Row(jc.GMM(2, dim=2, max_iter=8, tol=1e-3, init="previous", reg_covar=1e-2),
               jc.GaussianParams(np.zeros(2), np.eye(2)), 16, {"reg_covar": 1e-4}, rtol=1e-3),
    "kde": Row(jc.KDE(bandwidth=0.3, dim=2), jc.MoonsParams(np.float32(0.1)), 8, {"bandwidth": 0.5},
               model=lambda fam, params: fam.log_prob(params, jnp.linspace(-1.0, 2.0, 14).reshape(7, 2))),
    "linear_regression": Row(jc.LinearRegression(dim=2, noise_std=0.5),
                             jc.LinearRegression(dim=2, noise_std=0.5).make_params(w=[1.0, -0.5]), 8, {"ridge": 0.1}),
    "vae": Row(jc.VAE(latent_dim=2, hidden=(8,), n_steps=4, batch_size=4, image_shape=(4,), n_eval=8),
               jc.Source(data=DIGIT_LIKE[:48], heldout=DIGIT_LIKE[48:]), 16, {"learning_rate": 3e-3}, rtol=1e-3),
    "ngram": Row(jc.NGram(2, 6, 0.1, block=8, n_eval=4, top_p=0.9),
                 jc.Source(data=TOKEN_BLOCKS[:40], heldout=TOKEN_BLOCKS[40:]), 16, {"smoothing": 0.5}),
    "transformer": Row(jc.Transformer(vocab_size=6, block=8, d_model=8, n_heads=2, n_layers=1, epochs=1, batch_size=4,
                                      prompt_length=2, n_eval=4, top_k=4),
                       jc.Source(data=TOKEN_BLOCKS[:40], heldout=TOKEN_BLOCKS[40:]), 16, {"learning_rate": 3e-3},
                       rtol=1e-3),
}


def test_every_registered_family_has_a_row():
    assert set(ROWS) == set(jc.REGISTRY)
    for name, row in ROWS.items():
        assert isinstance(row.family, jc.Family) and type(row.family) is jc.REGISTRY[name]


RUN = dict(n_chains=3, n_generations=4, regime=jc.keep_real(0.25), snapshot_at=[0, 4])


# the neural families' rows compile the longest (30-130 s each on 2 cores): run with -m slow; their own
# test files check vmapped == one by one in the default suite (test_vae.py, test_transformer.py)
SLOW_ROWS = {"transformer", "vae"}


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.slow) if name in SLOW_ROWS else name
                                        for name in sorted(ROWS)])
def ran(request):
    row = ROWS[request.param]
    res = jc.simulate(jax.random.key(7), row.family, row.source, n_samples=row.n_samples, **RUN)
    return row, res


def _assert_same(a, b, rtol=0.0):
    for left, right in zip(jax.tree_util.tree_leaves((a.params, a.metrics, a.info, a.snapshots)),
                           jax.tree_util.tree_leaves((b.params, b.metrics, b.info, b.snapshots))):
        if rtol == 0.0:
            np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
        else:
            np.testing.assert_allclose(np.asarray(left, float), np.asarray(right, float), rtol=rtol, atol=rtol / 10)


def test_vmapped_equals_a_loop_of_replayed_chains(ran):
    row, res = ran
    assert not res.failed.any()
    for i in range(RUN["n_chains"]):
        alone = jc.simulate(res.chain_key(i), row.family, row.source, n_samples=row.n_samples,
                            **{**RUN, "n_chains": 1})
        _assert_same(res.chain(i), alone.chain(0), row.rtol)


def test_chunked_equals_one_piece_bit_for_bit(ran):
    row, res = ran
    chunked = jc.simulate(jax.random.key(7), row.family, row.source, n_samples=row.n_samples, chunk_size=3, **RUN)
    _assert_same(res, chunked)


def test_new_traced_numbers_reuse_the_compiled_program(ran):
    row, res = ran
    before = (program_lib._start_jit._cache_size(), program_lib._advance_jit._cache_size())
    family = dataclasses.replace(row.family, **row.traced)
    other = jc.simulate(jax.random.key(7), family, row.source, n_samples=row.n_samples,
                        **{**RUN, "regime": jc.keep_real(0.5)})
    assert (program_lib._start_jit._cache_size(), program_lib._advance_jit._cache_size()) == before
    changed = jax.tree_util.tree_leaves(other.metrics)[0] != jax.tree_util.tree_leaves(res.metrics)[0]
    assert np.any(changed)  # the new numbers were used


def test_a_zero_weight_point_equals_the_point_removed(ran):
    row, res = ran
    fam = row.family
    source = fam.check_source(row.source)
    key = jax.random.key(3)
    x = draw_real(fam, source, key, row.n_samples)
    fit = jax.jit(fam.fit)  # a family need not cache its own fit (compiled_when_eager): one compile per shape
    init, _ = fit(jax.random.key(4), x, jnp.ones(row.n_samples), None)
    extra = jax.tree_util.tree_map(lambda a: a[:1] * 0 + 3, x)  # an outlier that would move any fit
    padded = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), x, extra)
    w = jnp.concatenate([jnp.ones(row.n_samples), jnp.zeros(1)])
    model = (lambda params: params) if row.model is None else (lambda params: row.model(fam, params))
    kept = model(fit(jax.random.key(5), padded, w, init)[0])
    alone = model(fit(jax.random.key(5), x, jnp.ones(row.n_samples), init)[0])
    for a, b in zip(jax.tree_util.tree_leaves(kept), jax.tree_util.tree_leaves(alone)):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-4, atol=1e-5)
    with_point = model(fit(jax.random.key(5), padded, jnp.ones(row.n_samples + 1), init)[0])
    assert not all(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-4, atol=1e-5)
                   for a, b in zip(jax.tree_util.tree_leaves(with_point), jax.tree_util.tree_leaves(alone)))
