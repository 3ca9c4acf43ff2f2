"""Tasks: shapes, determinism, and each no-memory baseline against its formula on a large sample."""

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gradpaths import tasks

N = 20000


def sample(task, key, n):
    """The task's sampler, jitted (one compile per task and size: tasks.make is cached)."""
    return jax.jit(task.sample, static_argnums=1)(key, n)


@pytest.mark.parametrize(
    "name, T, length, n_in, n_out",
    [
        ("adding", 12, 12, 2, 1),
        ("copy", 5, 25, 10, 9),
        ("selective", 12, 12, 4, 2),
        ("digits", 64, 64, 1, 10),
        ("digits", 8, 8, 8, 10),
    ],
)
def test_shapes_and_determinism(name, T, length, n_in, n_out):
    task = tasks.make(name, T)
    assert (task.length, task.input_size, task.output_size) == (length, n_in, n_out)
    b = sample(task, jax.random.key(3), 5)
    assert b.inputs.shape == (5, length, n_in)
    assert b.mask.shape == b.score_mask.shape == (5, length)
    again = sample(task, jax.random.key(3), 5)
    other = sample(task, jax.random.key(4), 5)
    for x, y in zip(b, again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(b.inputs, other.inputs)


def test_adding_baseline_and_structure():
    T = 20
    task = tasks.make("adding", T)
    b = sample(task, jax.random.key(0), N)
    marks = b.inputs[..., 1]
    np.testing.assert_array_equal(marks[:, : T // 2].sum(1), 1.0)
    np.testing.assert_array_equal(marks[:, T // 2 :].sum(1), 1.0)
    np.testing.assert_allclose(b.targets[:, -1, 0], (b.inputs[..., 0] * marks).sum(1), rtol=1e-6)
    ones = jnp.ones((N, T, 1))
    mse, acc = tasks.loss_and_accuracy(task, ones, b)
    # Var((S-1)^2) = E(S-1)^4 - 1/36 = 1/15 - 1/36 = 7/180 for S = U_1 + U_2: allow 4 standard errors.
    assert abs(float(mse) - 1 / 6) < 4 * math.sqrt(7 / 180 / N)
    assert task.baseline == pytest.approx(1 / 6)
    assert math.isnan(float(acc))


@pytest.mark.parametrize("T", [10, 100])
def test_copy_baseline_is_the_memoryless_optimum(T):
    task = tasks.make("copy", T)
    b = sample(task, jax.random.key(1), 64)
    tokens = np.asarray(jnp.argmax(b.inputs, -1))
    np.testing.assert_array_equal(tokens[:, 10 + T - 1], tasks.COPY_MARKER)
    np.testing.assert_array_equal(b.targets[:, -10:], tokens[:, :10])
    assert set(np.unique(tokens[:, :10])) <= set(range(1, 9))
    # Memoryless optimum: certain of the blank until the last 10 steps, then uniform over 1..8.
    blank = jnp.full((T + 10, 9), -1e9).at[:, 0].set(0.0)
    recall = jnp.full((10, 9), 0.0).at[:, 0].set(-1e9)
    logits = jnp.broadcast_to(jnp.concatenate([blank, recall]), (64, T + 20, 9))
    ce, _ = tasks.loss_and_accuracy(task, logits, b)
    assert float(ce) == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-9)
    assert task.baseline == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-12)
    if T == 100:
        assert task.baseline == pytest.approx(0.1733, abs=5e-5)
    perfect = 50.0 * jax.nn.one_hot(b.targets, 9)
    ce, acc = tasks.loss_and_accuracy(task, perfect, b)
    assert float(ce) < 1e-12 and float(acc) == 1.0


def test_selective_needs_forgetting():
    T = 16
    task = tasks.make("selective", T)
    b = sample(task, jax.random.key(2), N)
    tok = np.asarray(jnp.argmax(b.inputs, -1))
    label = np.asarray(b.targets[:, -1])
    last = np.asarray(tasks.last_but(b.inputs))
    t = np.arange(T)
    assert (last >= T // 2).all() and (last <= T - 2).all()
    assert (tok[np.arange(N), last] == tasks.BUT).all()
    assert ((tok == tasks.BUT) & (t > last[:, None])).sum() == 0
    after = t > last[:, None]
    before = (t < last[:, None]) & (tok != tasks.BUT)

    def rule(where):
        score = ((tok == tasks.POSITIVE) & where).sum(1) - ((tok == tasks.NEGATIVE) & where).sum(1)
        return np.mean((score > 0) == (label == 1))

    assert rule(after) == 1.0  # after the last "but" the sentiment is unanimous and present
    assert abs(rule(before) - 0.5) < 0.02  # before it, nothing about the label
    assert rule(after | before) < 0.8  # counting everything fails: the past must be discarded
    assert abs(label.mean() - 0.5) < 0.02
    ce, acc = tasks.loss_and_accuracy(task, jnp.zeros((N, T, 2)), b)
    assert float(ce) == pytest.approx(task.baseline) and task.baseline == pytest.approx(math.log(2))
    assert task.baseline_accuracy == 0.5


def test_digits_baseline_and_split():
    train_x, train_y = tasks.digits_split("train")
    test_x, test_y = tasks.digits_split("test")
    assert len(train_y) + len(test_y) == 1797 and len(test_y) == 359
    assert train_x.min() >= 0 and train_x.max() <= 1
    counts = np.bincount(train_y, minlength=10)
    p = counts / counts.sum()
    task = tasks.make("digits", 64)
    assert task.baseline == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    assert abs(task.baseline - math.log(10)) < 2e-3
    b = sample(task, jax.random.key(0), 256)
    ce, _ = tasks.loss_and_accuracy(task, jnp.broadcast_to(jnp.log(jnp.asarray(p)), (256, 64, 10)), b)
    assert abs(float(ce) - task.baseline) < 0.05
    rows = sample(tasks.make("digits", 8), jax.random.key(0), 256)
    np.testing.assert_array_equal(rows.inputs.reshape(256, 64), b.inputs.reshape(256, 64))
    test_task = tasks.make("digits", 8, split="test")
    assert test_task.baseline == pytest.approx(tasks.class_entropy(test_y, 10))


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"gradpaths\[digits\]"):
        tasks.digits_split.__wrapped__("train")  # past the cache


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("nope", 10), {}, ValueError, "unknown task"),
        (("adding", 1), {}, ValueError, "T for task 'adding'"),
        (("copy", 2.5), {}, TypeError, "T for task 'copy' must be an int"),
        (("digits", 10), {}, ValueError, "T=64"),
        (("digits", 64), {"split": "val"}, ValueError, "split"),
        (("selective", 10), {"max_buts": 0}, ValueError, "max_buts"),
        (("selective", 10), {"density": 1.5}, ValueError, "density"),
        (("adding", 10), {"density": 0.5}, ValueError, "unknown"),
    ],
)
def test_bad_inputs(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        tasks.make(*args, **kwargs)


def test_loss_rejects_wrong_output_shape():
    task = tasks.make("copy", 5)
    b = sample(task, jax.random.key(0), 2)
    with pytest.raises(ValueError, match="outputs must have shape"):
        tasks.loss_and_accuracy(task, jnp.zeros((2, 25, 10)), b)
