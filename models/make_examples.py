"""Build the two small example Keras models that ship with kfreeze.

    models/digits/model.keras     20x20x1 digit classifier (OpenCV digits style)
    models/two_heads/model.keras  two inputs (image, features), two outputs

Everything is generated and trained here from fixed seeds, so the models can be
rebuilt offline with identical weights:

    .venv/bin/python models/make_examples.py [--out-dir DIR] [--quick]
"""

import argparse
import time
from pathlib import Path

import cv2
import keras
import numpy as np
import tensorflow as tf
from keras import layers

HERE = Path(__file__).resolve().parent

DIGIT_SIZE = 20
# Render at 2x and downsample: thin strokes and small shifts/rotations survive
# the resize as anti-aliased grey levels instead of vanishing or aliasing.
RENDER_SIZE = 2 * DIGIT_SIZE
FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
)


def configure_determinism():
    """Make reruns produce identical weights.

    Called from main() rather than at import time so that loading this module
    just for render_digits() does not reconfigure an already running TF.
    Thread settings must come before TF executes any op.
    """
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()


def render_digits(n, seed):
    """Render n random digits as white-on-black 20x20 images.

    Returns (x, y): x float32 of shape (n, 20, 20, 1) in [0, 1], y int64 (n,).
    Depends only on numpy and OpenCV, and only on `seed` for randomness.
    """
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 10, size=n)
    x = np.empty((n, DIGIT_SIZE, DIGIT_SIZE, 1), np.float32)
    centre = (RENDER_SIZE / 2, RENDER_SIZE / 2)
    for i, digit in enumerate(y):
        font = FONTS[rng.randint(len(FONTS))]
        if rng.rand() < 0.2:
            font |= cv2.FONT_ITALIC
        thickness = rng.randint(1, 4)
        # Fonts differ in nominal size, so pick a glyph height and derive the
        # scale from it; this keeps every digit filling most of the canvas.
        (_, base_h), _ = cv2.getTextSize(str(digit), font, 1.0, thickness)
        scale = rng.uniform(0.55, 0.8) * RENDER_SIZE / base_h
        (w, h), _ = cv2.getTextSize(str(digit), font, scale, thickness)
        org = (int(round((RENDER_SIZE - w) / 2 + rng.uniform(-3, 3))),
               int(round((RENDER_SIZE + h) / 2 + rng.uniform(-3, 3))))
        canvas = np.zeros((RENDER_SIZE, RENDER_SIZE), np.uint8)
        cv2.putText(canvas, str(digit), org, font, scale, 255, thickness, cv2.LINE_AA)
        rot = cv2.getRotationMatrix2D(centre, rng.uniform(-12, 12), 1.0)
        canvas = cv2.warpAffine(canvas, rot, (RENDER_SIZE, RENDER_SIZE))
        small = cv2.resize(canvas, (DIGIT_SIZE, DIGIT_SIZE), interpolation=cv2.INTER_AREA)
        noisy = small / 255.0 + rng.normal(0.0, rng.uniform(0.0, 0.08), small.shape)
        x[i, :, :, 0] = np.clip(noisy, 0.0, 1.0)
    return x, y.astype(np.int64)


def conv_block(x, filters, idx):
    x = layers.Conv2D(filters, 3, padding="same", name=f"conv{idx}")(x)
    x = layers.BatchNormalization(name=f"bn{idx}")(x)
    x = layers.ReLU(name=f"relu{idx}")(x)
    return layers.MaxPooling2D(name=f"pool{idx}")(x)


def build_digits():
    image = keras.Input((DIGIT_SIZE, DIGIT_SIZE, 1), name="image")
    x = conv_block(image, 16, 1)
    x = conv_block(x, 32, 2)
    x = layers.Dropout(0.25, name="dropout")(x)
    x = layers.Flatten(name="flatten")(x)
    probs = layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(image, probs, name="digits")


def synth_two_heads(n, seed):
    """Synthetic task for the two-headed model.

    Each 16x16x3 image holds one gaussian blob per colour channel at random
    positions; class = channel whose blob is brightest. score = a fixed linear
    function of the 8 features plus the image mean, so both inputs matter.
    """
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float32)
    centres = rng.uniform(3, 13, size=(n, 3, 2)).astype(np.float32)
    # Three distinct brightness levels, shuffled over channels, so the
    # brightest channel is always unambiguous.
    levels = np.stack([rng.permutation([0.35, 0.6, 0.95]) for _ in range(n)])
    levels = (levels * rng.uniform(0.8, 1.0, size=(n, 1))).astype(np.float32)
    dist2 = ((yy[None, None] - centres[..., 0, None, None]) ** 2
             + (xx[None, None] - centres[..., 1, None, None]) ** 2)
    blobs = levels[..., None, None] * np.exp(-dist2 / (2 * 2.0 ** 2))
    images = np.transpose(blobs, (0, 2, 3, 1))
    images += rng.normal(0.0, 0.03, images.shape)
    images = np.clip(images, 0.0, 1.0).astype(np.float32)
    features = rng.normal(size=(n, 8)).astype(np.float32)
    weights = np.linspace(-1.0, 1.0, 8, dtype=np.float32)
    score = features @ weights + 4.0 * images.mean(axis=(1, 2, 3))
    return (images, features), (levels.argmax(axis=1), score.astype(np.float32)[:, None])


