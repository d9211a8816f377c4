"""Text as token blocks: the shipped corpus, two tokenizers, a vocabulary, a train / held-out split.

The corpus is the English text of the Python 3.11.7 documentation's topic pages (CPython's
Lib/pydoc_data/topics.py: the values of its `topics` dict in sorted key order, joined with no
separator), 464,970 characters, gzip-compressed in jaxcollapse/data/ with the PSF licence
notice. It is a frozen snapshot, so every user gets the same text whatever their Python; its
SHA-256 is checked on every load.

Tokenizers:
    "char"   every character is a token (103 types in the corpus)
    "word"   lowercase alphabetic words, re.findall("[a-z]+", text.lower()): digits, punctuation
             and layout are dropped (64,285 words, 3,118 types in the corpus)

Vocabulary: id 0 is "<unk>"; ids 1, 2, ... are the types of the *training* split by descending
frequency (ties alphabetical). A vocab_size cap keeps the vocab_size - 1 most frequent types and
maps the rest to <unk>, as does a type that only occurs in held-out text. So the vocabulary and
every count a model sees come from training text only.

Split: the token stream is cut into non-overlapping blocks of `block` tokens (the tail that does
not fill a block is dropped); a random share `heldout_fraction` of the blocks (a permutation fixed
by `seed`) is held out. Blocks share no token, so held-out text never enters training.
"""
from __future__ import annotations

import collections
import gzip
import hashlib
import os
import re
from importlib import resources
from typing import NamedTuple

import numpy as np

from jaxcollapse import _checks

CORPUS_FILE = "pydoc_topics_3.11.7.txt.gz"
CORPUS_SHA256 = "37d06970fc926e60c16dff401e441b84752446a36b6b64516c229fdec77e992c"  # of the UTF-8 text
TOKENIZERS = ("char", "word")
UNK = "<unk>"
_WORD = re.compile("[a-z]+")


class Text(NamedTuple):
    """Token blocks of a text and the vocabulary that decodes them."""

    train: np.ndarray      # int32 [n_train, block]
    heldout: np.ndarray    # int32 [n_heldout, block]
    vocab: tuple           # vocab[i] is token i's string; vocab[0] == "<unk>"
    tokenizer: str

    def decode(self, tokens) -> str:
        """The text of a sequence of token ids (words joined by spaces; <unk> shown as such)."""
        parts = [self.vocab[int(t)] for t in np.asarray(tokens).ravel()]
        return ("" if self.tokenizer == "char" else " ").join(parts)


def corpus_text() -> str:
    """The shipped corpus as one string, checked against its SHA-256 (ValueError if it differs)."""
    raw = gzip.decompress(resources.files("jaxcollapse").joinpath("data", CORPUS_FILE).read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CORPUS_SHA256:
        raise ValueError(f"the shipped corpus {CORPUS_FILE} is damaged: SHA-256 {digest}, expected {CORPUS_SHA256}")
    return raw.decode("utf-8")


def tokenize(text: str, tokenizer: str) -> list[str]:
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}, got {tokenizer!r}")
    return list(text) if tokenizer == "char" else _WORD.findall(text.lower())


def load_text(tokenizer: str = "char", block: int = 64, path=None, heldout_fraction: float = 0.1,
              vocab_size: int | None = None, seed: int = 0) -> Text:
    """Train and held-out token blocks (int32 [n, block]) of the shipped corpus or of a text file.

    Args:
      tokenizer: "char" or "word" (see the module docstring).
      block: tokens per block (the points of an n-gram chain).
      path: a UTF-8 text file of your own; None for the shipped corpus.
      heldout_fraction: share of the blocks held out, in (0, 1); at least one block each side.
      vocab_size: cap on the vocabulary, <unk> included (>= 2); None keeps every training type.
      seed: fixes which blocks are held out.

    Examples:
      >>> text = load_text("word", block=64, vocab_size=1000)
      >>> text.train.shape, text.heldout.shape, len(text.vocab), text.vocab[:4]
      ((904, 64), (100, 64), 1000, ('<unk>', 'the', 'a', 'is'))
    """
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {', '.join(map(repr, TOKENIZERS))}, got {tokenizer!r}")
    _checks.positive_int("block", block)
    _checks.number_in("heldout_fraction", heldout_fraction, 0.0, 1.0, low_open=True, high_open=True)
    if vocab_size is not None:
        _checks.positive_int("vocab_size", vocab_size, minimum=2)
    text = corpus_text() if path is None else _read(path)
    tokens = tokenize(text, tokenizer)
    n_blocks = len(tokens) // block
    if n_blocks < 2:
        raise ValueError(f"block must be at most half the text's length ({len(tokens)} {tokenizer} tokens), "
                         f"so that there is a training and a held-out block; got block={block}")
    order = np.random.default_rng(seed).permutation(n_blocks)
    n_heldout = min(max(int(round(heldout_fraction * n_blocks)), 1), n_blocks - 1)
    blocks = np.asarray(tokens[: n_blocks * block], dtype=object).reshape(n_blocks, block)
    train_words, heldout_words = blocks[np.sort(order[n_heldout:])], blocks[np.sort(order[:n_heldout])]
    vocab = _vocabulary(train_words.ravel(), vocab_size)
    ids = {word: i for i, word in enumerate(vocab)}
    encode = np.vectorize(lambda word: ids.get(word, 0), otypes=[np.int32])
    return Text(encode(train_words), encode(heldout_words), vocab, tokenizer)


def _read(path) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"path {path!r} is not a file; pass a UTF-8 text file, or path=None for the shipped corpus")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _vocabulary(train_tokens, vocab_size: int | None) -> tuple:
    counts = collections.Counter(train_tokens.tolist())
    counts.pop(UNK, None)
    types = sorted(counts, key=lambda word: (-counts[word], word))
    if vocab_size is not None:
        types = types[: vocab_size - 1]
    return (UNK, *types)
