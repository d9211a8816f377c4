"""Language chains: the shipped corpus, load_text, the n-gram family against NumPy references, and
its closed forms (ORACLES.md section 8): held-context rows are Wright-Fisher chains, a unigram
chain is a Categorical chain."""
import collections
import gzip
import hashlib
import itertools
import os
import re
import runpy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z_MAX, z_score

import jaxcollapse as jc
from jaxcollapse import theory
from jaxcollapse.datasets import CORPUS_SHA256, corpus_text, load_text
from jaxcollapse.study.knowledge import knowledge_for

TOPICS_3_11_7 = "/root/.pyenv/versions/3.11.7/lib/python3.11/pydoc_data/topics.py"
P_TWO_SIDED_Z4 = 6.3e-5  # the two-sided p-value of z = 4, for tests that give p-values


# ---------------------------------------------------------------- the corpus
def test_corpus_is_the_frozen_snapshot():
    text = corpus_text()
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == CORPUS_SHA256
    assert len(text) == 464_970
    words = re.findall("[a-z]+", text.lower())
    assert len(words) == 64_285 and len(set(words)) == 3_118


@pytest.mark.skipif(not os.path.exists(TOPICS_3_11_7), reason="CPython 3.11.7's pydoc_data is not on this machine")
def test_corpus_rebuilds_from_cpython_3_11_7():
    topics = runpy.run_path(TOPICS_3_11_7)["topics"]
    rebuilt = "".join(topics[key] for key in sorted(topics))
    assert rebuilt == corpus_text()
    stored = os.path.join(os.path.dirname(jc.__file__), "data", "pydoc_topics_3.11.7.txt.gz")
    with open(stored, "rb") as f:
        assert gzip.decompress(f.read()).decode("utf-8") == rebuilt


