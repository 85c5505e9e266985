"""Keras 3 writer: ModelCheckpoint("epoch-{epoch:03d}.weights.h5", save_weights_only=True).

Trains loaders.keras_model() (8 -> 4 Dense, or 8 -> U -> U -> 4 with
$INTEROP_KERAS_UNITS=U; TensorFlow backend unless KERAS_BACKEND says otherwise)
for N epochs of 2 batches; Keras writes DIR/epoch-001.weights.h5, epoch-002...,
in place (HDF5, no temp name).
The step is the 1-based epoch. No rotation.
Prints `SAVED <epoch> <file>` from a callback that runs after ModelCheckpoint.
"""
import os

import _common

a = _common.args(__doc__)

import keras
import numpy as np

from loaders import keras_model


class Printer(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        _common.saved(epoch + 1, os.path.join(a.dir, f"epoch-{epoch + 1:03d}.weights.h5"), a.pace)


keras.utils.set_random_seed(0)
model = keras_model()
model.compile(optimizer="sgd", loss="mse")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(32, 8)).astype("float32"), rng.normal(size=(32, 4)).astype("float32")
ckpt = keras.callbacks.ModelCheckpoint(os.path.join(a.dir, "epoch-{epoch:03d}.weights.h5"), save_weights_only=True)
model.fit(x, y, batch_size=16, epochs=a.saves, verbose=0, callbacks=[ckpt, Printer()])
