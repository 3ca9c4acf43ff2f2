"""Training a cell plus a linear readout on a task: pure, jittable, many seeds at once.

The model is ``y_t = h_t W + b`` on top of ``hs = unroll(cell, θ, x)``; the loss is the
task's (``tasks.loss_and_accuracy``). One training step, with per-step data from the key:

.. math::

    g = ∇_{θ, W, b}\\,\\mathcal{L},\\qquad g ← g \\min(1, c / ‖g‖)\\ \\text{(if clip\\_norm = c)},\\qquad
    (θ, W, b) ← \\mathrm{optax}(g)

h-detach (Kanuparthi et al. 2019) scales the gradient through the cell's hop edges (the LSTM's ``gates``) by
α_t ~ Bernoulli(1 - p) at each step t (one mask per training step, shared by the
batch); the forward pass is unchanged. A seed whose loss or gradient is non-finite
is marked diverged at that step; its parameters freeze and later steps are left out
of its metrics, so the other seeds under ``vmap`` go on.

Every ``decompose_every`` steps a fixed probe batch is decomposed (``gp.decompose``)
and two shares of the cell-parameter gradient G are recorded (‖·‖ is the global
norm over the parameter pytree; either may exceed 1 when parts cancel):

.. math::

    \\text{highway share} = ‖G^{[0]}‖ / ‖G‖,\\qquad
    \\text{long-range share} = ‖Σ_{d > d_0} G_d‖ / ‖G‖

Steps run in ``lax.scan`` segments: ``train(key)`` scans over all segments, and the
host can instead call ``init`` and ``run_segment`` in a loop to show progress.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradpaths import cells, tasks
from gradpaths._checks import check_int as _check_int
from gradpaths.decompose import decompose
from gradpaths.unroll import unroll

OPTIMIZERS = {"adam": optax.adam, "rmsprop": optax.rmsprop, "sgd": optax.sgd}
DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run (per seed).

    Attributes:
      task, T: ``tasks.make(task, T)``.
      cell: a name in ``gradpaths.cells.REGISTRY``. hidden_size: H.
      forget_bias, forget_gate, chrono: LSTM options. activation: RNN only.
      recurrent_init: None for the cell's default. recurrent_scale: g.
      cell_options: any other keyword options of the cell's constructor, as (name, value)
        pairs, e.g. ``(("sqrt_max_gradient", 1000.0),)`` for RG-LRU (a dict or lists are
        accepted and stored as a tuple of pairs).
      layers: L; above 1 the model is ``gp.stack([cell] * L)`` (L layers of the same cell).
      batch_size, steps, segment: steps run in segments of ``segment`` (divides steps).
      optimizer: "adam" | "rmsprop" | "sgd"; lr; clip_norm: None for no clipping.
      h_detach: p, the probability of blocking the hop edges (LSTM: ``gates``) at each step.
      decompose_every: N (0: never; divides segment). probe_batch: its batch size. A probe's
        distance split uses ``max_distance=long_range + 1``, so it costs O(T · d_0), not O(T²).
      max_hops: K for the highway share. long_range: d_0 for the long-range share.
      dtype: "float32" | "float64".
    """

    task: str = "adding"
    T: int = 50
    cell: str = "lstm"
    hidden_size: int = 32
    forget_bias: float = 1.0
    forget_gate: bool = True
    chrono: int | None = None
    activation: str = "tanh"
    recurrent_init: str | None = None
    recurrent_scale: float = 1.0
    cell_options: tuple[tuple[str, Any], ...] = ()
    layers: int = 1
    batch_size: int = 32
    steps: int = 1000
    segment: int = 100
    optimizer: str = "adam"
    lr: float = 1e-3
    clip_norm: float | None = None
    h_detach: float = 0.0
    decompose_every: int = 0
    probe_batch: int = 8
    max_hops: int = 4
    long_range: int = 10
    dtype: str = "float32"

    def __post_init__(self):
        for name in ("hidden_size", "layers", "batch_size", "steps", "segment", "probe_batch"):
            _check_int(name, getattr(self, name), 1)
        for name in ("decompose_every", "max_hops", "long_range"):
            _check_int(name, getattr(self, name), 0)
        if self.steps % self.segment:
            raise ValueError(f"segment must divide steps, got steps={self.steps}, segment={self.segment}")
        if self.decompose_every and self.segment % self.decompose_every:
            raise ValueError(
                "decompose_every must divide segment, got "
                f"decompose_every={self.decompose_every}, segment={self.segment}"
            )
        _check_choice("cell", self.cell, tuple(cells.REGISTRY))
        opts = self.cell_options
        opts = tuple(opts.items()) if isinstance(opts, Mapping) else opts
        if not isinstance(opts, (tuple, list)) or not all(
            isinstance(o, (tuple, list)) and len(o) == 2 and isinstance(o[0], str) for o in opts
        ):
            raise TypeError(f"cell_options must be (name, value) pairs or a dict, got {self.cell_options!r}")
        object.__setattr__(self, "cell_options", tuple(tuple(o) for o in opts))  # hashable; JSON gives lists
        _check_choice("optimizer", self.optimizer, tuple(OPTIMIZERS))
        _check_choice("dtype", self.dtype, tuple(DTYPES))
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a number > 0, got {self.lr!r}")
        if self.clip_norm is not None and (not isinstance(self.clip_norm, (int, float)) or not self.clip_norm > 0):
            raise ValueError(f"clip_norm must be None or a number > 0, got {self.clip_norm!r}")
        if not isinstance(self.h_detach, (int, float)) or not 0.0 <= self.h_detach <= 1.0:
            raise ValueError(f"h_detach must be a probability in [0, 1], got {self.h_detach!r}")
        cell = make_cell(self)
        if self.h_detach and not (cell.hop_edges and set(cell.edges) - set(cell.hop_edges)):
            raise ValueError(
                f"h_detach blocks a cell's hop edges (the LSTM's gates) and needs a highway beside them; "
                f"cell={self.cell!r} has edges {cell.edges} and hop edges {cell.hop_edges}"
            )
        if self.dtype == "float64" and not jax.config.jax_enable_x64:
            raise ValueError("dtype='float64' needs jax_enable_x64")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


