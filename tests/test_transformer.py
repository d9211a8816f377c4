"""The Transformer family: one generation learns the shipped text (against a NumPy unigram), the
cached writing equals the full forward pass, the decoding settings draw the distribution they
promise (against NumPy), beam search equals a plain NumPy beam search, and bad input is refused.
(vmapped == one chain at a time, chunking and zero weights: the family's row in test_family_contract, -m slow.)"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z_MAX, z_score

import jaxcollapse as jc
from jaxcollapse.datasets import load_text
from jaxcollapse.families import _decoding
from jaxcollapse.families._transformer_net import DecoderLM, empty_cache
from jaxcollapse.study import config
from jaxcollapse.study.knowledge import knowledge_for

BLOCK = 16
N_TRAIN = 2048


@pytest.fixture(scope="module")
def trained():
    """One generation on 2,048 real 16-character blocks (256 Adam steps): about 10 s on 2 cores."""
    text = load_text("char", block=BLOCK)
    fam = jc.Transformer(vocab_size=len(text.vocab), block=BLOCK, d_model=32, n_heads=2, n_layers=1, epochs=4,
                         batch_size=32, learning_rate=3e-3, prompt_length=4, n_eval=16)
    source = fam.check_source(jc.Source(data=text.train[:N_TRAIN], heldout=text.heldout[:256]))
    params, info = jax.jit(fam.fit)(jax.random.key(0), source.data, jnp.ones(N_TRAIN))
    metrics = jax.jit(fam.metrics)(jax.random.key(1), params, source)
    return text, fam, source, params, info, metrics


def _log_softmax(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_one_generation_learns(trained):
    text, fam, source, params, info, metrics = trained
    heldout = np.asarray(source.heldout)
    assert bool(info.finite)
    # the metric against NumPy: the network's logits, scored in float64
    logits = np.asarray(fam.net.apply({"params": params.model}, source.heldout))[:, :-1]
    log_p = np.take_along_axis(_log_softmax(logits), heldout[:, 1:, None], axis=-1)
    np.testing.assert_allclose(float(metrics["heldout_perplexity"]), np.exp(-log_p.mean()), rtol=1e-4)
    # a unigram of the same training tokens (add-1/2), scored on the same held-out tokens
    counts = np.bincount(np.asarray(source.data).ravel(), minlength=len(text.vocab)) + 0.5
    unigram = np.exp(-np.mean(np.log(counts / counts.sum())[heldout[:, 1:]]))
    # measured 11.6 against 25.9: "well below" is below 60% of the unigram's (a failed fit stays near it)
    assert 1.0 < float(metrics["heldout_perplexity"]) < 0.6 * unigram


def test_fine_tuning_starts_from_the_previous_or_the_generation_0_network(trained):
    """init="previous" trains on from the last model, init="generation0" from the one carried as the
    generation-0 network (TransformerParams.reference), which every later fit hands on."""
    from jaxcollapse.families.transformer import TransformerParams

    _, fam, source, params, _, _ = trained
    x, w, key = source.data[:64], jnp.ones(64), jax.random.key(5)
    other = jax.tree_util.tree_map(lambda a: 0.5 * a, params.model)
    previous = jax.jit(dataclasses.replace(fam, init="previous", epochs=1).fit)
    generation0 = jax.jit(dataclasses.replace(fam, init="generation0", epochs=1).fit)
    from_reference = generation0(key, x, w, TransformerParams(other, params.model))[0]
    from_trained = previous(key, x, w, TransformerParams(params.model, other))[0]
    from_other = previous(key, x, w, TransformerParams(other, params.model))[0]
    leaves = lambda p: jax.tree_util.tree_leaves(p.model)  # noqa: E731
    for a, b in zip(leaves(from_reference), leaves(from_trained)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(leaves(from_reference), leaves(from_other)))
    for a, b in zip(jax.tree_util.tree_leaves(from_reference.reference), jax.tree_util.tree_leaves(params.model)):
        np.testing.assert_array_equal(a, b)


def test_cached_writing_equals_the_full_forward_pass(trained):
    _, fam, source, params, _, _ = trained
    tokens = source.heldout[:3]
    full = fam.net.apply({"params": params.model}, tokens)
    step = jax.jit(lambda token, pos, cache: fam.net.apply({"params": params.model}, token, pos, cache,
                                                            method=DecoderLM.step))
    cache, steps = empty_cache(fam.net, 3, jnp.float32), []
    for pos in range(BLOCK):
        logits, cache = step(tokens[:, pos], pos, cache)
        steps.append(logits)
    np.testing.assert_allclose(np.stack(steps, axis=1), full, rtol=1e-4, atol=1e-4)


def test_written_blocks_keep_their_prompts_and_metrics_count_them(trained):
    _, fam, source, params, _, metrics = trained
    written = np.asarray(jax.jit(fam.generate, static_argnums=2)(jax.random.key(1), params, fam.n_eval, source))
    np.testing.assert_array_equal(written[:, :fam.prompt_length], np.asarray(source.data)[:fam.n_eval, :4])
    tokens = written[:, fam.prompt_length:]
    assert int(metrics["vocabulary_size"]) == len(np.unique(tokens))
    pairs = {(a, b) for row in written for a, b in zip(row[fam.prompt_length - 1:-1], row[fam.prompt_length:])}
    assert int(metrics["ngram_support_size"]) == len(pairs)
    # generation 0 is its own reference: its text scored by itself, written tokens only, in NumPy
    logits = np.asarray(fam.net.apply({"params": params.reference}, jnp.asarray(written)))[:, :-1]
    log_p = np.take_along_axis(_log_softmax(logits), written[:, 1:, None], axis=-1)[:, fam.prompt_length - 1:, 0]
    np.testing.assert_allclose(metrics["generated_perplexity"], np.exp(-log_p.mean(axis=1)), rtol=1e-4)


def test_empty_slots_of_a_training_set_are_no_steps():
    """fresh_real's training sets hold n points in 2n slots (the rest weight 0): epochs over them must train
    exactly like epochs over the n points (no step on an all-empty batch, not even Adam's momentum)."""
    import optax

    from jaxcollapse.families import _training

    x = jnp.asarray(np.random.default_rng(0).normal(size=(24, 3)), jnp.float32)

    def loss(p, key, batch, w):
        return _training.weighted_mean(jnp.sum((batch - p) ** 2, axis=-1), w)

    train = jax.jit(lambda x, w: _training.train(loss, jnp.zeros(3), optax.adam(0.1), jax.random.key(0), x, w,
                                                 _training.epochs(3, 4)))
    alone, alone_losses = train(x[:12], jnp.ones(12))
    padded, padded_losses = train(x, jnp.concatenate([jnp.ones(12), jnp.zeros(12)]))
    np.testing.assert_array_equal(padded, alone)
    taken = ~np.isnan(np.asarray(padded_losses))
    assert taken.sum() == 9  # the same 9 steps (their losses differ in the last bit: two compiled programs)
    np.testing.assert_allclose(np.asarray(padded_losses)[taken], alone_losses, rtol=1e-6)
    assert float(_training.mean_loss(padded_losses)) == pytest.approx(float(np.mean(alone_losses)), rel=1e-6)


# ---------------------------------------------------------------- decoding against NumPy
LOGITS = np.array([1.2, 0.6, -0.3, 0.1], np.float32)


@pytest.fixture(scope="module")
def decoded_draws():
    """40,000 one-token continuations of the prompt [0] from fixed logits, per setting (one compile)."""
    settings = {"plain": (1.0, 0, 1.0), "temperature": (0.5, 0, 1.0), "top_k": (1.0, 2, 1.0),
                "penalty": (1.0, 0, 3.0), "all": (2.0, 3, 3.0)}

    def step(token, pos, cache):
        return jnp.broadcast_to(jnp.asarray(LOGITS), token.shape + LOGITS.shape), cache

    @jax.jit
    def draw(settings):
        return _decoding.sample_blocks(jax.random.key(5), step, (), jnp.zeros((40_000, 1), jnp.int32), 2,
                                       _decoding.SamplerSettings(*settings))[:, 1]

    return {name: np.asarray(draw(tuple(jnp.asarray(v) for v in s))) for name, s in settings.items()}


@pytest.mark.parametrize("name", ["plain", "temperature", "top_k", "penalty", "all"])
def test_sampling_settings_draw_the_transformed_distribution(decoded_draws, name):
    temperature, top_k, penalty = {"plain": (1.0, 0, 1.0), "temperature": (0.5, 0, 1.0), "top_k": (1.0, 2, 1.0),
                                   "penalty": (1.0, 0, 3.0), "all": (2.0, 3, 3.0)}[name]
    logits = LOGITS.astype(np.float64).copy()
    logits[0] = logits[0] / penalty if logits[0] > 0 else logits[0] * penalty  # token 0 is the prompt
    logits = logits / temperature
    if top_k:
        logits[np.argsort(logits)[: len(logits) - top_k]] = -np.inf
    expected = np.exp(logits - logits.max())
    expected /= expected.sum()
    observed = (decoded_draws[name][:, None] == np.arange(4)).astype(float)
    kept = expected > 0
    assert np.all(observed[:, ~kept] == 0)
    assert np.all(z_score(observed[:, kept], expected[kept]) < Z_MAX)


TABLE = np.random.default_rng(2).normal(size=(5, 5)).astype(np.float32)  # logits of the next token given the last
DECAY = 2.0                                                               # ... minus DECAY x its count so far


def _toy_step(token, pos, counts):
    """A model with state: logits depend on the last token and on the counts carried in the cache."""
    counts = counts + jax.nn.one_hot(token, 5)
    return jnp.asarray(TABLE)[token] - DECAY * counts, counts


def _numpy_beam_search(prompt, block, n_beams, penalty):
    beams = [(0.0, list(prompt))]
    for _ in range(block - len(prompt)):
        candidates = []
        for score, tokens in beams:
            counts = np.bincount(tokens, minlength=5)
            logp = _log_softmax(TABLE[tokens[-1]].astype(np.float64) - DECAY * counts)
            logp = np.where(counts > 0, np.where(logp > 0, logp / penalty, logp * penalty), logp)
            candidates += [(score + logp[v], tokens + [v]) for v in range(5)]
        beams = sorted(candidates, key=lambda c: -c[0])[:n_beams]
    return beams[0][1]


def test_beam_search_equals_a_numpy_beam_search():
    prompts = np.random.default_rng(3).integers(0, 5, size=(40, 2)).astype(np.int32)
    written = jax.jit(lambda p: _decoding.beam_blocks(_toy_step, jnp.zeros((40, 5)), p, 12, 3, 1.5))(prompts)
    expected = [_numpy_beam_search(list(p), 12, 3, 1.5) for p in prompts]
    np.testing.assert_array_equal(np.asarray(written), np.array(expected))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    ({"decoding": "greedy"}, "decoding"), ({"init": "pretrained"}, "init"), ({"d_model": 30, "n_heads": 4}, "d_model"),
    ({"prompt_length": 16}, "prompt_length"), ({"prompt_length": 0}, "prompt_length"), ({"top_k": -1}, "top_k"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"), ({"temperature": 0.0}, "temperature"),
    ({"tokenizer": "bytes"}, "tokenizer"), ({"vocab_size": 1}, "vocab_size"), ({"epochs": 0}, "epochs"),
    ({"decoding": "beam", "n_beams": 11}, "n_beams"),
])
def test_bad_settings_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        jc.Transformer(**{"vocab_size": 10, "block": 16, **kwargs})


