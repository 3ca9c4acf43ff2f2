"""Shared plumbing for claim experiments: flags, atomic output, resumable points, verdicts.

An experiment module defines ``CLAIM`` ("C1".."C9", or "" for extras), ``NAME``, a
one-line ``TITLE`` and ``run(args: Args) -> Outcome``; ``main()`` here gives it the
DESIGN.md command line. Only experiments and benchmarks write files.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


def use_every_core() -> None:
    """One XLA:CPU host device per core, so ``train.over_seeds`` shards seeds over all of
    them (``shard_map``, each device running its seeds with ``lax.map``); results are
    bit-identical whatever the device count (tests/test_devices.py). Other jitted work still
    runs on one device with XLA's multi-threaded intra-op pool. A device count the user put
    in ``XLA_FLAGS`` wins. Must run before JAX starts its backend, so this
    module calls it on import. The old ``--xla_cpu_multi_thread_eigen=false`` workaround is
    gone: the hang it was meant for was batched LAPACK QR, not Eigen (docs/hang.md)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags and cores() > 1:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={cores()}".strip()


def core_ids() -> list[int]:
    """The cores this process may run on."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def cores() -> int:
    return len(core_ids())


def pin_worker(slots) -> None:
    """Process-pool initializer: this worker runs on the core it takes from ``slots``, with one XLA host
    device (set before JAX starts its backend; the parent's device count is replaced)."""
    core = slots.get()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    flags = os.environ.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
    os.environ["XLA_FLAGS"] = " ".join(flags)


use_every_core()

SUPPORTED, NOT_SUPPORTED, NUANCED, INCONCLUSIVE = "SUPPORTED", "NOT SUPPORTED", "NUANCED", "INCONCLUSIVE"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, NUANCED, INCONCLUSIVE)


@dataclasses.dataclass(frozen=True)
class Args:
    """Flags shared by every experiment.

    scale: "quick" (smoke-sized, may be INCONCLUSIVE), "default" (2 CPU cores, real
    verdicts) or "full" (accelerator-sized).
    """

    scale: str = "default"
    seeds: int | None = None
    out: Path = Path("results")
    float64: bool = False
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def quick(self) -> bool:
        return self.scale == "quick"

    def pick(self, quick, default, full):
        """The value for this run's scale."""
        return {"quick": quick, "default": default, "full": full}[self.scale]

    def picks(self, **triples) -> dict:
        """{name: the value for this run's scale} from name=(quick, default, full)."""
        return {k: self.pick(*v) for k, v in triples.items()}

    def n_seeds(self, quick: int, default: int, full: int) -> int:
        return self.seeds if self.seeds is not None else self.pick(quick, default, full)

    @property
    def dtype(self):
        import jax.numpy as jnp

        return jnp.float64 if self.float64 else jnp.float32

    def dir(self, name: str) -> Path:
        d = Path(self.out) / name
        d.mkdir(parents=True, exist_ok=True)
        return d


class Reproduction(NamedTuple):
    """One row of the reproductions table."""

    source: str
    setting: str
    expected: str
    measured: str
    agrees: bool | None | str  # None: undecided at this size; NOT_RUN: the named setting was not run


NOT_RUN = "not run at this scale"


class Outcome(NamedTuple):
    """What an experiment reports to the runner."""

    claim: str
    name: str
    verdict: str
    headline: str
    figure: str
    reproductions: tuple[Reproduction, ...] = ()


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smoke-sized run (about a minute for the whole report)")
    p.add_argument(
        "--scale",
        choices=("quick", "default", "full"),
        default=None,
        help="problem size: quick, default (2 CPU cores) or full (accelerators)",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: per experiment and scale)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default: results/)")
    p.add_argument("--float64", action="store_true", help="run in float64")
    return p


def parse_args(description: str, argv=None) -> Args:
    ns = parser(description).parse_args(argv)
    return args_from(ns)


def args_from(ns: argparse.Namespace) -> Args:
    if ns.quick and ns.scale not in (None, "quick"):
        raise SystemExit(f"--quick conflicts with --scale {ns.scale}")
    if ns.seeds is not None and ns.seeds < 1:
        raise SystemExit(f"--seeds must be >= 1, got {ns.seeds}")
    scale = "quick" if ns.quick else (ns.scale or "default")
    return Args(scale=scale, seeds=ns.seeds, out=ns.out, float64=ns.float64)


