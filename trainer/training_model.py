"""What model.fit trains: the network, with the augmentation inside its training step.

The warp of augmented batches (trainer/data.py `augment`) is most of the input pipeline's
work. Inside the step it runs where the replica runs, on the GPU when there is one, so
the host's input pipeline only reads and parses, and sends uint8 images. On a CPU-only
machine the work stays on the CPU, now inside the step.

TensorFlow-only (train_step runs under tf.distribute); the network itself stays plain Keras.
"""
import keras

from trainer import data


class TrainingModel(keras.Model):
  """`network` (built), called as it is; trains on make_dataset's batches, augmented or not."""

  def __init__(self, network: keras.Model):
    super().__init__(name=f"training_{network.name}")
    self.network = network

  def call(self, inputs, training=False):
    # Keras builds its loss by calling the model once on a symbolic first batch, which for an
    # augmented dataset also holds the maps: the network takes only its own inputs.
    return self.network({key: inputs[key] for key in self.network.input}, training=training)

  def train_step(self, batch):
    inputs, ab = batch
    if data.MAPS_KEY in inputs:
      inputs, ab = data.augment(inputs, ab)
    return super().train_step((inputs, ab))
