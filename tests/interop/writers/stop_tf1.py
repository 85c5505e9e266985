"""TF1 MonitoredTrainingSession (saves every 5 steps) with ckptwatch's StopHook.

Trains until the hook stops it (at most 400 steps), each step --pace seconds.
Records the request's step, the step the hook stopped at, and the last
checkpoint's step after the session closed (CheckpointSaverHook.end saves it).
"""
import time

import _common

a = _common.args(__doc__, lambda p: p.add_argument("--sync", action="store_true"))

import tensorflow as tf

from ckptwatch.integrations.tf1 import StopHook
from stop_record import record

v1 = tf.compat.v1
v1.disable_eager_execution()
v1.set_random_seed(0)
x = v1.random_normal([16, 8])
w = v1.get_variable("w", [8, 4])
loss = tf.reduce_mean(tf.square(tf.matmul(x, w)))
gstep = v1.train.get_or_create_global_step()
train_op = v1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=gstep)
hook = StopHook(a.dir, sync=a.sync, timeout=120)
config = v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
with v1.train.MonitoredTrainingSession(checkpoint_dir=a.dir, hooks=[hook], save_checkpoint_steps=5,
                                       save_checkpoint_secs=None, save_summaries_steps=None,
                                       save_summaries_secs=None, log_step_count_steps=None, config=config) as sess:
    for _ in range(400):
        if sess.should_stop():
            break
        sess.run(train_op)
        time.sleep(a.pace)
latest = tf.train.latest_checkpoint(a.dir)
record(asked=hook.stopped and hook.stopped[0], stopped=hook.stopped and hook.stopped[1],
       final=int(latest.rsplit("-", 1)[1]) if latest else None, checkpoint=latest)
