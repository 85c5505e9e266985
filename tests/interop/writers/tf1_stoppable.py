"""TF1 training that ckptwatch can stop: MonitoredTrainingSession + CheckpointSaverHook + a stop hook.

As tf1_saver.py (graph mode, one Linear layer, a save every 5 steps, the first
at step 0), with up to --saves saves, and one more hook: before each step it
asks ``ckptwatch.stop_requested()`` (the stop file ckptwatch writes when a
listener asks) and, when asked, ``request_stop()``, as a training job that
wants to be stopped from outside would. Prints `SAVED <step> DIR/model.ckpt-N`
per save and `STOPPED <step>` when the stop file ended it.
"""
import os

import _common

a = _common.args(__doc__)

import tensorflow as tf

from ckptwatch import stop_requested

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


class StopWhenAsked(v1.train.SessionRunHook):
    def before_run(self, run_context):
        if stop_requested():
            step = run_context.session.run(gstep)
            _common._out.write(f"STOPPED {step}\n")
            _common._out.flush()
            run_context.request_stop()


saver = v1.train.Saver(sharded=True, max_to_keep=3)
hook = v1.train.CheckpointSaverHook(a.dir, save_steps=every, saver=saver, listeners=[Printer()])
config = v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
with v1.train.MonitoredTrainingSession(
    checkpoint_dir=a.dir,
    hooks=[hook, StopWhenAsked()],
    save_checkpoint_secs=None,
    save_checkpoint_steps=None,
    config=config,
) as sess:
    while not sess.should_stop() and sess.run(gstep) < every * (a.saves - 1):
        sess.run(train_op)
