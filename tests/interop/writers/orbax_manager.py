"""Orbax writer: ocp.CheckpointManager(DIR, max_to_keep=2), StandardSave of a pytree.

A tiny jax linear model trained by plain gradient steps; save(step) every 5 steps
(5, 10, ...). Each save writes DIR/N.orbax-checkpoint-tmp/ (asynchronously) and
renames it to DIR/N (the commit); older steps beyond 2 are deleted.
Waits with wait_until_finished() before printing `SAVED <step> DIR/N`.
"""
import os

import _common

a = _common.args(__doc__)

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

key = jax.random.PRNGKey(0)
params = {"w": jax.random.normal(key, (8, 4)), "b": jnp.zeros(4)}


@jax.jit
def train_step(params, x):
    loss = lambda p: jnp.mean((x @ p["w"] + p["b"]) ** 2)
    return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, jax.grad(loss)(params))


every = 5
mngr = ocp.CheckpointManager(a.dir, options=ocp.CheckpointManagerOptions(max_to_keep=2))
for step in range(1, every * a.saves + 1):
    key, sub = jax.random.split(key)
    params = train_step(params, jax.random.normal(sub, (16, 8)))
    if step % every == 0:
        mngr.save(step, args=ocp.args.StandardSave(params))
        mngr.wait_until_finished()
        _common.saved(step, os.path.join(a.dir, str(step)), a.pace)
mngr.close()