def build_two_heads():
    image = keras.Input((16, 16, 3), name="image")
    features = keras.Input((8,), name="features")
    x = layers.Conv2D(16, 3, padding="same", name="conv1")(image)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    f = layers.Dense(16, activation="relu", name="feat_dense")(features)
    h = layers.Concatenate(name="concat")([x, f])
    class_probs = layers.Dense(3, activation="softmax", name="class_probs")(h)
    score = layers.Dense(1, name="score")(h)
    return keras.Model([image, features], [class_probs, score], name="two_heads")


def write_readme(path, lines):
    path.write_text("\n".join(lines) + "\n")


def make_digits(out_dir, quick):
    n_train, n_test, epochs = (2000, 500, 1) if quick else (12000, 2000, 6)
    x_train, y_train = render_digits(n_train, seed=1)
    # A different seed gives different fonts/scales/noise: a real held-out set.
    x_test, y_test = render_digits(n_test, seed=2)

    model = build_digits()
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=2)
    _, acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"digits: held-out accuracy {acc:.4f} on {n_test} images")

    out = out_dir / "digits"
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    write_readme(out / "README.md", [
        "# digits example model",
        "",
        "Generated by `models/make_examples.py` (seeded, deterministic; no downloads).",
        "",
        f"- Data: {n_train} training digits rendered with OpenCV `cv2.putText` "
        "(random Hershey font, optional italic, scale, thickness, shift, rotation "
        "and gaussian noise), drawn at 40x40 and resized to 20x20; white on black, "
        f"float32 in [0, 1]. Held-out set: {n_test} digits from a different seed.",
        "- Input `image` (20, 20, 1); output `probs` (10-way softmax).",
        "- Layers: conv1 (Conv2D 16 3x3 same) - bn1 - relu1 - pool1 - "
        "conv2 (Conv2D 32 3x3 same) - bn2 - relu2 - pool2 - dropout - flatten - probs (Dense 10).",
        f"- Parameters: {model.count_params()}",
        f"- Training: Adam 2e-3, batch 64, {epochs} epochs.",
        f"- Held-out accuracy: {acc:.4f}",
        "",
        f"Regenerate: `.venv/bin/python models/make_examples.py{' --quick' if quick else ''}`",
    ])


def make_two_heads(out_dir, quick):
    n_train, n_test, epochs = (500, 200, 1) if quick else (4000, 1000, 8)
    x_train, y_train = synth_two_heads(n_train, seed=3)
    x_test, y_test = synth_two_heads(n_test, seed=4)

    model = build_two_heads()
    model.compile(optimizer=keras.optimizers.Adam(5e-3),
                  loss={"class_probs": "sparse_categorical_crossentropy", "score": "mse"},
                  metrics={"class_probs": ["accuracy"], "score": ["mae"]})
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, verbose=2)
    results = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    acc, mae = results["class_probs_accuracy"], results["score_mae"]
    print(f"two_heads: held-out class accuracy {acc:.4f}, score MAE {mae:.4f}")

    out = out_dir / "two_heads"
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    write_readme(out / "README.md", [
        "# two_heads example model",
        "",
        "Generated by `models/make_examples.py` (seeded, deterministic; no downloads).",
        "Exists to exercise multi-input / multi-output freezing.",
        "",
        "- Inputs: `image` (16, 16, 3) and `features` (8,).",
        "- Outputs: `class_probs` (3-way softmax) and `score` (Dense(1), linear).",
        "- Layers: conv1 (Conv2D 16 3x3 same) - bn1 - relu1 - gap (GlobalAveragePooling2D); "
        "feat_dense (Dense 16 relu) on `features`; concat; heads class_probs and score.",
        f"- Parameters: {model.count_params()}",
        "- Task: one gaussian blob per colour channel; class = brightest channel; "
        "score = fixed linear function of `features` + 4 * image mean.",
        f"- Training: {n_train} samples, Adam 5e-3, batch 64, {epochs} epochs.",
        f"- Held-out ({n_test} samples, different seed): class accuracy {acc:.4f}, "
        f"score MAE {mae:.4f}",
        "",
        f"Regenerate: `.venv/bin/python models/make_examples.py{' --quick' if quick else ''}`",
    ])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=HERE,
                        help="where digits/ and two_heads/ are written (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="few samples and one epoch; for tests, not for the committed models")
    args = parser.parse_args()
    configure_determinism()

    start = time.time()
    make_digits(args.out_dir, args.quick)
    make_two_heads(args.out_dir, args.quick)
    print(f"done in {time.time() - start:.1f}s")


if __name__ == "__main__":
    main()
