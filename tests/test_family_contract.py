"""The engine's contract, checked over every registered family: one row per family in ROWS.

Each row runs jaxcollapse.testing.check_family (vmapped == each chain replayed from its key; chunked ==
one piece bit for bit; a new traced number never recompiles; a zero-weight point == the point removed;
records finite at collapse; every optional hook the family declares), which says in words what fails.
One check_family call per row: its runs share their compiled programs.
"""
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import jaxcollapse as jc

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
    collapse_generations: int = 100   # generations of the chain refitted on its own samples (records finite)


ROWS = {
    "categorical": Row(jc.Categorical(4), jc.CategoricalParams(np.full(4, 0.25)), 8, {}),
    "gaussian": Row(jc.Gaussian(dim=2), jc.GaussianParams(np.zeros(2), np.eye(2)), 8, {"lam": 0.9}),
    # reg_covar well above float32's resolution: a component collapsed onto a 1e-6 floor turned jax 0.12's
    # FMA-level differences (a batch vectorised otherwise than one chain) into 1% of its l2 and log det
    "gmm": Row(jc.GMM(2, dim=2, max_iter=8, tol=1e-3, init="previous", reg_covar=1e-2),
               jc.GaussianParams(np.zeros(2), np.eye(2)), 16, {"reg_covar": 1e-4}, rtol=1e-3, collapse_generations=40),
    "kde": Row(jc.KDE(bandwidth=0.3, dim=2), jc.MoonsParams(np.float32(0.1)), 8, {"bandwidth": 0.5},
               model=lambda fam, params: fam.log_prob(params, jnp.linspace(-1.0, 2.0, 14).reshape(7, 2))),
    "linear_regression": Row(jc.LinearRegression(dim=2, noise_std=0.5),
                             jc.LinearRegression(dim=2, noise_std=0.5).make_params(w=[1.0, -0.5]), 8, {"ridge": 0.1}),
    "vae": Row(jc.VAE(latent_dim=2, hidden=(8,), n_steps=4, batch_size=4, image_shape=(4,), n_eval=8),
               jc.Source(data=DIGIT_LIKE[:48], heldout=DIGIT_LIKE[48:]), 16, {"learning_rate": 3e-3}, rtol=1e-3,
               collapse_generations=20),
    "ngram": Row(jc.NGram(2, 6, 0.1, block=8, n_eval=4, top_p=0.9),
                 jc.Source(data=TOKEN_BLOCKS[:40], heldout=TOKEN_BLOCKS[40:]), 16, {"smoothing": 0.5}),
    "transformer": Row(jc.Transformer(vocab_size=6, block=8, d_model=8, n_heads=2, n_layers=1, epochs=1, batch_size=4,
                                      prompt_length=2, n_eval=4, top_k=4),
                       jc.Source(data=TOKEN_BLOCKS[:40], heldout=TOKEN_BLOCKS[40:]), 16, {"learning_rate": 3e-3},
                       rtol=1e-3, collapse_generations=20),
}


def test_every_registered_family_has_a_row():
    built_in = {name for name, cls in jc.REGISTRY.items() if cls.__module__.startswith("jaxcollapse.")}  # not plugins
    assert set(ROWS) == built_in
    for name, row in ROWS.items():
        assert isinstance(row.family, jc.Family) and type(row.family) is jc.REGISTRY[name]


# the neural families' rows compile the longest (30-130 s each on 2 cores): run with -m slow; their own
# test files check vmapped == one by one in the default suite (test_vae.py, test_transformer.py)
SLOW_ROWS = {"transformer", "vae"}


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_ROWS else name
                                  for name in sorted(ROWS)])
def test_family_meets_the_engine_contract(name):
    row = ROWS[name]
    report = jc.testing.check_family(row.family, row.source, n_samples=row.n_samples, traced=row.traced,
                                     rtol=row.rtol, model=row.model, collapse_generations=row.collapse_generations)
    assert report.ok, str(report)
