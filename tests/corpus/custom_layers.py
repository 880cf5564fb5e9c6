"""The custom layer of the corpus's transformer_custom_layer row, registered with Keras as a user's own
layer would be; kfreeze imports it with ``--custom-objects tests.corpus.custom_layers:PositionEmbedding``."""

from kfreeze.keras_io import keras


@keras.saving.register_keras_serializable(package="corpus")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per time step (the keras.io transformer examples' pattern)."""

    def __init__(self, length, **kwargs):
        super().__init__(**kwargs)
        self.length = length

    def build(self, input_shape):
        self.positions = self.add_weight(shape=(self.length, input_shape[-1]), initializer="random_normal",
                                         name="positions")

    def call(self, x):
        return x + self.positions[None]

    def get_config(self):
        return {**super().get_config(), "length": self.length}


@keras.saving.register_keras_serializable(package="corpus")
def scaled_swish(x):
    """A user's own activation function (registered, referred to by name in the file)."""
    return 1.5 * x * keras.ops.sigmoid(x)
