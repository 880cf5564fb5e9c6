"""Custom Keras classes of keras/src/export's tests, importable by ``--custom-objects``."""

from kfreeze.keras_io import keras


@keras.saving.register_keras_serializable(package="peers")
class SubclassModel(keras.Model):
    """saved_model_test's get_model('subclass'): Dense, BatchNormalization, Dense."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.d1 = keras.layers.Dense(10, activation="relu")
        self.bn = keras.layers.BatchNormalization()
        self.d2 = keras.layers.Dense(1)

    def call(self, x):
        return self.d2(self.bn(self.d1(x)))


@keras.saving.register_keras_serializable(package="peers")
class RandomLayer(keras.layers.Layer):
    """test_model_with_rng_export: noise from a SeedGenerator at inference."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, x):
        return x + keras.random.normal(keras.ops.shape(x), seed=self.seed_generator)


@keras.saving.register_keras_serializable(package="peers")
class StateLayer(keras.layers.Layer):
    """test_model_with_non_trainable_state_export: a counter the call adds to, at inference too."""

    def build(self, input_shape):
        self.counter = self.add_weight(shape=(), initializer="zeros", trainable=False, name="counter")

    def call(self, x):
        self.counter.assign_add(1.0)
        return x * self.counter
