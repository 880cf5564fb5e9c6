"""SavedModel folders as users bring them (TF2, built in the test process: no v1 behaviour; the TF1
builder's folder in a graph of its own)."""


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


def save_tf1_examples(folder, tags=("serve",)):
    """A TF1 SavedModel (``tf.compat.v1.saved_model.Builder``, text): serialized tf.Example in ('examples',
    node 'input_node'), parsed (ParseExampleV2, which the op policy does not know), times a variable
    holding 1.0 ('output_node', key 'scores')."""
    from kfreeze.tfenv import tf

    with tf.Graph().as_default():
        examples = tf.compat.v1.placeholder(tf.string, name="input_node")
        feature = tf.compat.v1.io.parse_example(
            examples, {"feature": tf.io.FixedLenFeature(shape=[], dtype=tf.float32)})["feature"]
        v = tf.compat.v1.Variable(1.0, name="variable_node", use_resource=False)
        scores = tf.math.multiply(v, feature, name="output_node")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sig = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
                {"examples": examples}, {"scores": scores})
            builder = tf.compat.v1.saved_model.Builder(str(folder))
            builder.add_meta_graph_and_variables(sess, list(tags), signature_def_map={"serving_default": sig})
            builder.save(as_text=True)
    return folder
