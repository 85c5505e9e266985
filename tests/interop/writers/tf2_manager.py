"""TF2 tf.train.CheckpointManager writer (max_to_keep=3).

A tiny Keras-free model (two tf.Variables), trained with a plain GradientTape
loop; every 5 steps manager.save(checkpoint_number=step) writes DIR/ckpt-N.index,
DIR/ckpt-N.data-00000-of-00001 and rewrites DIR/checkpoint (the commit).
Keeps the newest 3. Prints `SAVED <step> DIR/ckpt-N` (the prefix) after each save.
"""
import _common

a = _common.args(__doc__)

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.random.set_seed(0)
w = tf.Variable(tf.random.normal([8, 4]), name="w")
b = tf.Variable(tf.zeros([4]), name="b")
step_var = tf.Variable(0, dtype=tf.int64, name="step")
ckpt = tf.train.Checkpoint(w=w, b=b, step=step_var)
manager = tf.train.CheckpointManager(ckpt, a.dir, max_to_keep=3)


@tf.function
def train_step(x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(x @ w + b))
    gw, gb = tape.gradient(loss, [w, b])
    w.assign_sub(0.1 * gw)
    b.assign_sub(0.1 * gb)
    step_var.assign_add(1)


every = 5
for _ in range(every * a.saves):
    train_step(tf.random.normal([16, 8]))
    step = int(step_var.numpy())
    if step % every == 0:
        path = manager.save(checkpoint_number=step)
        _common.saved(step, path, a.pace)
