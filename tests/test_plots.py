"""gradpaths.plots: figures with the right lines and images, finite data, and no files written."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from matplotlib.figure import Figure

import gradpaths as gp
from gradpaths import plots

T, K = 12, 3


@pytest.fixture(scope="module")
def lstm_decomposition():
    cell = gp.lstm(4)
    params = cell.init(jax.random.key(0), 3, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (2, T, 3), jnp.float64)
    d = gp.decompose(
        cell, params, xs, lambda hs: jnp.sum(hs[..., -1, :] ** 2), max_hops=K, parts=("distance_hops", "state")
    )
    return cell, d


@pytest.fixture(autouse=True)
def no_files_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield
    assert list(tmp_path.iterdir()) == []


def _line_data(fig):
    (ax,) = fig.axes[:1]
    return ax, [(line.get_xdata(), line.get_ydata()) for line in ax.get_lines()]


def test_norms_is_the_global_norm_per_leading_index():
    tree = {"a": jnp.arange(24.0).reshape(2, 3, 4), "b": jnp.ones((2, 3))}
    want = np.sqrt((np.arange(24.0).reshape(2, 3, 4) ** 2).sum(-1) + 1.0)
    np.testing.assert_allclose(plots.norms(tree, lead=2), want, rtol=1e-15)
    np.testing.assert_allclose(plots.norms(tree, lead=0), np.sqrt((want**2).sum()), rtol=1e-15)
    vmapped = jax.vmap(lambda t: plots.norms(t, lead=1))(tree)
    np.testing.assert_allclose(vmapped, want, rtol=1e-15)
    with pytest.raises(ValueError, match="share their first 2 axes"):
        plots.norms({"a": jnp.ones((2, 3)), "b": jnp.ones((3, 2))}, lead=2)


def test_hop_curves_one_finite_positive_line_per_class(lstm_decomposition):
    cell, d = lstm_decomposition
    fig = plots.hop_curves(d, cell=cell, title="LSTM")
    assert isinstance(fig, Figure)
    ax, lines = _line_data(fig)
    assert len(lines) == K + 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0 hops (highway)", "1 hop", "2 hops", "≥3 hops"]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "distance (steps)" and ax.get_title() == "LSTM"
    for k, (x, y) in enumerate(lines):
        assert len(x) > 0 and np.all(np.isfinite(y)) and np.all(y > 0)
        assert x.min() >= k  # k hops take at least k steps
    n_dk = np.asarray(plots.norms(d.by_distance_hops, lead=2))
    x0, y0 = lines[0]
    np.testing.assert_array_equal(y0, n_dk[x0, 0])


def test_heatmap_is_one_image_of_log_norms(lstm_decomposition):
    _, d = lstm_decomposition
    fig = plots.distance_hop_heatmap(d, title="heat")
    ax = fig.axes[0]
    assert len(ax.images) == 1 and len(fig.axes) == 2  # the image and its colorbar
    data = ax.images[0].get_array()
    assert data.shape == (K + 1, T)
    shown = data.compressed()
    assert shown.size > 0 and np.all(np.isfinite(shown))
    n_dk = np.asarray(plots.norms(d.by_distance_hops, lead=2))
    np.testing.assert_allclose(shown, np.log10(n_dk.T[n_dk.T > 0]), rtol=1e-12)
    assert data.mask[K, 0]  # ≥3 hops cannot happen at distance 0


def test_state_curves_by_field(lstm_decomposition):
    cell, d = lstm_decomposition
    ax, lines = _line_data(plots.state_curves(d, cell=cell))
    assert len(lines) == K + 1 and ax.get_ylabel() == "‖dL/dc_t‖"
    assert all(np.all(np.isfinite(y)) and np.all(y > 0) for _, y in lines)
    ax, _ = _line_data(plots.state_curves(d, field="h"))
    assert ax.get_ylabel() == "‖dL/dh_t‖"
    with pytest.raises(ValueError, match="field must be one of"):
        plots.state_curves(d, field="x")


def test_draws_into_a_given_axes(lstm_decomposition):
    _, d = lstm_decomposition
    fig = Figure()
    left, right = fig.subplots(1, 2)
    assert plots.hop_curves(d, ax=left) is fig
    assert plots.state_curves(d, ax=right) is fig
    assert len(left.get_lines()) == len(right.get_lines()) == K + 1
    with pytest.raises(TypeError, match="matplotlib Axes"):
        plots.hop_curves(d, ax="left")


def test_missing_part_and_wrong_type_raise(lstm_decomposition):
    _, d = lstm_decomposition
    with pytest.raises(ValueError, match="distance_hops"):
        plots.hop_curves(d._replace(by_distance_hops=None))
    with pytest.raises(ValueError, match="'state'"):
        plots.state_curves(d._replace(state_grads=None))
    with pytest.raises(TypeError, match="Decomposition"):
        plots.distance_hop_heatmap({"by_distance_hops": 1})


def test_labels_without_a_highway():
    assert plots.hop_labels(3, highway=False) == ["0 hops", "1 hop", "≥2 hops"]
    assert plots.hop_labels(2) == ["0 hops (highway)", "≥1 hops"]
    assert plots.hop_labels(1) == ["all paths"]
    rnn_labels = plots.hop_labels(2, highway=bool(gp.rnn(3).highway_edges))
    assert rnn_labels[0] == "0 hops"
