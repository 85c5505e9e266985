"""Keras 3 fit (8 batches an epoch, --pace seconds a batch) with ModelCheckpoint("epoch-{epoch:03d}.weights.h5")
and ckptwatch's StopOnRequest listed after it. Records the request's step (an epoch), where fit stopped
(epoch, batch) and the epochs saved."""
import os
import time

import _common

a = _common.args(__doc__, lambda p: p.add_argument("--sync", action="store_true"))

import keras
import numpy as np

from ckptwatch.integrations.keras import StopOnRequest
from stop_record import record


class Pace(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        time.sleep(a.pace)


keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
model.compile(optimizer="sgd", loss="mse")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(128, 8)).astype("float32"), rng.normal(size=(128, 4)).astype("float32")
checkpoint = keras.callbacks.ModelCheckpoint(os.path.join(a.dir, "epoch-{epoch:03d}.weights.h5"),
                                             save_weights_only=True)
stop = StopOnRequest(a.dir, sync=a.sync, timeout=120)
history = model.fit(x, y, batch_size=16, epochs=40, verbose=0, callbacks=[Pace(), checkpoint, stop])
saved = sorted(int(n[6:9]) for n in os.listdir(a.dir) if n.startswith("epoch-"))
record(asked=stop.stopped and stop.stopped[0], stopped=stop.stopped and stop.stopped[1][0],
       batch=stop.stopped and stop.stopped[1][1], final=len(history.history["loss"]), saved=saved)
