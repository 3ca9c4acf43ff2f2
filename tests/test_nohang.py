"""No deadlock under ``jit(vmap(init + decompose))`` over seeds, for every registered cell.

Batched LAPACK QR under vmap could hang XLA:CPU forever (docs/hang.md), so each hidden
size runs in a subprocess under a timeout: a hang fails with the case that hung, it does
not stall the test run. Compiles dominate; T, I and B are tiny.
"""

import os
import queue
import subprocess
import sys
import threading

import pytest

from gradpaths.cells import REGISTRY

SEEDS = {32: 6, 64: 8, 128: 16}  # the hangs: gru H=64 × 8, lstm and gru H=128 × 16
CALLS = 3  # the hang was intermittent per call: run each compiled function a few times
CASE_TIMEOUT_S = 240  # per cell (compile + calls); a loaded 2-core machine needs under 60
# Cheaper LLVM codegen halves the compiles that dominate this file; the deadlock was in the
# runtime (LAPACK's batch split over the intra-op pool), which these flags do not touch.
FAST_COMPILE = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
)

SCRIPT = """
import sys, time, traceback
import jax, jax.numpy as jnp
import gradpaths as gp
from gradpaths.cells import REGISTRY

H, S, CALLS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
T, I, B = 5, 3, 2
xs = jax.random.normal(jax.random.PRNGKey(1), (B, T, I))
for name in sys.argv[4:]:
    print("start", name, flush=True)
    try:
        cell = REGISTRY[name](H)

        def one(key, cell=cell):
            params = cell.init(key, I, jnp.float32)
            d = gp.decompose(cell, params, xs, lambda hs: jnp.mean(hs**2), max_hops=2, parts=("hops",))
            return sum(jnp.sum(g) for g in jax.tree.leaves(d.by_hops))

        f = jax.jit(jax.vmap(one))
        t0 = time.perf_counter()
        for i in range(CALLS):
            out = f(jax.random.split(jax.random.PRNGKey(i), S)).block_until_ready()
            assert out.shape == (S,) and bool(jnp.isfinite(out).all()), out
        print("ok", name, f"{time.perf_counter() - t0:.1f}s", flush=True)
    except Exception:
        print("error", name, traceback.format_exc(limit=3).replace(chr(10), " | "), flush=True)
"""


def _run(cmd: list[str], env: dict) -> tuple[list[str], str | None]:
    """The subprocess's stdout lines, and the cell it was stuck in if a case made no
    progress for CASE_TIMEOUT_S (then the subprocess is killed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout] + [lines.put(None)], daemon=True).start()
    out, current = [], None
    while True:
        try:
            line = lines.get(timeout=CASE_TIMEOUT_S)
        except queue.Empty:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            return out, current or "(before the first cell: import or backend start)"
        if line is None:
            proc.wait()
            proc.stdout.close()  # the reader thread has finished with it; an open pipe warns
            return out, None
        out.append(line.rstrip())
        if line.startswith("start "):
            current = line.split()[1]


@pytest.mark.parametrize("hidden", sorted(SEEDS))
def test_jit_vmap_init_decompose_does_not_hang(hidden):
    names = sorted(REGISTRY)
    assert names, "no registered cells"
    env = dict(os.environ, XLA_FLAGS=f"{FAST_COMPILE} {os.environ.get('XLA_FLAGS', '')}".strip())
    cmd = [sys.executable, "-c", SCRIPT, str(hidden), str(SEEDS[hidden]), str(CALLS), *names]
    out, hung = _run(cmd, env)
    log = "\n".join(out)
    assert hung is None, (
        f"jit(vmap(init + decompose)) over {SEEDS[hidden]} seeds made no progress for {CASE_TIMEOUT_S} s: "
        f"hung in cell {hung!r} at H={hidden} (a deadlock; see docs/hang.md).\n{log}"
    )
    errors = [line for line in out if line.startswith("error ")]
    assert not errors, f"H={hidden}: cells failed (not a hang):\n" + "\n".join(errors)
    assert [line.split()[1] for line in out if line.startswith("ok ")] == names, log
