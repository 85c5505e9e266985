"""TF1 writer: tf.compat.v1 MonitoredTrainingSession + CheckpointSaverHook.

Graph mode, one Linear layer, GradientDescent. The hook uses
Saver(sharded=True, max_to_keep=3) and saves every 5 steps; its first save is at
step 0 (session creation), so N saves are steps 0, 5, ..., 5*(N-1). Each save
writes DIR/model.ckpt-N_temp/ -> DIR/model.ckpt-N.{index,data-00000-of-00001},
rewrites DIR/checkpoint (absolute paths; the commit), then DIR/model.ckpt-N.meta.
Also writes DIR/graph.pbtxt and DIR/events.out.tfevents.*.
Prints `SAVED <step> DIR/model.ckpt-N` from the hook's after_save.
"""
import os

import _common

a = _common.args(__doc__)

import tensorflow as tf

v1 = tf.compat.v1
v1.disable_eager_execution()
v1.set_random_seed(0)

every = 5
x = v1.random_normal([16, 8])
w = v1.get_variable("w", [8, 4])
b = v1.get_variable("b", [4], initializer=v1.zeros_initializer())
loss = tf.reduce_mean(tf.square(tf.matmul(x, w) + b))
gstep = v1.train.get_or_create_global_step()
train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=gstep)


class Printer(v1.train.CheckpointSaverListener):
    def after_save(self, session, global_step_value):
        _common.saved(global_step_value, os.path.join(a.dir, f"model.ckpt-{global_step_value}"), a.pace)


saver = v1.train.Saver(sharded=True, max_to_keep=3)
hook = v1.train.CheckpointSaverHook(a.dir, save_steps=every, saver=saver, listeners=[Printer()])
config = v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
with v1.train.MonitoredTrainingSession(
    checkpoint_dir=a.dir,
    hooks=[hook],
    save_checkpoint_secs=None,
    save_checkpoint_steps=None,
    config=config,
) as sess:
    for _ in range(every * (a.saves - 1)):
        sess.run(train_op)