_CELL_OPTIONS = ("forget_bias", "forget_gate", "chrono", "activation", "recurrent_init", "recurrent_scale")


def make_cell(config: TrainConfig):
    """The cell the config describes: ``cells.REGISTRY[config.cell](hidden_size, **options)``,
    passing the cell options that differ from TrainConfig's defaults and ``cell_options``;
    ``gp.stack`` of ``layers`` copies when layers > 1."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    options = {k: getattr(config, k) for k in _CELL_OPTIONS if getattr(config, k) != defaults[k]}
    options |= dict(config.cell_options)
    try:
        cell = cells.REGISTRY[config.cell](config.hidden_size, **options)
    except TypeError as e:
        raise ValueError(f"cell={config.cell!r} does not take the option(s) {sorted(options)}: {e}") from e
    return cell if config.layers == 1 else cells.stack([cell] * config.layers)


class TrainState(NamedTuple):
    """params: {"cell": θ, "readout": {"W": [H, O], "b": [O]}}; diverged_at: -1 or the step.

    h_detach: the h-detach probability p the steps use (``config.h_detach`` at init; a
    state may carry another p, e.g. one per seed under vmap, when ``config.h_detach > 0``
    compiled the masking in).
    """

    params: Any
    opt_state: Any
    key: jax.Array
    probe_key: jax.Array
    step: jax.Array
    diverged_at: jax.Array
    h_detach: jax.Array | float = 0.0


class Metrics(NamedTuple):
    """Per segment, over the steps before divergence (NaN if none; shares NaN if never probed).

    loss, accuracy (NaN for mse tasks), baseline (the task's no-memory loss), grad_norm
    (mean pre-clip global norm), clipped (fraction of steps clipped), highway_share and
    long_range_share (mean over the segment's probes), diverged (by the segment's end),
    step (steps done at the segment's end).
    """

    loss: jax.Array
    accuracy: jax.Array
    baseline: jax.Array
    grad_norm: jax.Array
    clipped: jax.Array
    highway_share: jax.Array
    long_range_share: jax.Array
    diverged: jax.Array
    step: jax.Array


class TrainResult(NamedTuple):
    """The final state and the metrics stacked over segments [n_segments]."""

    state: TrainState
    metrics: Metrics


class Trainer(NamedTuple):
    """Pure functions for one seed.

    init(key) -> TrainState; run_segment(state) -> (state, Metrics); train(key) ->
    TrainResult; loss_and_grad(params, batch, key, h_detach=config.h_detach) -> ((loss,
    accuracy), grads), the gradient one step uses (key draws the h-detach mask); probe(state) -> (highway
    share, long-range share, valid) on the state's probe batch.
    """

    init: Callable[[jax.Array], TrainState]
    run_segment: Callable[[TrainState], tuple[TrainState, Metrics]]
    train: Callable[[jax.Array], TrainResult]
    loss_and_grad: Callable
    probe: Callable[[TrainState], tuple[jax.Array, jax.Array, jax.Array]]
    task: tasks.Task
    cell: Any


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _masked_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(valid, x, 0.0)) / jnp.sum(valid).astype(x.dtype)


def make_trainer(config: TrainConfig) -> Trainer:
    """The pure per-seed functions for ``config`` (see the module docstring).

    Cached per config, so calling it again returns the same functions and jit reuses
    what it compiled.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    return _make_trainer(config)


@functools.lru_cache(maxsize=64)
def _make_trainer(config: TrainConfig) -> Trainer:
    task = tasks.make(config.task, config.T)
    cell = make_cell(config)
    dtype = DTYPES[config.dtype]
    opt = OPTIMIZERS[config.optimizer](config.lr)
    if config.clip_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(config.clip_norm), opt)
    n_t, n_h, n_o = task.length, config.hidden_size, task.output_size

    def outputs(params, xs, scales=None):
        hs = unroll(cell, params["cell"], xs, scales=scales)
        return hs @ params["readout"]["W"] + params["readout"]["b"]

    def loss_fn(params, batch, scales):
        return tasks.loss_and_accuracy(task, outputs(params, batch.inputs.astype(dtype), scales), batch)

    def init(key):
        k_cell, k_out, k_train, k_probe = jax.random.split(key, 4)
        w = jax.random.normal(k_out, (n_h * n_o,), dtype).reshape(n_h, n_o)  # flat: see tasks._uniforms
        readout = {"W": w / jnp.sqrt(n_h).astype(dtype), "b": jnp.zeros((n_o,), dtype)}
        params = {"cell": cell.init(k_cell, task.input_size, dtype), "readout": readout}
        p = jnp.asarray(config.h_detach, jnp.result_type(float))  # the dtype bernoulli gives a float
        return TrainState(params, opt.init(params), k_train, k_probe, jnp.int32(0), jnp.int32(-1), p)

    def loss_and_grad(params, batch, key, h_detach=config.h_detach):
        scales = None
        if config.h_detach:
            keep = jax.random.bernoulli(key, 1.0 - h_detach, (n_t,))
            scales = {e: keep.astype(dtype) for e in cell.hop_edges}
        return jax.value_and_grad(loss_fn, has_aux=True)(params, batch, scales)

    def train_step(state, _):
        key, k_data, k_mask = jax.random.split(state.key, 3)
        batch = task.sample(k_data, config.batch_size)
        (loss, acc), grads = loss_and_grad(state.params, batch, k_mask, state.h_detach)
        finite = jnp.isfinite(loss)
        for g in jax.tree.leaves(grads):
            finite = finite & jnp.all(jnp.isfinite(g))
        healthy = finite & (state.diverged_at < 0)
        with jax.numpy_dtype_promotion("standard"):  # optax's bias correction computes float ** int32 count
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        keep_new = lambda new, old: jnp.where(healthy, new, old)
        diverged_at = jnp.where((state.diverged_at < 0) & ~finite, state.step, state.diverged_at)
        new = TrainState(
            jax.tree.map(keep_new, params, state.params),
            jax.tree.map(keep_new, opt_state, state.opt_state),
            key,
            state.probe_key,
            state.step + 1,
            diverged_at,
            state.h_detach,
        )
        gnorm = _global_norm(grads)
        clipped = gnorm > config.clip_norm if config.clip_norm is not None else jnp.zeros((), bool)
        return new, (loss, acc, gnorm, clipped, healthy)

    def probe(state):
        batch = task.sample(state.probe_key, config.probe_batch)
        readout = state.params["readout"]

        def probe_loss(hs):
            return tasks.loss_and_accuracy(task, hs @ readout["W"] + readout["b"], batch)[0]

        d = decompose(
            cell,
            state.params["cell"],
            batch.inputs.astype(dtype),
            probe_loss,
            max_hops=config.max_hops,
            parts=("hops", "distance"),
            max_distance=config.long_range + 1,  # the last bucket collects d > long_range: O(T·d_0)
        )
        total = _global_norm(d.total)
        far = jax.tree.map(lambda g: g[config.long_range + 1 :].sum(0), d.by_distance)
        hwy = jax.tree.map(lambda g: g[0], d.by_hops)
        return _global_norm(hwy) / total, _global_norm(far) / total, state.diverged_at < 0

    def chunk(state, _):
        state, per_step = jax.lax.scan(train_step, state, None, length=config.decompose_every)
        return state, (per_step, probe(state))

    def run_segment(state):
        if config.decompose_every:
            n_probes = config.segment // config.decompose_every
            state, (per_step, (hwy, far, ok)) = jax.lax.scan(chunk, state, None, length=n_probes)
            per_step = jax.tree.map(lambda v: v.reshape(-1), per_step)
            hwy_m, far_m = _masked_mean(hwy, ok), _masked_mean(far, ok)
        else:
            state, per_step = jax.lax.scan(train_step, state, None, length=config.segment)
            hwy_m = far_m = jnp.asarray(jnp.nan, dtype)
        loss, acc, gnorm, clipped, valid = per_step
        metrics = Metrics(
            loss=_masked_mean(loss, valid),
            accuracy=_masked_mean(acc, valid),
            baseline=jnp.asarray(task.baseline, dtype),
            grad_norm=_masked_mean(gnorm, valid),
            clipped=_masked_mean(clipped.astype(dtype), valid),
            highway_share=hwy_m,
            long_range_share=far_m,
            diverged=state.diverged_at >= 0,
            step=state.step,
        )
        return state, metrics

    def train(key):
        state = init(key)
        state, metrics = jax.lax.scan(lambda s, _: run_segment(s), state, None, length=config.steps // config.segment)
        return TrainResult(state, metrics)

    return Trainer(init, run_segment, train, loss_and_grad, probe, task, cell)


def make_train(config: TrainConfig) -> Callable[[jax.Array], TrainResult]:
    """``train(key) -> TrainResult``, pure and jittable: ``jax.jit(jax.vmap(make_train(c)))(keys)``."""
    return make_trainer(config).train


def over_seeds(fn: Callable, *, per_device: str | None = None, devices=None) -> Callable:
    """``fn`` (one seed) mapped over a leading seed axis of every argument, jitted.

    With more than one device the seed axis is split across them (``jax.shard_map``);
    each device runs its seeds with ``vmap`` (per_device="vmap") or one after another
    with ``lax.map`` (per_device="map"). None picks "map" on CPU and "vmap" on
    accelerators. On CPU, "map" runs each seed's program unchanged whatever the number of
    devices, so results are bit-identical on 1 or N host devices (tests/test_devices.py;
    vmap changes the matmul shapes with the per-device seed count, and measured slower
    than a loop); the experiments make one host device per core (``experiments._common``),
    so seeds use every core. A seed count that the devices do not divide is padded by
    repeating the last seed, and the padding is dropped from the result.
    """
    devices = jax.devices() if devices is None else list(devices)
    if per_device is None:
        per_device = "map" if devices[0].platform == "cpu" else "vmap"
    _check_choice("per_device", per_device, ("vmap", "map"))
    batched = jax.vmap(fn) if per_device == "vmap" else (lambda *xs: jax.lax.map(lambda x: fn(*x), xs))
    n_dev = len(devices)
    if n_dev == 1:
        return jax.jit(batched)
    mesh = jax.sharding.Mesh(devices, ("seeds",))
    spec = jax.sharding.PartitionSpec("seeds")
    sharded = jax.shard_map(batched, mesh=mesh, in_specs=spec, out_specs=spec, check_vma=False)

    def padded(*args):
        n = jax.tree.leaves(args)[0].shape[0]
        extra = -n % n_dev
        pad = lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], extra, axis=0)]) if extra else x
        out = sharded(*jax.tree.map(pad, args))
        return jax.tree.map(lambda y: y[:n], out)

    return jax.jit(padded)


class SeedRunner(NamedTuple):
    """Many seeds of one config, each call one jitted (and sharded) computation.

    init(keys [S]) -> states [S]; run_segment(states) -> (states, metrics [S]);
    train(keys [S]) -> TrainResult [S, ...] (all segments in one call).
    """

    init: Callable
    run_segment: Callable
    train: Callable
    trainer: Trainer


def make_seeds(config: TrainConfig, *, per_device: str | None = None, devices=None) -> SeedRunner:
    """``over_seeds`` applied to ``make_trainer(config)``'s functions.

    Cached per (config, per_device, devices), so a second call reuses the compiled functions.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    return _make_seeds(config, per_device, None if devices is None else tuple(devices))


@functools.lru_cache(maxsize=64)
def _make_seeds(config: TrainConfig, per_device: str | None, devices) -> SeedRunner:
    trainer = make_trainer(config)
    wrap = lambda f: over_seeds(f, per_device=per_device, devices=devices)
    return SeedRunner(wrap(trainer.init), wrap(trainer.run_segment), wrap(trainer.train), trainer)