def test_bad_sources_and_studies_raise():
    text = load_text("char", block=8)
    fam = jc.Transformer(vocab_size=50, block=8)  # the corpus has 104 character types
    with pytest.raises(ValueError, match="vocab_size"):
        jc.simulate(jax.random.key(0), fam, jc.Source(data=text.train, heldout=text.heldout),
                    n_chains=1, n_generations=1, n_samples=64)
    with pytest.raises(ValueError, match="vocab_size = 104"):  # a study's source: more ids than the corpus has types
        big = jc.Transformer(vocab_size=200, block=8, tokenizer="char")
        knowledge_for(big).source_from_table(big, {})
    with pytest.raises(ValueError, match="batch_size"):
        jc.Transformer(vocab_size=len(text.vocab), block=8, batch_size=64).check_settings(32)
    with pytest.raises(ValueError, match="source"):
        fam.check_source(jc.Source(params=jc.NGramParams(jnp.ones((50, 50)))))
    with pytest.raises(ValueError, match="dropout"):  # a setting the family does not have, in a study
        config.check({"family": {"name": "transformer", "vocab_size": 10, "dropout": 0.1},
                      "source": {}, "regime": {"kind": "replace"}, "run": {"n_chains": 1, "n_generations": 1,
                                                                           "n_samples": 8}})


