"""Training harness: end to end, bit-identical reruns, h-detach gradients, divergence, sharded seeds."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradpaths as gp
from gradpaths import tasks, train

# Few configs, shared by several tests so each compiles once (make_trainer and make_seeds
# are cached). Gaussian recurrent init: the orthogonal init's QR is slow to compile.
ADDING = train.TrainConfig(
    task="adding",
    T=10,
    cell="lstm",
    hidden_size=16,
    recurrent_init="gaussian",
    batch_size=32,
    steps=300,
    segment=100,
    lr=1e-2,
    decompose_every=50,
    max_hops=2,
    long_range=3,
)
SMALL = train.TrainConfig(
    task="adding", T=6, cell="lstm", hidden_size=4, recurrent_init="gaussian", batch_size=4, steps=4, segment=2, lr=1e-2
)
PROBE = dataclasses.replace(SMALL, decompose_every=2, max_hops=2, long_range=1)
DIVERGING = train.TrainConfig(
    task="adding", T=6, cell="irnn", hidden_size=4, batch_size=4, steps=4, segment=2, optimizer="sgd", lr=1e6
)
KEYS3 = jax.random.split(jax.random.key(0), 3)


def _bits(x):
    return jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x


@pytest.fixture(scope="module")
def adding_run():
    return jax.jit(train.make_train(ADDING))(jax.random.key(0))


def test_tiny_config_trains_and_beats_the_adding_baseline(adding_run):
    m = adding_run.metrics
    baseline = tasks.make("adding", ADDING.T).baseline
    assert m.loss.shape == (3,)
    np.testing.assert_array_equal(m.step, [100, 200, 300])
    assert not bool(m.diverged.any()) and int(adding_run.state.diverged_at) == -1
    assert float(m.loss[-1]) < 0.1 * baseline
    assert float(m.loss[-1]) < float(m.loss[0])
    np.testing.assert_allclose(m.baseline, baseline, rtol=1e-6)
    assert np.isnan(m.accuracy).all()  # mse task
    np.testing.assert_array_equal(m.clipped, 0.0)
    assert (np.asarray(m.grad_norm) > 0).all()
    for share in (m.highway_share, m.long_range_share):
        assert np.isfinite(share).all() and (np.asarray(share) >= 0).all()
    assert (np.asarray(m.highway_share) > 0).all()


def test_same_key_is_bit_identical(adding_run):
    again = jax.jit(train.make_train(ADDING))(jax.random.key(0))
    for x, y in zip(jax.tree.leaves(adding_run), jax.tree.leaves(again)):
        np.testing.assert_array_equal(_bits(x), _bits(y))
    other = jax.jit(train.make_train(ADDING))(jax.random.key(1))
    assert not np.array_equal(other.metrics.loss, adding_run.metrics.loss)


def test_probe_shares_match_a_direct_decomposition():
    trainer = train.make_trainer(PROBE)
    state = trainer.init(jax.random.key(5))
    hwy, far, ok = jax.jit(trainer.probe)(state)
    task, cell = trainer.task, trainer.cell
    batch = task.sample(state.probe_key, PROBE.probe_batch)
    ro = state.params["readout"]
    loss_fn = lambda hs: tasks.loss_and_accuracy(task, hs @ ro["W"] + ro["b"], batch)[0]
    decomp = jax.jit(lambda p: gp.decompose(cell, p, batch.inputs, loss_fn, max_hops=2, parts=("hops", "distance")))
    d = decomp(state.params["cell"])
    norm = lambda tree: float(jnp.sqrt(sum(jnp.sum(x.astype(jnp.float64) ** 2) for x in jax.tree.leaves(tree))))
    assert float(hwy) == pytest.approx(norm(jax.tree.map(lambda g: g[0], d.by_hops)) / norm(d.total), rel=1e-5)
    far_want = norm(jax.tree.map(lambda g: g[2:].sum(0), d.by_distance)) / norm(d.total)
    assert float(far) == pytest.approx(far_want, rel=1e-5)
    assert 0 < far_want < 1 and bool(ok)


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_h_detach_blocks_the_gates_edge_float64(p):
    config = dataclasses.replace(SMALL, h_detach=p, dtype="float64")
    trainer = train.make_trainer(config)
    params = trainer.init(jax.random.key(0)).params
    batch = trainer.task.sample(jax.random.key(1), 3)
    (_, _), grads = jax.jit(trainer.loss_and_grad)(params, batch, jax.random.key(2))
    ro = params["readout"]
    loss_fn = lambda hs: tasks.loss_and_accuracy(trainer.task, hs @ ro["W"] + ro["b"], batch)[0]
    masked = jax.jit(lambda a: gp.masked_grad(trainer.cell, params["cell"], batch.inputs, loss_fn, {"gates": a}))
    want = masked(1.0 - p)
    for k in want:
        np.testing.assert_allclose(grads["cell"][k], want[k], rtol=1e-12, atol=1e-15)
    if p == 1.0:
        assert not np.allclose(grads["cell"]["W_h"], masked(1.0)["W_h"])


def test_forced_divergence_is_recorded_not_raised():
    out = train.make_seeds(DIVERGING, per_device="vmap").train(KEYS3)
    at = np.asarray(out.state.diverged_at)
    assert (at >= 0).all() and (at < DIVERGING.steps).all()
    assert bool(out.metrics.diverged[:, -1].all())
    mapped = jax.jit(lambda k: jax.lax.map(train.make_train(DIVERGING), k))(KEYS3)
    np.testing.assert_array_equal(mapped.state.diverged_at, at)


def test_a_diverged_seed_freezes_while_the_others_go_on():
    runner = train.make_seeds(SMALL)
    states = runner.init(KEYS3)
    poisoned = states.params["cell"]["W_h"].at[0].set(jnp.nan)
    states = states._replace(params={**states.params, "cell": {**states.params["cell"], "W_h": poisoned}})
    new, m = runner.run_segment(states)
    np.testing.assert_array_equal(new.diverged_at, [0, -1, -1])
    np.testing.assert_array_equal(m.diverged, [True, False, False])
    assert np.isnan(m.loss[0]) and np.isfinite(m.loss[1:]).all()
    for before, after in zip(jax.tree.leaves(states.params), jax.tree.leaves(new.params)):
        np.testing.assert_array_equal(after[0], before[0])  # frozen (NaNs compare equal here)
        assert not np.array_equal(after[1], before[1])  # still training


_SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_enable_x64", {x64})
    from gradpaths import train
    config = train.TrainConfig(**json.loads(sys.argv[1]))
    keys = jax.random.split(jax.random.key(0), 3)
    loss = {{m: train.make_seeds(config, per_device=m).train(keys).metrics.loss.tolist() for m in ("map", "vmap")}}
    print(json.dumps({{"devices": jax.device_count(), "loss": loss}}))
    """
)