def test_load_text_blocks_vocabulary_and_split():
    text = load_text("char", block=64)
    assert text.train.dtype == np.int32 and text.train.shape[1] == 64 and text.heldout.shape[1] == 64
    assert text.train.shape[0] + text.heldout.shape[0] == 464_970 // 64
    assert text.heldout.shape[0] == round(0.1 * (464_970 // 64))
    assert text.vocab[0] == "<unk>" and len(set(text.vocab)) == len(text.vocab)
    corpus = corpus_text()
    for block in (text.train[0], text.train[-1], text.heldout[0]):  # every block is a stretch of the corpus
        decoded = text.decode(block)
        if "<unk>" not in decoded:
            assert corpus.index(decoded) % 64 == 0
    again = load_text("char", block=64)
    np.testing.assert_array_equal(text.train, again.train)
    assert not np.array_equal(text.heldout, load_text("char", block=64, seed=1).heldout)
    words = load_text("word", block=64, vocab_size=1000)
    assert len(words.vocab) == 1000 and words.vocab[:3] == ("<unk>", "the", "a")
    assert words.train.max() == 999 and 0.05 < np.mean(words.train == 0) < 0.15  # rare words are <unk>


def test_heldout_text_never_enters_the_vocabulary_or_the_training_blocks(tmp_path):
    path = tmp_path / "unique.txt"
    letters = "abcdefghijklmnopqrstuvwxyz"
    path.write_text(" ".join(a + b + c for a, b, c in itertools.product(letters, repeat=3))[: 4 * 1000 - 1])  # 1000 words
    text = load_text("word", block=10, path=path, heldout_fraction=0.2)
    assert text.train.shape == (80, 10) and text.heldout.shape == (20, 10)
    assert len(text.vocab) == 801  # every word is unique: the 800 training words and <unk>
    assert np.all(text.heldout == 0)  # held-out words are unknown to the vocabulary
    train_words = {text.vocab[t] for t in text.train.ravel()}
    assert "<unk>" not in train_words and len(train_words) == 800


# ---------------------------------------------------------------- bad input
def test_bad_input_raises_value_errors_naming_it(tmp_path):
    with pytest.raises(ValueError, match="tokenizer"):
        load_text("bytes")
    with pytest.raises(ValueError, match="block"):
        load_text("word", block=40_000)
    (tmp_path / "tiny.txt").write_text("just a few words here")
    with pytest.raises(ValueError, match="block"):
        load_text("word", block=3, path=tmp_path / "tiny.txt")
    with pytest.raises(ValueError, match="path"):
        load_text("char", path=tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="order"):
        jc.NGram(order=0, vocab_size=10)
    with pytest.raises(ValueError, match="block"):
        jc.NGram(order=3, vocab_size=10, block=2)
    with pytest.raises(ValueError, match="tokenizer"):
        jc.NGram(order=2, vocab_size=10, tokenizer="bytes")
    with pytest.raises(ValueError, match="vocab_size"):
        jc.NGram(order=4, vocab_size=1000)  # a 10^12-entry table
    with pytest.raises(ValueError, match="top_k"):
        jc.NGram(order=2, vocab_size=1000, top_k=100)  # past the 64 candidates a row's cut is read from
    jc.NGram(order=2, vocab_size=50, top_k=100)      # >= vocab_size: every token kept
    with pytest.raises(ValueError, match="top_p"):
        jc.NGram(order=2, vocab_size=10, top_p=0.0)
    text = load_text("char", block=8)
    fam = jc.NGram(order=2, vocab_size=50, block=8)  # the corpus has 104 character types
    with pytest.raises(ValueError, match="vocab_size"):
        jc.simulate(jax.random.key(0), fam, jc.Source(data=text.train, heldout=text.heldout),
                    n_chains=1, n_generations=1, n_samples=10)
    with pytest.raises(ValueError, match="vocab_size = 104"):  # a study's source: more ids than the corpus has types
        knowledge_for(fam).source_from_table(jc.NGram(order=2, vocab_size=200, block=8), {})
    assert knowledge_for(fam).source_from_table(fam, {}).data.max() == 49  # a smaller vocab_size caps the vocabulary (<unk> = 0)
    with pytest.raises(ValueError, match="block"):
        jc.NGram(order=2, vocab_size=len(text.vocab), block=16).check_source(text.train)


# ---------------------------------------------------------------- the model against NumPy
@pytest.fixture(scope="module")
def char_text():
    return load_text("char", block=16)


def _numpy_counts(blocks, order, vocab_size):
    counter = collections.Counter()
    for b in np.asarray(blocks):
        for t in range(order - 1, len(b)):
            counter[tuple(b[t - order + 1: t + 1])] += 1
    table = np.zeros((vocab_size ** (order - 1), vocab_size))
    for gram, count in counter.items():
        context = 0
        for token in gram[:-1]:
            context = context * vocab_size + token
        table[context, gram[-1]] = count
    return table


def test_counts_probabilities_and_perplexity_match_a_numpy_counter(char_text):
    v = len(char_text.vocab)
    fam = jc.NGram(order=3, vocab_size=v, smoothing=0.5, block=16)
    x = char_text.train[:300]
    params, info = fam.fit(jax.random.key(0), jnp.asarray(x), jnp.ones(300))
    counts = _numpy_counts(x, 3, v)
    np.testing.assert_array_equal(np.asarray(params.counts), counts)
    rows = counts.sum(1, keepdims=True)
    unigram = (counts.sum(0) + 0.5) / (counts.sum() + 0.5 * v)
    probs = np.where(rows > 0, (counts + 0.5) / (rows + 0.5 * v), unigram)
    np.testing.assert_allclose(np.asarray(fam.probs(params)), probs, rtol=1e-5)
    heldout = char_text.heldout[:20]
    log_p = [sum(np.log(probs[b[t - 2] * v + b[t - 1], b[t]]) for t in range(2, 16)) for b in heldout]
    np.testing.assert_allclose(np.asarray(fam.log_prob(params, jnp.asarray(heldout))), log_p, rtol=1e-5)
    source = fam.check_source(jc.Source(data=x, heldout=heldout))
    metrics = jax.jit(fam.metrics)(jax.random.key(1), params, source)
    np.testing.assert_allclose(metrics["heldout_perplexity"], np.exp(-np.sum(log_p) / (20 * 14)), rtol=1e-5)
    assert metrics["ngram_support_size"] == np.sum(counts > 0)
    assert metrics["vocabulary_size"] == np.sum(counts.sum(0) > 0)
    np.testing.assert_allclose(metrics["collision"], np.sum(rows[:, 0] * np.sum(probs**2, 1)) / rows.sum(), rtol=1e-5)
    assert metrics["generated_perplexity"].shape == (fam.n_eval,) and np.all(np.isfinite(metrics["generated_perplexity"]))
    # a zero weight removes a block from the counts
    w = np.ones(300)
    w[:100] = 0
    dropped, _ = fam.fit(jax.random.key(0), jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_array_equal(np.asarray(dropped.counts), _numpy_counts(x[100:], 3, v))


def test_generation_keeps_real_prompts_and_never_leaves_the_support(char_text):
    v = len(char_text.vocab)
    fam = jc.NGram(order=3, vocab_size=v, block=16)
    x = jnp.asarray(char_text.train[:200])
    params, _ = fam.fit(jax.random.key(0), x, jnp.ones(200))
    source = fam.check_source(jc.Source(data=x))
    out = np.asarray(jax.jit(fam.generate, static_argnums=2)(jax.random.key(1), params, 450, source))
    assert out.shape == (450, 16) and out.dtype == np.int32
    np.testing.assert_array_equal(out[:, :2], np.asarray(x)[np.arange(450) % 200, :2])  # prompts, in order
    counts = np.asarray(params.counts)
    known = counts.sum(1, keepdims=True) > 0          # contexts seen in training (others back off to the unigram)
    assert not np.any((_numpy_counts(out, 3, v) > 0) & (counts == 0) & known)  # smoothing 0: no unseen trigram
    free_fam = jc.NGram(order=3, vocab_size=v, block=16, prompted=False)
    free = np.asarray(jax.jit(free_fam.generate, static_argnums=2)(jax.random.key(2), params, 50))
    assert not np.any((_numpy_counts(free, 3, v) > 0) & (counts == 0) & known)
    unigram = counts.sum(0) > 0
    assert np.all(unigram[out[:, 2:]]) and np.all(unigram[free[:, 2:]])  # backed-off draws stay in the vocabulary


@pytest.fixture(scope="module")
def decoded_draws():
    """40,000 single tokens from one distribution under each decoding setting (order 1, block 1)."""
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    settings = {"plain": {}, "temperature": {"temperature": 0.5}, "top_k": {"top_k": 2}, "top_p": {"top_p": 0.65},
                "top_k_temperature": {"top_k": 3, "temperature": 2.0}}
    out = {}
    draw = jax.jit(lambda fam, params: fam.generate(jax.random.key(3), params, 40_000))  # one compile: traced settings
    for name, kwargs in settings.items():
        fam = jc.NGram(order=1, vocab_size=4, block=1, **kwargs)
        out[name] = np.asarray(draw(fam, fam.make_params(counts=probs * 10)))[:, 0]
    return probs, out


@pytest.mark.parametrize("name", ["plain", "temperature", "top_k", "top_p", "top_k_temperature"])
def test_decoding_settings_draw_the_transformed_distribution(decoded_draws, name):
    probs, draws = decoded_draws
    expected = {"plain": probs, "temperature": probs**2, "top_k": np.array([0.4, 0.3, 0, 0]),
                "top_p": np.array([0.4, 0.3, 0, 0]), "top_k_temperature": np.sqrt(probs) * [1, 1, 1, 0]}[name]
    expected = expected / expected.sum()
    observed = (draws[name][:, None] == np.arange(4)).astype(float)
    kept = expected > 0
    assert np.all(observed[:, ~kept] == 0)
    assert np.all(z_score(observed[:, kept], expected[kept]) < Z_MAX)


def test_truncation_matches_a_sorting_reference():
    rng = np.random.default_rng(0)
    weights = rng.choice([0.0, 0.05, 0.1, 0.2, 0.3, 0.7, 1.0], size=(50, 12))  # many ties
    whole = jax.jit(lambda fam, w: fam._truncate(w))
    deep = jax.jit(lambda fam, w: fam._truncate(w, top=3))  # most top-p cuts lie past 3 candidates: bisected
    cases = [(0, 0.5), (3, 1.0), (3, 0.5), (1, 0.99), (12, 0.2), (20, 0.7)]
    for (top_k, top_p), truncate in [*itertools.product(cases, [whole]), *((c, deep) for c in cases if c[0] <= 3)]:
        fam = jc.NGram(2, 12, top_k=top_k, top_p=top_p, block=4)
        kept = np.asarray(truncate(fam, jnp.asarray(weights, jnp.float32))) > 0
        reference = weights.copy()
        for row in reference:
            if top_k > 0:
                row[row < np.sort(row)[::-1][min(top_k, 12) - 1]] = 0  # ties at the k-th are kept
            ordered = np.sort(row)[::-1]
            before = (np.cumsum(ordered) - ordered) / ordered.sum()  # mass strictly above each
            row[row < ordered[(before < top_p - 1e-7) & (ordered > 0)].min()] = 0
        np.testing.assert_array_equal(kept, reference > 0)


def test_two_step_draws_follow_the_decoded_rows_partial_blocks_and_backoff():
    """The sampler picks a block of 8 tokens, then a token in it: with 13 tokens (a partial last block),
    a context never seen (the unigram back-off) and top-p, each row's draws follow the decoded row
    (NumPy: smoothed probabilities, then the top-p set by sorting)."""
    rng = np.random.default_rng(1)
    counts = rng.integers(0, 6, size=(13, 13)) * (rng.random((13, 13)) < 0.5)
    counts[4] = 0                                                    # context 4: never seen, backs off
    fam = jc.NGram(order=2, vocab_size=13, smoothing=0.3, top_p=0.8, block=2)
    params = fam.make_params(counts=counts)
    n = 20_000
    context = jnp.repeat(jnp.arange(13), n)
    draws = np.asarray(jax.jit(lambda p, u: fam.sampler(p).draw(context, u))(
        params, jax.random.uniform(jax.random.key(4), context.shape))).reshape(13, n)
    rows = np.where(counts.sum(1, keepdims=True) > 0, counts, counts.sum(0)) + 0.3
    for c in range(13):
        p = rows[c] / rows[c].sum()
        ordered = np.sort(p)[::-1]
        before = np.cumsum(ordered) - ordered                         # mass strictly above each
        expected = np.where(p >= ordered[before < 0.8 - 1e-7].min(), p, 0)
        expected /= expected.sum()
        observed = (draws[c][:, None] == np.arange(13)).astype(float)
        assert np.all(observed[:, expected == 0] == 0)
        assert np.all(z_score(observed[:, expected > 0], expected[expected > 0]) < Z_MAX)


@pytest.mark.slow
def test_a_fresh_real_share_of_zero_is_replace_bit_for_bit(char_text):
    """experiments/paper_lm.toml runs "no original data" as fresh_real(0.0), so that both settings share
    one compiled program: its real draws have weight 0, and the counts are those of replace exactly."""
    fam = jc.NGram(order=2, vocab_size=len(char_text.vocab), smoothing=0.01, top_p=0.9, block=16, n_eval=4)
    source = jc.Source(data=char_text.train[:40], heldout=char_text.heldout[:8])
    run = lambda regime: jc.simulate(jax.random.key(5), fam, source, n_chains=2, n_generations=3,  # noqa: E731
                                     n_samples=40, regime=regime, record=["counts", "heldout_perplexity"])
    a, b = run(jc.replace()), run(jc.fresh_real(0.0))
    for name in ("counts", "heldout_perplexity"):
        np.testing.assert_array_equal(np.asarray(a.metrics[name]), np.asarray(b.metrics[name]))


# ---------------------------------------------------------------- the engine: held-out data stays out
def test_heldout_text_never_enters_training(char_text):
    v = len(char_text.vocab)
    train = char_text.train[:60]
    absent = int(np.setdiff1d(np.arange(v), np.unique(train))[0])  # a token the training blocks lack
    heldout = np.full((8, 16), absent, np.int32)
    fam = jc.NGram(order=2, vocab_size=v, smoothing=0.0, block=16, n_eval=4)
    res = jc.simulate(jax.random.key(0), fam, jc.Source(data=train, heldout=heldout), n_chains=2,
                      n_generations=3, n_samples=40, regime=jc.fresh_real(0.5), record=["counts", "heldout_perplexity"])
    counts = np.asarray(res.metrics["counts"])
    assert np.all(counts[..., absent] == 0) and np.all(counts[:, :, absent, :] == 0)
    assert np.all(np.isinf(res.metrics["heldout_perplexity"]))  # never seen, so probability 0 (smoothing 0)


# ---------------------------------------------------------------- closed forms (ORACLES.md section 8)
def _bernoulli_z(share, prob, n):
    """z of an observed share of n Bernoulli(prob) outcomes: the standard error from prob itself, so a share of
    exactly 1 against prob = 0.99999 is not a zero-variance infinity."""
    prob = np.asarray(prob, float)
    return np.abs(share - prob) / np.sqrt(np.maximum(prob * (1 - prob), 1e-300) / n)


N_CHAINS = 10_000
WF_BLOCKS = 400      # real blocks of 2 characters: one context and one next character each
WF_GENERATIONS = 12


@pytest.fixture(scope="module")
def held_context_chains():
    """Bigram chains with every context held at a real prompt: block = order = 2, all real blocks prompt."""
    text = load_text("char", block=2)
    data = text.train[:WF_BLOCKS]
    fam = jc.NGram(order=2, vocab_size=len(text.vocab), smoothing=0.0, block=2, n_eval=1)
    record = lambda p: {"rows": fam.collision_per_context(p), "space": p.counts[1]}  # noqa: E731  (token 1: " ")
    res = jc.simulate(jax.random.key(11), fam, jc.Source(data=data), n_chains=N_CHAINS,
                      n_generations=WF_GENERATIONS, n_samples=WF_BLOCKS, record=record)
    counts0 = _numpy_counts(data, 2, len(text.vocab))
    return counts0, res


@pytest.mark.slow
def test_held_context_collision_follows_the_wright_fisher_law(held_context_chains):
    counts0, res = held_context_chains
    n, s0 = theory.ngram_row_collisions(counts0)
    rows = np.asarray(res.metrics["rows"], np.float64)              # [chains, generations + 1, contexts]
    gens = np.arange(WF_GENERATIONS + 1)
    np.testing.assert_allclose(rows[:, 0][:, n > 0], np.broadcast_to(s0[n > 0], rows[:, 0][:, n > 0].shape),
                               rtol=1e-5)  # generation 0 is the real text's rows, in every chain
    weighted = rows[:, :, n > 0] @ (n[n > 0] / n.sum())
    assert np.all(z_score(weighted[:, 1:], theory.ngram_expected_collision(gens[1:], counts0)) < Z_MAX)
    moving = np.flatnonzero((n >= 3) & (s0 < 1))                     # rows whose collision can still change
    assert len(moving) >= 20
    for g in (1, 4, WF_GENERATIONS):
        expected = theory.wright_fisher_collision(g, n[moving], s0[moving])
        assert np.all(z_score(rows[:, g, moving], expected) < Z_MAX)


@pytest.mark.slow
def test_held_context_tokens_survive_by_the_wright_fisher_law(held_context_chains):
    counts0, res = held_context_chains
    space = np.asarray(res.metrics["space"])                         # [chains, generations + 1, V]: the row after " "
    n = int(counts0[1].sum())
    assert n >= 50
    gens = [0, 1, 3, WF_GENERATIONS]
    survival = theory.ngram_row_survival_probs(gens, n, counts0[1] / n)
    alive = (space[:, gens] > 0).astype(float)
    varying = (survival > 0) & (survival < 1)
    assert varying.sum() >= 10
    assert np.all(_bernoulli_z(alive.mean(0), survival, N_CHAINS)[varying] < Z_MAX)
    fixed = ~varying                                                 # survival exactly 0 or 1
    assert np.all(alive[:, fixed] == survival[fixed])
    np.testing.assert_allclose(space.sum(-1), n)                     # the row keeps its n draws


@pytest.mark.slow
def test_a_bigram_nucleus_decoding_drops_returns_only_with_the_fresh_real_share():
    """paper_lm.toml's setting, fresh 10%: a training bigram outside its row's top-p set is never written,
    so at generation 1 it is in the model exactly when one of the b real blocks holding it is among the
    90 fresh ones: probability 1 - C(904 - b, 90) / C(904, 90) (hypergeometric). The mechanism that
    keeps a fresh 10% from holding the n-gram near generation 0 (benchmarks/RESULTS.md)."""
    from scipy.special import gammaln

    text = load_text("word", block=64, vocab_size=1000)
    n, v = text.train.shape[0], len(text.vocab)
    fam = jc.NGram(order=2, vocab_size=v, smoothing=0.001, top_p=0.9, block=64, tokenizer="word", n_eval=1)
    params0, _ = fam.fit(None, jnp.asarray(text.train), jnp.ones(n))
    counts0 = np.asarray(params0.counts).reshape(-1)
    dropped = np.flatnonzero((counts0 > 0) & (np.asarray(fam.decoding_weights(params0)).reshape(-1) == 0))
    assert len(dropped) >= 1000
    blocks = np.zeros(v * v, int)                                    # real blocks holding each bigram
    for block in text.train:
        blocks[np.unique(block[:-1] * v + block[1:])] += 1
    m = round(0.1 * n)
    log_choose = lambda a, b: gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)  # noqa: E731
    expected = np.mean(1 - np.exp(log_choose(n - blocks[dropped], m) - log_choose(n, m)))
    index = jnp.asarray(dropped)
    res = jc.simulate(jax.random.key(21), fam, jc.Source(data=text.train), n_chains=48, n_generations=1,
                      n_samples=n, regime=jc.fresh_real(0.1),
                      record=lambda p: {"present": jnp.sum(p.counts.reshape(-1)[index] > 0)})
    present = np.asarray(res.metrics["present"]) / len(dropped)      # [chains, 2]: share of the dropped bigrams
    assert np.all(present[:, 0] == 1)
    assert z_score(present[:, 1], expected) < Z_MAX


@pytest.fixture(scope="module")
def unigram_and_categorical():
    probs = np.array([0.45, 0.3, 0.15, 0.07, 0.03])
    ngram = jc.NGram(order=1, vocab_size=5, block=4, n_eval=1)
    a = jc.simulate(jax.random.key(12), ngram, ngram.make_params(counts=probs), n_chains=N_CHAINS,
                    n_generations=10, n_samples=5, record=lambda p: {"counts": p.counts[0]})
    cat = jc.Categorical(5)
    b = jc.simulate(jax.random.key(13), cat, cat.make_params(probs), n_chains=N_CHAINS, n_generations=10,
                    n_samples=20, record=lambda p: {"counts": p.probs * 20})
    return probs, np.rint(np.asarray(a.metrics["counts"])).astype(int), np.rint(np.asarray(b.metrics["counts"])).astype(int)


@pytest.mark.slow
def test_a_unigram_chain_is_a_categorical_chain(unigram_and_categorical):
    from scipy.stats import chi2_contingency

    probs, unigram, categorical = unigram_and_categorical    # [chains, generations + 1, 5] counts of 20 draws
    for g in (0, 1, 4, 10):
        for token in range(5):
            values = np.arange(21)
            table = np.stack([np.bincount(unigram[:, g, token], minlength=21),
                              np.bincount(categorical[:, g, token], minlength=21)])
            table = table[:, table.sum(0) > 0]
            if table.shape[1] > 1:
                assert chi2_contingency(table).pvalue > P_TWO_SIDED_Z4, (g, token, values)


@pytest.mark.slow
def test_unigram_token_survival_matches_the_categorical_law(unigram_and_categorical):
    probs, unigram, _ = unigram_and_categorical
    gens = [0, 2, 5, 10]
    survival = theory.categorical_survival_probs(gens, 20, probs)
    assert np.all(_bernoulli_z((unigram[:, gens] > 0).mean(0), survival, N_CHAINS) < Z_MAX)
    assert np.all(z_score(unigram[:, 10] / 20, probs) < Z_MAX)  # E p_g = p_0