# ---------------------------------------------------------------- a chain, slow
@pytest.mark.slow
def test_a_fine_tuned_beam_chain_scores_its_text_under_its_own_generation_0():
    """Beam search and init="previous" through the engine; every recorded metric replayed by hand from the
    recorded networks, with the generation-0 network as the scorer of the generation-g text."""
    from jaxcollapse.engine.step import METRICS_STREAM
    from jaxcollapse.families.transformer import TransformerParams

    text = load_text("char", block=BLOCK)
    fam = jc.Transformer(vocab_size=len(text.vocab), block=BLOCK, d_model=32, n_heads=2, n_layers=1, epochs=2,
                         batch_size=16, learning_rate=3e-3, init="previous", prompt_length=3, decoding="beam",
                         n_beams=3, repetition_penalty=1.5, n_eval=8)
    source = jc.Source(data=text.train[:512], heldout=text.heldout[:64])
    key = jax.random.key(4)
    res = jc.simulate(key, fam, source, n_chains=1, n_generations=3, n_samples=128, regime=jc.fresh_real(0.25))
    assert not res.failed.any()
    checked = fam.check_source(source)
    metrics = jax.jit(fam.metrics)
    model = lambda g: jax.tree_util.tree_map(lambda a: a[0, g], res.params.model)  # noqa: E731
    for g in range(4):
        replay = metrics(jax.random.fold_in(key, METRICS_STREAM), TransformerParams(model(g), model(0)), checked)
        for name, value in replay.items():
            np.testing.assert_allclose(np.asarray(res.metrics[name][0, g], float), np.asarray(value, float),
                                       rtol=1e-3, err_msg=f"{name}, generation {g}")
    perplexity = np.asarray(res.metrics["heldout_perplexity"][0])
    assert np.all(np.isfinite(perplexity)) and np.all(perplexity > 1)