def test_sharded_train_matches_the_host_segment_loop():
    """train() over 3 seeds sharded on 2 host devices (padded to 4; lax.map or vmap on each)
    equals init + run_segment on 1 device."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    code = _SHARDED.format(x64=jax.config.jax_enable_x64)
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(dataclasses.asdict(SMALL))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2
    runner = train.make_seeds(SMALL)
    states = runner.init(KEYS3)
    for i in range(SMALL.steps // SMALL.segment):
        states, m = runner.run_segment(states)
        for per_device in ("map", "vmap"):
            np.testing.assert_allclose(m.loss, np.asarray(got["loss"][per_device])[:, i], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"steps": 10, "segment": 3}, ValueError, "segment must divide steps"),
        ({"segment": 10, "decompose_every": 3}, ValueError, "decompose_every must divide segment"),
        ({"cell": "transformer"}, ValueError, "cell must be one of"),
        ({"optimizer": "lion"}, ValueError, "optimizer must be one of"),
        ({"cell": "rnn", "h_detach": 0.5}, ValueError, "gates"),
        ({"h_detach": 1.5}, ValueError, "h_detach"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"clip_norm": -1.0}, ValueError, "clip_norm"),
        ({"hidden_size": 8.0}, TypeError, "hidden_size must be an int"),
        ({"cell": "gru", "chrono": 50}, ValueError, "chrono"),
        ({"cell": "lstm", "activation": "relu"}, ValueError, "activation"),
        ({"cell": "irnn", "recurrent_init": "gaussian"}, ValueError, "irnn.*does not take.*recurrent_init"),
        ({"cell": "gru", "forget_gate": False}, ValueError, "gru.*does not take.*forget_gate"),
        ({"task": "nope"}, ValueError, "unknown task"),
        ({"layers": 0}, ValueError, "layers"),
        ({"cell_options": "c=8"}, TypeError, "cell_options must be"),
        ({"cell_options": (("c",),)}, TypeError, "cell_options must be"),
        ({"cell": "rglru", "cell_options": (("no_such", 1),)}, ValueError, "rglru.*does not take.*no_such"),
    ],
)
def test_bad_configs_raise(kwargs, error, match):
    with pytest.raises(error, match=match):
        train.make_trainer(train.TrainConfig(**kwargs))


def test_make_trainer_rejects_non_config():
    with pytest.raises(TypeError, match="TrainConfig"):
        train.make_trainer({"task": "adding"})


def test_h_detach_carried_in_the_state_equals_the_config_value():
    """One compiled trainer (config p > 0) runs any p from its state: the same parameters as a
    trainer compiled for that p (bit for bit under XLA's default codegen; the test processes'
    legacy fusion emitters fuse the two programs differently, one float32 ulp apart)."""
    runner = train.make_seeds(dataclasses.replace(SMALL, h_detach=0.5))
    for p in (0.25, 0.0):
        states = runner.init(KEYS3)
        got, _ = runner.run_segment(states._replace(h_detach=jnp.full_like(states.h_detach, p)))
        ref_runner = train.make_seeds(dataclasses.replace(SMALL, h_detach=p))
        want, _ = ref_runner.run_segment(ref_runner.init(KEYS3))
        for x, y in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_layers_and_cell_options_build_the_model_they_name():
    """layers=2 trains gp.stack([cell] * 2) (h-detach blocks both layers' hop edges); cell_options
    reach the constructor. Same loss and gradient as the model built by hand."""
    cfg = dataclasses.replace(SMALL, layers=2, h_detach=1.0)
    cell = train.make_cell(cfg)
    assert cell == gp.stack([gp.lstm(4, recurrent_init="gaussian")] * 2)
    rg = train.TrainConfig(cell="rglru", cell_options={"sqrt_max_gradient": 1e3})
    assert train.make_cell(rg) == gp.rglru(32, sqrt_max_gradient=1e3)
    assert rg.cell_options == (("sqrt_max_gradient", 1e3),)
    assert train.TrainConfig(**json.loads(json.dumps(dataclasses.asdict(rg)))) == rg  # a config read back from JSON
    trainer = train.make_trainer(cfg)
    state = trainer.init(jax.random.key(0))
    assert len(state.params["cell"]) == 2
    batch = trainer.task.sample(jax.random.key(1), 3)

    def by_hand(params):  # p = 1: every hop edge of both layers blocked at every step
        scales = {e: jnp.zeros(batch.inputs.shape[1]) for e in ("0.gates", "1.gates")}
        hs = gp.unroll(cell, params["cell"], batch.inputs, scales=scales)
        return tasks.loss_and_accuracy(trainer.task, hs @ params["readout"]["W"] + params["readout"]["b"], batch)[0]

    (loss, _), grads = trainer.loss_and_grad(state.params, batch, jax.random.key(2))
    want, want_g = jax.value_and_grad(by_hand)(state.params)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(want_g)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
