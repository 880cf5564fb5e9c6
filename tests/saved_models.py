"""SavedModel folders as users bring them (TF2, built in the test process: no v1 behaviour)."""


def save_two_signatures(folder, reads=False):
    """A tf.Module SavedModel with two signatures (serving_default -> y, doubled -> z); with ``reads``,
    serving_default's function reads a file (the op policy refuses it)."""
    from kfreeze.tfenv import tf

    class M(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]])

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def plain(self, x):
            return {"y": tf.matmul(x, self.w)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def doubled(self, x):
            return {"z": 2.0 * tf.matmul(x, self.w)}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def reading(self, x):
            n = tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32)
            return {"y": tf.matmul(x, self.w) + n}

    m = M()
    signatures = {"serving_default": m.reading if reads else m.plain, "doubled": m.doubled}
    tf.saved_model.save(m, str(folder), signatures=signatures)
    return folder
