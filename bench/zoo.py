"""The benchmark's models: keras.applications with trained-looking statistics, emitting logits.

``weights=None`` leaves every BatchNormalization at mean 0 / variance 1 / gamma 1 / beta 0,
and the glorot-initialized convs shrink the signal layer by layer: the logits of such a model
are about 1e-17 and barely depend on the input, so any parity figure on them is vacuous.
Here every BatchNormalization gets the statistics a trained model would have on image-like
inputs: random gamma and beta, then the batch statistics of one seeded calibration batch as
moving mean and variance (a single training-mode pass with momentum 0, after gamma and beta, so
every layer's statistics match what it sees at inference). Activations stay O(1) down the
network and the logits depend on the input. (The other order, statistics first, lets EfficientNetB0's
logits grow to 4e4 and every runtime differ from Keras by 10-70%: an ill-conditioned model.) Nothing is downloaded; the same seed gives the same model.
"""

from __future__ import annotations

# name -> input size (each model's own default)
MODELS = {
    "MobileNetV2": 224,
    "ResNet50": 224,
    "EfficientNetB0": 224,
    "DenseNet121": 224,
    "InceptionV3": 299,
    "VGG16": 224,
    "Xception": 299,
}
CALIBRATION_BATCH = 4


def build(name: str, size: int, seed: int):
    """``keras.applications.<name>`` at ``size``x``size``, logits out (``classifier_activation=None``),
    with trained-looking BatchNormalization statistics (see the module docstring)."""
    import numpy as np

    from kfreeze import keras_io

    keras = keras_io.keras
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    bns = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
           if isinstance(layer, keras.layers.BatchNormalization)]
    rng = np.random.default_rng(seed)
    for bn in bns:  # first gamma and beta, so that the statistics below see their effect downstream
        if bn.gamma is not None:
            bn.gamma.assign(rng.uniform(0.5, 1.5, bn.gamma.shape).astype(np.float32))
        if bn.beta is not None:
            bn.beta.assign(rng.normal(0.0, 0.1, bn.beta.shape).astype(np.float32))
    if bns:
        calib = rng.random((CALIBRATION_BATCH, size, size, 3), dtype=np.float32)
        saved = [bn.momentum for bn in bns]
        for bn in bns:
            bn.momentum = 0.0  # moving statistics := this batch's statistics
        model(calib, training=True)
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
    return model


def relative_error(got, reference) -> float:
    """max |got - reference| / max |reference|: the parity measure on logits."""
    import numpy as np

    got = np.asarray(got, np.float64).reshape(np.shape(reference))
    ref = np.asarray(reference, np.float64)
    scale = float(np.max(np.abs(ref)))
    return float(np.max(np.abs(got - ref))) / scale if scale > 0 else float("inf")
