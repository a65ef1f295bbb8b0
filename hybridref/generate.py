"""Sampling text from a checkpointed character LM with the streaming decoder.

The prompt goes through the parallel forward once (prefill); then the decoder's token loop
(`Decoder.generate`: on the C backend one C call for a chunk of tokens, sampling included, so Python
is not on the per-token path) samples each character and feeds it back. Sampling
(backends/numpy/sample.py): logits / temperature (0: greedy), then top-k (keep the k most likely),
then top-p (keep the smallest set of most likely characters whose probability reaches p), then one
draw of a counter-based uniform number of (seed, stream, position): the same seed gives the same
text, on every backend (up to float32 near-ties of the logits, which the backends compute apart).

The text is a stream: each character is handed on as it is drawn and nothing is kept, so a
recurrent model (Mamba: a constant-size decoder state) generates any number of characters in
constant memory. An attention layer without a window keeps a KV cache row for every position of
the run, prompt and new characters: the states' size is checked against
hybridref.limits.memory_limit() before they are allocated (the limit, not a model context: RoPE
attention has none). The positions of any run must fit the decoder's C int position.
"""
import numpy as np

from .backends.numpy.sample import check_sampling
from .checkpoint import load_checkpoint, restore, unreadable
from .data.shakespeare import CharVocab
from .errors import CheckpointError, UserError
from .limits import C_INT_MAX, check_allocation
from .models.char_lm import CharLM


def _vocabulary(path, ckpt):
    """The checkpoint's vocabulary, which must be the model's: one distinct character per embedding row
    (id i is the i-th character in sorted order)."""
    vocab, size = ckpt["vocab"], ckpt["config"].get("vocab_size")
    if not vocab:
        raise unreadable(path, "it has no vocabulary, so it cannot be sampled from")
    vocab = CharVocab(vocab)
    if len(vocab) != size:
        raise unreadable(path, f"its vocabulary holds {len(vocab)} characters but its model's embedding {size!r}")
    return vocab


def load_model(path, backend, need_vocab=True):
    """(model on `backend` (None: on no backend yet), vocabulary) from a checkpoint; CheckpointError if it
    does not describe one. need_vocab=False: a model without a vocabulary (one converted from Hugging
    Face, whose tokens are ids) loads too, its vocabulary None."""
    ckpt = load_checkpoint(path)
    vocab = _vocabulary(path, ckpt) if need_vocab or ckpt["vocab"] else None
    stored = sum(a.size for a in ckpt["params"].values())
    try:
        model = CharLM.from_config(ckpt["config"], max_params=stored)
    except (ValueError, TypeError, ArithmeticError) as e:  # the layers check their options with several types
        raise unreadable(path, f"its config does not describe a character LM: {e}") from None
    except MemoryError:
        raise unreadable(path, "its config describes a model larger than this machine's memory") from None
    try:
        restore(ckpt, model)
    except CheckpointError as e:
        raise unreadable(path, str(e)) from None
    return (model if backend is None else model.to(backend)), vocab


def decode_state_bytes(model, positions):
    """Bytes the decoder's states for one stream of `positions` tokens take, from states made for a batch
    of 0 streams, so that nothing large is allocated: an array with a batch axis is empty then, and its
    size for one stream is its shape with that axis (its first empty one) set to 1 (a KV cache's max_len
    rows or a window's ring of them, a recurrent state, Hyena's input history, whose batch axis is its
    second); an array without one (Hyena's filter rows) is counted as it is."""
    def size(a):
        if a.size:
            return a.nbytes
        shape = list(a.shape)
        shape[shape.index(0)] = 1
        return int(np.prod(shape)) * a.itemsize

    def arrays(state):
        if isinstance(state, np.ndarray):
            yield state
        elif isinstance(state, dict):
            for v in state.values():
                yield from arrays(v)
        elif isinstance(state, (list, tuple)):
            for v in state:
                yield from arrays(v)

    return sum(size(a) for a in arrays(model.init_state(0, positions)))