def setup_jax(cache_dir: Path | None = None) -> None:
    """x64 on (float32 stays float32 where asked); with ``cache_dir``, JAX's persistent
    compilation cache there (compiles dominate small runs; reruns then skip them)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    if cache_dir is not None:
        jax.config.update("jax_compilation_cache_dir", str(cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def main(module) -> Outcome:
    """Entry point for ``python -m experiments.<name>``."""
    args = parse_args(module.TITLE)
    setup_jax(Path(args.out) / ".jax_cache")
    t0 = time.perf_counter()
    outcome = module.run(args)
    print(
        f"{outcome.claim or module.NAME}: {outcome.verdict} — {outcome.headline}  "
        f"[{time.perf_counter() - t0:.1f} s, {args.dir(module.NAME)}]"
    )
    return outcome


def run_group(args: Args, group: tuple[tuple[str, str], ...]) -> tuple[dict, dict]:
    """Runs the (claim, name) experiments in order in this process: ({name: Outcome}, {name: error}).
    One broken experiment does not lose the others' work."""
    import importlib
    import traceback

    import jax

    setup_jax(Path(args.out) / ".jax_cache")
    outcomes, failures = {}, {}
    for claim, name in group:
        label = f"{claim or '--'} {name}"
        progress(f"{label}: running ({args.scale})")
        t1 = time.perf_counter()
        try:
            outcomes[name] = o = importlib.import_module(f"experiments.{name}").run(args)
        except Exception as e:
            traceback.print_exc()
            failures[name] = f"{type(e).__name__}: {e}"
            continue
        finally:
            jax.clear_caches()  # each executable holds memory maps; one process runs many (docs/hang.md)
        progress(f"{label}: {o.verdict} — {o.headline} ({time.perf_counter() - t1:.1f} s)")
    return outcomes, failures


# ----------------------------------------------------------------------------- output


def atomic_write(path: Path, data: str | bytes) -> None:
    """Writes via a temp file in the same folder and os.replace: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_jsonable(x: Any) -> Any:
    """Arrays, NamedTuples, dataclasses and numpy scalars -> plain JSON values (NaN as null)."""
    import numpy as np

    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return to_jsonable(dataclasses.asdict(x))
    if isinstance(x, tuple) and hasattr(x, "_asdict"):
        return to_jsonable(x._asdict())
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "shape") or isinstance(x, (np.generic, float)):
        arr = np.asarray(x)
        if arr.dtype.kind in "fc":
            arr = arr.astype(float)
            out = arr.tolist()
            return _nan_to_none(out)
        return arr.tolist()
    return x


def _nan_to_none(v):
    if isinstance(v, list):
        return [_nan_to_none(u) for u in v]
    if isinstance(v, float) and not (v == v and abs(v) != float("inf")):
        return None
    return v


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(to_jsonable(obj), indent=1, allow_nan=False) + "\n")


_ROOT = Path(__file__).resolve().parent.parent


def _hash_files(paths) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(paths):
        h.update(str(Path(f).relative_to(_ROOT)).encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def library_version() -> str:
    """A hash of the gradpaths package sources: any change to the library changes it."""
    return _hash_files((_ROOT / "gradpaths").rglob("*.py"))


def code_version(name: str) -> str:
    """A hash of the code that writes ``name``'s results: its module, the shared experiment
    modules (files starting with "_") and the gradpaths sources."""
    exp = _ROOT / "experiments"
    files = [exp / f"{name}.py", *exp.glob("_*.py"), *(_ROOT / "gradpaths").rglob("*.py")]
    return _hash_files([f for f in files if f.exists()])


def environment() -> dict[str, Any]:
    """Package versions and the device, for results.json."""
    import jax

    versions = {}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "matplotlib", "torch"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    dev = jax.devices()
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "devices": [f"{d.platform}:{getattr(d, 'device_kind', '')}" for d in dev],
        "x64": bool(jax.config.jax_enable_x64),
    }


def save_figure(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    atomic_write(path, buf.getvalue())
    import matplotlib.pyplot as plt

    plt.close(fig)


def write_outputs(
    args: Args,
    name: str,
    *,
    config: Any,
    data: Any,
    outcome: Outcome,
    summary: str,
    figures: dict[str, Any],
    seeds: Any = None,
) -> None:
    """Writes DIR/name/{results.json, *.png, summary.md}, each atomically."""
    d = args.dir(name)
    for fname, fig in figures.items():
        save_figure(fig, d / fname)
    write_json(
        d / "results.json",
        {
            "name": name,
            "claim": outcome.claim,
            "verdict": outcome.verdict,
            "headline": outcome.headline,
            "scale": args.scale,
            "float64": args.float64,
            "code_version": code_version(name),
            "config": config,
            "seeds": seeds,
            "environment": environment(),
            "data": data,
            "reproductions": [r._asdict() for r in outcome.reproductions],
        },
    )
    title = f"{outcome.claim}: {name}" if outcome.claim else name
    head = f"# {title}\n\n**Verdict: {outcome.verdict}** — {outcome.headline}\n\n"
    figs = "".join(f"![{f}]({f})\n" for f in figures)
    atomic_write(d / "summary.md", head + summary.rstrip() + "\n\n" + figs)


def save(args: Args, name: str, outcome: Outcome, summary: str, fig, config, data, seeds=None) -> Outcome:
    """Writes DIR/<name>/ (results.json, summary.md and the figure as ``outcome.figure``); returns outcome."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    write_outputs(args, name, config=config, data=data, outcome=outcome, summary=summary,
                  figures={outcome.figure: fig}, seeds=seeds)  # fmt: skip
    return outcome


