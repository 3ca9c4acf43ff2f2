"""Long-range memory tasks as pure functions of a PRNG key, each with its no-memory baseline.

A task samples a ``Batch`` (batch-major ``inputs`` [B, L, I], ``targets``, ``mask``,
``score_mask``) and defines its loss, averaged over the masked steps:

.. math::

    \\mathcal{L} = \\frac{Σ_{b,t} m_{bt}\\,ℓ(y_{bt}, z_{bt})}{Σ_{b,t} m_{bt}},\\qquad
    ℓ = \\text{mean}_o (y - z)^2 \\ \\text{("mse")}\\ \\text{ or }\\ -\\log\\mathrm{softmax}(y)_z \\ \\text{("ce")}

``baseline`` is the loss of the best predictor that remembers no input (it may know
the time step); ``baseline_accuracy`` is its accuracy on ``score_mask`` (None for mse).

- ``adding`` (Le et al. 2015; Arjovsky et al. 2016): channel 0 holds values ~ U[0, 1],
  channel 1 marks one position in each half; the target at the last step is the sum
  of the two marked values. Predicting 1 gives E[(U_1 + U_2 - 1)^2] = Var = 2/12 = 1/6.
- ``copy`` (Arjovsky et al. 2016): one-hot over {0 blank, 1..8 symbols, 9 marker};
  10 symbols ~ U{1..8}, then T-1 blanks, the marker, then 10 blanks (length T+20).
  Targets are blank except the last 10 steps, which must reproduce the symbols. The
  loss is the mean CE over **all** T+20 steps; a memoryless model is certain of the
  blanks and uniform over 8 symbols at the last 10 steps: baseline 10 ln 8 / (T+20).
- ``selective`` ("A, but B"): see ``sample_selective``. Baseline ln 2, accuracy 1/2.
- ``longlag`` (Hochreiter and Schmidhuber 1997, experiment 2a, "noise-free sequences with
  long time lags", p = T): the sequence (y, a_1, …, a_{p-1}) or (x, a_1, …, a_{p-1}), each
  with probability 1/2, one-hot over p + 1 symbols; at the last step the model predicts
  the sequence's final element, which equals its first (x or y). Baseline ln 2, accuracy 1/2.
- ``digits``: scikit-learn's 8×8 digits (shipped inside scikit-learn, the ``[digits]`` extra), scaled to [0, 1];
  T=64 feeds one pixel per step, T=8 one row per step; the class is predicted at the
  last step. Baseline: the entropy of the split's class frequencies (≈ ln 10).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

N_COPY = 10  # symbols to copy
COPY_SYMBOLS = 8
COPY_MARKER = 9

# Selective-forget vocabulary: token ids, one-hot in the input.
NEUTRAL, POSITIVE, NEGATIVE, BUT = 0, 1, 2, 3
SELECTIVE_VOCAB = 4

F32 = jnp.float32  # batches are float32 (int32 class ids); a model casts them to its dtype

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


class Batch(NamedTuple):
    """A batch of sequences, batch-major.

    Attributes:
      inputs: [B, L, I] float.
      targets: [B, L, O] float (mse) or [B, L] int class ids (ce).
      mask: [B, L] float, the loss weight of each step.
      score_mask: [B, L] float, the steps on which accuracy is scored.
    """

    inputs: jax.Array
    targets: jax.Array
    mask: jax.Array
    score_mask: jax.Array


@dataclasses.dataclass(frozen=True)
class Task:
    """A task: a sampler and what its loss means.

    Attributes:
      name, T: as given to ``make``. length: L, the number of input steps.
      input_size, output_size: I and O (O = number of classes for "ce").
      loss: "mse" or "ce". baseline: the no-memory loss. baseline_accuracy: its accuracy
      (None for "mse").
      sample: (key, batch_size) -> Batch, pure and jittable.
    """

    name: str
    T: int
    length: int
    input_size: int
    output_size: int
    loss: str
    baseline: float
    baseline_accuracy: float | None
    sample: Callable[[jax.Array, int], Batch] = dataclasses.field(compare=False, repr=False)


def _uniforms(key: jax.Array, *shapes: tuple[int, ...]) -> list[jax.Array]:
    """U[0, 1) arrays of the given shapes, carved from **one** flat draw.

    XLA:CPU compiles each threefry draw slowly (seconds for a >1-D one), so a sampler
    makes a single 1-D draw and derives everything from it.
    """
    sizes = [math.prod(s) for s in shapes]
    u = jax.random.uniform(key, (sum(sizes),), F32)
    ends = np.cumsum(sizes)
    return [u[e - n : e].reshape(s) for s, n, e in zip(shapes, sizes, ends)]


def _ints(u: jax.Array, low, high) -> jax.Array:
    """U{low, …, high-1} from u ~ U[0, 1) (elementwise; low and high may be arrays)."""
    span = jnp.asarray(high - low).astype(u.dtype)
    return jnp.minimum(low + jnp.floor(u * span).astype(jnp.int32), high - 1)


def _last_step(batch_size: int, length: int) -> jax.Array:
    return jnp.zeros((batch_size, length), F32).at[:, -1].set(1.0)


def sample_adding(key: jax.Array, batch_size: int, T: int) -> Batch:
    """Adding problem: inputs [B, T, 2] (value, marker); target [B, T, 1] (sum, at step T-1)."""
    values, u1, u2 = _uniforms(key, (batch_size, T), (batch_size,), (batch_size,))
    half = T // 2
    first, second = _ints(u1, 0, half), _ints(u2, half, T)
    marks = jax.nn.one_hot(first, T, dtype=F32) + jax.nn.one_hot(second, T, dtype=F32)
    total = jnp.sum(values * marks, axis=1)
    targets = jnp.zeros((batch_size, T, 1), F32).at[:, -1, 0].set(total)
    mask = _last_step(batch_size, T)
    return Batch(jnp.stack([values, marks], axis=-1), targets, mask, mask)


def sample_copy(key: jax.Array, batch_size: int, T: int) -> Batch:
    """Copy task: inputs one-hot [B, T+20, 10]; targets [B, T+20] in {0..8}."""
    length = T + 2 * N_COPY
    (u,) = _uniforms(key, (batch_size, N_COPY))
    symbols = _ints(u, 1, COPY_SYMBOLS + 1)
    blank_in = jnp.zeros((batch_size, length - N_COPY), symbols.dtype)
    tokens = jnp.concatenate([symbols, blank_in], axis=1).at[:, N_COPY + T - 1].set(COPY_MARKER)
    blank_out = jnp.zeros((batch_size, length - N_COPY), symbols.dtype)
    targets = jnp.concatenate([blank_out, symbols], axis=1)
    score = jnp.zeros((batch_size, length), F32).at[:, -N_COPY:].set(1.0)
    return Batch(
        jax.nn.one_hot(tokens, COPY_MARKER + 1, dtype=F32), targets, jnp.ones((batch_size, length), F32), score
    )


def sample_selective(key: jax.Array, batch_size: int, T: int, max_buts: int = 3, density: float = 0.5) -> Batch:
    """The "A, but B" selective-forget task: inputs one-hot [B, T, 4]; label [B, T] at step T-1.

    Tokens: NEUTRAL=0, POSITIVE=1, NEGATIVE=2, BUT=3. Each sequence is built as

    - the **last** "but" sits at p ~ U{⌈T/2⌉, …, T-2}, so the clause after it (steps
      p+1..T-1, at least one step) is never longer than the text before it;
    - n = min(U{0, …, max_buts-1}, p-1) further "but" tokens sit at distinct positions,
      uniformly among 1, …, p-1;
    - the buts cut the sequence into clauses; clause j has a sentiment s_j = ±1, drawn
      independently with probability 1/2 each;
    - every non-"but" step of clause j holds the word of sentiment s_j (POSITIVE for +1)
      with probability ``density``, else NEUTRAL; one uniformly chosen step of the last
      clause always holds its sentiment word;
    - the label is the last clause's sentiment: 1 for positive, 0 for negative.

    So the label is independent of everything before the last "but", and the text
    before it is at least as long and full of sentiment words from other clauses:
    counting sentiment over the whole sequence does not solve the task (the tests
    measure how far it falls short), and the model must discard what it read before
    the last "but". Without memory of the inputs the best prediction is 1/2: CE ln 2,
    accuracy 1/2.
    """
    b = (batch_size,)
    u_last, u_n, scores, u_sent, u_word, u_force = _uniforms(
        key, b, b, (batch_size, T), (batch_size, max_buts + 1), (batch_size, T), b
    )
    t = jnp.arange(T, dtype=jnp.int32)
    last = _ints(u_last, (T + 1) // 2, T - 1)
    n_extra = jnp.minimum(_ints(u_n, 0, max_buts), last - 1)
    # n_extra distinct positions in 1..p-1: the smallest ranks of random scores there.
    allowed = (t >= 1) & (t < last[:, None])
    scores = jnp.where(allowed, scores, 2.0)
    rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1).astype(jnp.int32)
    is_but = (rank < n_extra[:, None]) | (t == last[:, None])
    # clause index, the but itself counted before
    clause = jnp.cumsum(is_but, axis=1, dtype=jnp.int32) - is_but.astype(jnp.int32)
    sent = u_sent < 0.5
    step_sent = jnp.take_along_axis(sent, clause, axis=1)
    forced = _ints(u_force, last + 1, T)
    word = (u_word < density) | (t == forced[:, None])
    sentiment_word = jnp.where(step_sent, POSITIVE, NEGATIVE)
    tokens = jnp.where(is_but, BUT, jnp.where(word, sentiment_word, NEUTRAL))
    label = jnp.take_along_axis(step_sent, jnp.full((batch_size, 1), T - 1), axis=1)[:, 0]
    targets = jnp.zeros((batch_size, T), jnp.int32).at[:, -1].set(label.astype(jnp.int32))
    mask = _last_step(batch_size, T)
    return Batch(jax.nn.one_hot(tokens, SELECTIVE_VOCAB, dtype=F32), targets, mask, mask)


def last_but(inputs: jax.Array) -> jax.Array:
    """The step of the last "but" in selective-task inputs [..., T, 4] -> [...] (int)."""
    is_but = jnp.argmax(inputs, axis=-1) == BUT
    n_t = inputs.shape[-2]
    return n_t - 1 - jnp.argmax(jnp.flip(is_but, axis=-1), axis=-1)


@functools.cache
def digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split of scikit-learn's digits: (images [N, 64] in [0, 1], labels [N]).

    Needs scikit-learn, an optional extra (``pip install 'gradpaths[digits]'``); the data
    ship inside scikit-learn, so nothing is downloaded.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "the digits task needs scikit-learn, an optional extra: pip install 'gradpaths[digits]'"
        ) from err

    data = load_digits()
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(data.target))
    n_test = int(round(DIGITS_TEST_FRACTION * len(order)))
    idx = order[n_test:] if split == "train" else order[:n_test]
    return (data.data[idx] / 16.0).astype(np.float32), data.target[idx].astype(np.int32)


def class_entropy(labels: np.ndarray, n_classes: int) -> float:
    """The CE of always predicting the class frequencies: -Σ_k p_k ln p_k."""
    p = np.bincount(labels, minlength=n_classes) / len(labels)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def sample_digits(key: jax.Array, batch_size: int, T: int, split: str = "train") -> Batch:
    """Sequential digits: inputs [B, T, 64 // T] (T=64 pixels or T=8 rows); label at T-1."""
    images, labels = digits_split(split)
    (u,) = _uniforms(key, (batch_size,))
    idx = _ints(u, 0, len(labels))
    xs = jnp.asarray(images)[idx].reshape(batch_size, T, 64 // T)
    targets = jnp.zeros((batch_size, T), jnp.int32).at[:, -1].set(jnp.asarray(labels)[idx])
    mask = _last_step(batch_size, T)
    return Batch(xs, targets, mask, mask)


def sample_longlag(key: jax.Array, batch_size: int, T: int) -> Batch:
    """Long time lag, noise-free (1997 experiment 2a), p = T: inputs one-hot [B, T, T+1]; label [B, T] at T-1.

    Symbols 0..T-2 are the local symbols a_1..a_{T-1} (always in this order), T-1 is x and
    T is y; the label is 0 for x, 1 for y (the first symbol, read T-1 steps before).
    """
    (u,) = _uniforms(key, (batch_size,))
    first = (u < 0.5).astype(jnp.int32)
    local = jnp.broadcast_to(jnp.arange(T - 1, dtype=jnp.int32), (batch_size, T - 1))
    tokens = jnp.concatenate([(T - 1 + first)[:, None], local], axis=1)
    targets = jnp.zeros((batch_size, T), jnp.int32).at[:, -1].set(first)
    mask = _last_step(batch_size, T)
    return Batch(jax.nn.one_hot(tokens, T + 1, dtype=F32), targets, mask, mask)


TASKS = ("adding", "copy", "selective", "digits", "longlag")


def _check_T(name: str, T, low: int) -> int:
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
        raise TypeError(f"T for task {name!r} must be an int >= {low}, got {type(T).__name__} {T!r}")
    if T < low:
        raise ValueError(f"T for task {name!r} must be an int >= {low}, got {T}")
    return int(T)


@functools.lru_cache(maxsize=128)
def make(name: str, T: int, **options) -> Task:
    """The task ``name`` at lag/length ``T`` (cached: equal arguments give the same Task,
    so jitted samplers are compiled once).

    Args:
      name: "adding" (T >= 2 steps), "copy" (lag T >= 1, length T+20), "selective"
        (T >= 4 steps; options ``max_buts`` >= 1, ``density`` in (0, 1]) or "digits"
        (T = 64 pixels or T = 8 rows; option ``split`` "train" or "test"), or "longlag" (p = T >= 2).
      T: see above.
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {TASKS}")
    allowed = {"selective": {"max_buts", "density"}, "digits": {"split"}}.get(name, set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"task {name!r} takes options {sorted(allowed)}, got unknown {unknown}")
    if name == "adding":
        T = _check_T(name, T, 2)
        sample = functools.partial(sample_adding, T=T)
        return Task(name, T, T, 2, 1, "mse", 1.0 / 6.0, None, sample)
    if name == "copy":
        T = _check_T(name, T, 1)
        sample = functools.partial(sample_copy, T=T)
        base = N_COPY * math.log(COPY_SYMBOLS) / (T + 2 * N_COPY)
        return Task(name, T, T + 2 * N_COPY, COPY_MARKER + 1, COPY_SYMBOLS + 1, "ce", base, 1.0 / COPY_SYMBOLS, sample)
    if name == "longlag":
        T = _check_T(name, T, 2)
        return Task(name, T, T, T + 1, 2, "ce", math.log(2.0), 0.5, functools.partial(sample_longlag, T=T))
    if name == "selective":
        T = _check_T(name, T, 4)
        max_buts = options.get("max_buts", 3)
        density = options.get("density", 0.5)
        if isinstance(max_buts, bool) or not isinstance(max_buts, int) or max_buts < 1:
            raise ValueError(f"max_buts must be an int >= 1, got {max_buts!r}")
        if not isinstance(density, (int, float)) or not 0.0 < density <= 1.0:
            raise ValueError(f"density must be a float in (0, 1], got {density!r}")
        sample = functools.partial(sample_selective, T=T, max_buts=max_buts, density=float(density))
        return Task(name, T, T, SELECTIVE_VOCAB, 2, "ce", math.log(2.0), 0.5, sample)
    T = _check_T(name, T, 1)
    if T not in (8, 64):
        raise ValueError(f"task 'digits' takes T=64 (one pixel per step) or T=8 (one row per step), got T={T}")
    split = options.get("split", "train")
    if split not in ("train", "test"):
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    labels = digits_split(split)[1]
    counts = np.bincount(labels, minlength=10)
    sample = functools.partial(sample_digits, T=T, split=split)
    return Task(name, T, T, 64 // T, 10, "ce", class_entropy(labels, 10), float(counts.max() / counts.sum()), sample)


def loss_and_accuracy(task: Task, outputs: jax.Array, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """The task loss (module docstring) and accuracy of ``outputs`` [B, L, O].

    Accuracy is the fraction of ``score_mask`` steps where argmax(outputs) equals the
    target; NaN for "mse" tasks.
    """
    if outputs.shape[-1] != task.output_size or outputs.shape[:-1] != batch.mask.shape:
        raise ValueError(
            f"outputs must have shape {(*batch.mask.shape, task.output_size)} for task {task.name!r}, "
            f"got {outputs.shape}"
        )
    if task.loss == "mse":
        per_step = jnp.mean((outputs - batch.targets.astype(outputs.dtype)) ** 2, axis=-1)
        acc = jnp.asarray(jnp.nan, outputs.dtype)
    else:
        logp = jax.nn.log_softmax(outputs, axis=-1)
        per_step = -jnp.take_along_axis(logp, batch.targets[..., None], axis=-1)[..., 0]
        hit = (jnp.argmax(outputs, axis=-1).astype(batch.targets.dtype) == batch.targets).astype(outputs.dtype)
        score = batch.score_mask.astype(outputs.dtype)
        acc = jnp.sum(hit * score) / jnp.sum(score)
    mask = batch.mask.astype(outputs.dtype)
    return jnp.sum(per_step * mask) / jnp.sum(mask), acc