def check_decode_size(model, positions):
    """Refuse a decode of `positions` tokens that the decoder cannot index, or whose states (an
    attention layer's KV cache) would take more memory than the limit, before they are allocated."""
    if positions > C_INT_MAX:
        raise UserError(f"a decode of {positions} positions (prompt + --max-new-tokens) does not fit the decoder's "
                        f"C int position: lower --max-new-tokens so that the total is at most {C_INT_MAX}")
    check_allocation(f"the decoder's states (the KV cache of the attention layers) for {positions} positions",
                     decode_state_bytes(model, positions),
                     "lower --max-new-tokens (an attention layer without a window keeps every position of the "
                     "prompt and the new characters)")


def stream(model, vocab, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=0, weights="f32"):
    """An iterator over max_new_tokens characters sampled after `prompt`, each drawn when it is asked
    for. The prompt and the sizes are checked, and the prompt prefilled, before it is returned. weights:
    the decoder's weight matrices, "f32" or "bf16" (model.decoder)."""
    if not prompt:
        raise UserError("the prompt must hold at least one character")
    ids = stream_ids(model, vocab.encode(prompt), max_new_tokens, temperature, top_k, top_p, seed, weights)
    return (vocab.chars[i] for i in ids)


def parse_ids(text, vocab_size):
    """Token ids "1,2,3" -> int64 array; each an id of the model's vocabulary [0, vocab_size)."""
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise UserError(f"--prompt-ids {text!r}: give token ids as whole numbers separated by commas, "
                        f"such as 1,2,3") from None
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise UserError(f"--prompt-ids: {bad[:5]} are not token ids of this model (0 to {vocab_size - 1})")
    return np.array(ids, dtype=np.int64)


def stream_ids(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=0, weights="f32",
               stop_ids=()):
    """An iterator over up to max_new_tokens token ids sampled after the prompt `ids` (int64, (T,), T >= 1),
    each drawn when it is asked for; it ends after yielding one of `stop_ids` (an end-of-sequence token:
    transformers' generate also keeps it). The sizes are checked, and the prompt prefilled, before it is
    returned."""
    if len(ids) == 0:
        raise UserError("the prompt must hold at least one token")
    bad = sorted(i for i in stop_ids if not 0 <= i < model.vocab_size)
    if bad:
        raise UserError(f"stop ids {bad[:5]} are not token ids of this model (0 to {model.vocab_size - 1})")
    check_decode_size(model, len(ids) + max_new_tokens)
    dec = model.decoder(1, len(ids) + max_new_tokens, weights=weights)
    sampling = dict(seed=seed, temperature=temperature, top_k=top_k or 0, top_p=1.0 if top_p is None else top_p)
    check_sampling(seed, temperature, sampling["top_k"], sampling["top_p"])
    logits = dec.prefill(ids[None, :])
    return _draw(dec, logits, max_new_tokens, sampling, frozenset(stop_ids))


CHUNK = 256  # the most tokens of one decoder call: its fixed cost (~10 µs) shared by many tokens


def _draw(dec, logits, count, sampling, stop=frozenset()):
    """The tokens of the decoder's token loop in chunks of 1, 2, 4, ... CHUNK tokens: the first shows at
    once, later ones share a call. After a token of `stop` the rest of its chunk is dropped: the chunks
    double from 1, so at most as many tokens as were kept were drawn past it."""
    done, n = 0, 1
    while done < count:
        n = min(n, count - done)
        tokens, logits = dec.generate(logits, n, final=done + n == count, **sampling)
        for token in tokens[0].tolist():
            yield token
            if token in stop:
                return
        done += n
        n = min(2 * n, CHUNK)


def generate(model, vocab, prompt, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=0, on_text=None,
             weights="f32"):
    """The prompt followed by max_new_tokens sampled characters; on_text(ch) sees each as it is produced.
    (Keeps the whole text: `stream` is the form whose memory does not grow with max_new_tokens.)"""
    out = []
    for ch in stream(model, vocab, prompt, max_new_tokens, temperature, top_k, top_p, seed, weights):
        out.append(ch)
        if on_text:
            on_text(ch)
    return prompt + "".join(out)
