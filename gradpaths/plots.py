"""Figures of a ``Decomposition``: hop-class curves, the distance × hop heatmap, state adjoints.

Every function returns a ``matplotlib.figure.Figure`` and never saves or shows it.
Figures are built without pyplot, so nothing piles up in pyplot's figure registry;
pass ``ax=`` to draw into an existing Axes instead. ``norms`` is the reusable,
jit- and vmap-friendly reduction behind the plots:

.. math::

    n[d, k] = \\Big(\\sum_{\\text{leaves } p} \\lVert G^{(d,k)}_p \\rVert_F^2\\Big)^{1/2}

the global norm of the (distance d, hop class k) contribution over all parameters.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def norms(tree: Any, lead: int = 1) -> jax.Array:
    """Global L2 norm over a pytree's leaves and all but its first ``lead`` axes.

    Args:
      tree: a pytree whose leaves share their leading axes, e.g.
        ``d.by_distance_hops`` (leaves [T, K+1, ...]) with ``lead=2``.
      lead: how many leading axes to keep.

    Returns:
      An array of the shared leading shape, e.g. [T, K+1].
    """
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError("norms needs a pytree with at least one array leaf, got an empty tree")
    if isinstance(lead, bool) or not isinstance(lead, int) or lead < 0:
        raise ValueError(f"lead must be an int >= 0, got {lead!r}")
    heads = {tuple(jnp.shape(leaf)[:lead]) for leaf in leaves}
    if len(heads) != 1 or any(jnp.ndim(leaf) < lead for leaf in leaves):
        raise ValueError(f"leaves must share their first {lead} axes; got leading shapes {sorted(heads)}")
    (head,) = heads
    sq = sum(jnp.sum(jnp.square(jnp.asarray(leaf)).reshape(*head, -1), axis=-1) for leaf in leaves)
    return jnp.sqrt(sq)


def hop_labels(n_classes: int, highway: bool = True) -> list[str]:
    """Legend labels for K+1 hop classes: "0 hops (highway)", "1 hop", ..., "≥K hops"."""
    if n_classes == 1:
        return ["all paths"]
    labels = ["0 hops (highway)" if highway else "0 hops"]
    labels += [f"{k} hop" if k == 1 else f"{k} hops" for k in range(1, n_classes - 1)]
    return [*labels, f"≥{n_classes - 1} hops"]


def _axes(ax: Axes | None, figsize=(5.5, 3.6)) -> tuple[Figure, Axes]:
    if ax is None:
        fig = Figure(figsize=figsize, layout="constrained")
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax.figure, ax


def _has_highway(cell: Any) -> bool:
    return True if cell is None else bool(cell.highway_edges)


def _table(decomposition: Any, field: str, part: str) -> Any:
    if not hasattr(decomposition, field):
        raise TypeError(f"expected a gradpaths Decomposition, got {type(decomposition).__name__}")
    table = getattr(decomposition, field)
    if table is None:
        raise ValueError(f"this plot needs d.{field}: run decompose(..., parts=({part!r}, ...))")
    return table


def _curves(ax: Axes, n_xk: np.ndarray, labels: list[str]) -> None:
    """One line per class k, through the points where the norm is positive and finite."""
    x = np.arange(n_xk.shape[0])
    for k, label in enumerate(labels):
        keep = np.isfinite(n_xk[:, k]) & (n_xk[:, k] > 0)
        ax.plot(x[keep], n_xk[keep, k], label=label, lw=1.5)
    ax.set_yscale("log")
    ax.legend(fontsize="small", frameon=False)


def hop_curves(decomposition: Any, *, cell: Any = None, ax: Axes | None = None, title: str | None = None) -> Figure:
    """‖G^{(d,k)}‖ against distance d, one line per hop class k (log y axis).

    With ``max_hops=1`` this is the highway class against all the rest.

    Args:
      decomposition: from ``decompose(..., parts=("distance_hops",))``.
      cell: optional; a cell without highway edges (an RNN) drops "(highway)" from the legend.
      ax: draw here instead of on a new figure.
      title: the axes title.
    """
    n_dk = np.asarray(norms(_table(decomposition, "by_distance_hops", "distance_hops"), lead=2))
    fig, ax = _axes(ax)
    _curves(ax, n_dk, hop_labels(n_dk.shape[1], _has_highway(cell)))
    ax.set_xlabel("distance (steps)")
    ax.set_ylabel("‖contribution‖")
    if title:
        ax.set_title(title)
    return fig


def distance_hop_heatmap(
    decomposition: Any, *, ax: Axes | None = None, title: str | None = None, cmap: str = "viridis"
) -> Figure:
    """log10 ‖G^{(d,k)}‖ as an image: distance d across, hop class k up (empty where 0)."""
    n_dk = np.asarray(norms(_table(decomposition, "by_distance_hops", "distance_hops"), lead=2))
    with np.errstate(divide="ignore"):
        log_kd = np.ma.masked_invalid(np.where(n_dk > 0, np.log10(n_dk), np.nan).T)
    fig, ax = _axes(ax, figsize=(6.0, 3.2))
    image = ax.imshow(log_kd, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")
    n_k = n_dk.shape[1]
    ax.set_yticks(range(n_k), [str(k) for k in range(n_k - 1)] + [f"≥{n_k - 1}" if n_k > 1 else "all"])
    ax.set_xlabel("distance (steps)")
    ax.set_ylabel("hop class")
    fig.colorbar(image, ax=ax, label="log10 ‖contribution‖")
    if title:
        ax.set_title(title)
    return fig


def state_curves(
    decomposition: Any, *, field: str | None = None, cell: Any = None, ax: Axes | None = None, title: str | None = None
) -> Figure:
    """‖dL/ds_t‖ by hop class against t: the "highway curves" of the state adjoints.

    Args:
      decomposition: from ``decompose(..., parts=("state",))``.
      field: which state field, e.g. "c" or "h"; default "c" where the state has one.
      cell, ax, title: as for ``hop_curves``.
    """
    states = _table(decomposition, "state_grads", "state")
    fields = getattr(states, "_fields", ())
    field = field or ("c" if "c" in fields else "h")
    if field not in fields:
        raise ValueError(f"field must be one of the state's fields {fields}, got {field!r}")
    n_tk = np.asarray(norms(getattr(states, field), lead=2))
    fig, ax = _axes(ax)
    _curves(ax, n_tk, hop_labels(n_tk.shape[1], _has_highway(cell)))
    ax.set_xlabel("time step t")
    ax.set_ylabel(f"‖dL/d{field}_t‖")
    if title:
        ax.set_title(title)
    return fig