def table(header, rows) -> str:
    """A Markdown table: the header cells, a ``|---|`` separator, then one line per row of cells."""
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def cached(path: Path, compute: Callable[[], Any]) -> Any:
    """Resumable sweep point: loads ``path`` if a finished run wrote it, else computes and writes it."""
    path = Path(path)
    if path.exists():
        return json.loads(path.read_text())
    value = to_jsonable(compute())
    write_json(path, value)
    return value


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def combine(verdicts: list[str]) -> str:
    """One claim verdict from its experiments' verdicts.

    All equal -> that verdict; any INCONCLUSIVE -> INCONCLUSIVE; otherwise NUANCED.
    """
    if not verdicts:
        raise ValueError("combine needs at least one verdict")
    bad = [v for v in verdicts if v not in VERDICTS]
    if bad:
        raise ValueError(f"unknown verdict(s) {bad}; expected {VERDICTS}")
    if len(set(verdicts)) == 1:
        return verdicts[0]
    if INCONCLUSIVE in verdicts:
        return INCONCLUSIVE
    return NUANCED


def all_some_none(ok: list[bool]) -> str:
    """SUPPORTED if the criterion holds in every case, NUANCED in some, NOT SUPPORTED in none."""
    return SUPPORTED if all(ok) else (NUANCED if any(ok) else NOT_SUPPORTED)


def band(ax, x, y_SK, color, label) -> None:
    """Median over seeds (line) and the bootstrap 95% interval of the median (shaded) of y [seeds, K]."""
    import numpy as np

    from experiments import _stats as S

    y = np.asarray(y_SK, float)
    est = [S.bootstrap_stat(c[np.isfinite(c)]) if np.isfinite(c).any() else None for c in y.T]
    nan = float("nan")
    med = [e.value if e else nan for e in est]
    ax.plot(x, med, color=color, lw=2, label=label)
    ax.fill_between(x, [e.lo if e else nan for e in est], [e.hi if e else nan for e in est], color=color, alpha=0.2)


def arm_dots(ax, j: int, values, color, interval=None) -> None:
    """Seeds as dots at x = j, the median as a bar, and a 95% interval (default: bootstrap of the median)."""
    import numpy as np

    from experiments import _stats as S

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    ax.plot(np.full(v.size, j) + np.linspace(-0.12, 0.12, v.size), v, "o", color=color, alpha=0.5, ms=4)
    if v.size:
        e = interval or S.bootstrap_stat(v)
        ax.errorbar([j + 0.22], [e.value], [[e.value - e.lo], [e.hi - e.value]], fmt="s", color="k", capsize=4)


def errorbars(ax, x, estimates, **kw) -> None:
    """Estimates (value, lo, hi) as points at x with their intervals as error bars; kw go to ``ax.errorbar``."""
    err = [[e.value - e.lo for e in estimates], [e.hi - e.value for e in estimates]]
    ax.errorbar(x, [e.value for e in estimates], err, **kw)


def fmt(x: float, digits: int = 3) -> str:
    """Compact number formatting for headlines."""
    if x != x:
        return "nan"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 1)}e}"
