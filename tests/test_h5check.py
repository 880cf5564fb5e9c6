"""A dataset's declared size is compared with the architecture before any value is read (issue 12, item 2).

Each fixture is a tiny Dense model (4 -> 5 -> 3) whose kernel dataset 'd' is replaced by a
256 MiB dataset of fill values: a few KB on disk. ``declared_limit`` is raised so the
file-size bound in ``check_structure`` is not what refuses it; a spy on h5py's read
methods shows that the big dataset was never read.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from kfreeze import h5check
from kfreeze.errors import KfreezeError

BIG = (2**13, 2**13)  # 2**26 float32 values: 256 MiB declared, the architecture needs 20 + 5 for layer 'd'


def _tf_keras_model():
    import tf_keras
    inp = tf_keras.Input((4,), name="x")
    out = tf_keras.layers.Dense(3, name="probs")(tf_keras.layers.Dense(5, activation="relu", name="d")(inp))
    return tf_keras.Model(inp, out)


def _keras3_model():
    import keras
    inp = keras.Input((4,), name="x")
    out = keras.layers.Dense(3, name="probs")(keras.layers.Dense(5, activation="relu", name="d")(inp))
    return keras.Model(inp, out)


def _kernel_of(f: h5py.File, layer: str) -> str:
    found = []
    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
    return next(n for n in found if n.split("/")[-1].startswith("kernel") and f"/{layer}/" in f"/{n}")


def _enlarge(path: Path, name: str) -> str:
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, BIG, "float32", chunks=(256, 256), compression="gzip")
    return name


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Good and enlarged copies of each kind of file: {kind: (good, big, big dataset name, arch or None)}."""
    folder = tmp_path_factory.mktemp("h5sizes")
    out = {}
    tfk, k3 = _tf_keras_model(), _keras3_model()
    tfk.save(folder / "tfk.h5")
    k3.save(folder / "k3.h5")
    tfk.save_weights(folder / "tfkw.h5")
    (folder / "tfkw.json").write_text(tfk.to_json())
    k3.save_weights(folder / "k3.weights.h5")
    (folder / "k3.json").write_text(k3.to_json())
    for kind, arch in [("tfk", None), ("k3", None), ("tfkw", "tfkw.json"), ("k3.weights", "k3.json")]:
        good = folder / f"{kind}.h5"
        big = folder / f"big_{kind}.h5"
        big.write_bytes(good.read_bytes())
        with h5py.File(big, "r") as f:
            name = _kernel_of(f, "d") if kind != "k3.weights" else "layers/dense/vars/0"
        _enlarge(big, name)
        if kind == "k3.weights":
            big = big.rename(folder / "big.weights.h5")
        out[kind] = (good, big, name, arch and folder / arch)
    assert all(v[1].stat().st_size < 2**20 for v in out.values())  # small files: the size bound cannot trip
    return out


@pytest.fixture
def spy(monkeypatch):
    """Names of the datasets whose values were read; the file-size bound is lifted."""
    monkeypatch.setattr(h5check, "declared_limit", lambda size: 2**62)
    read: list[str] = []
    for method in ("__getitem__", "read_direct", "__array__"):
        original = getattr(h5py.Dataset, method)

        def wrapped(self, *a, _original=original, **k):
            read.append(self.name)
            return _original(self, *a, **k)
        monkeypatch.setattr(h5py.Dataset, method, wrapped)
    return read


def _load(kind, path, arch):
    if kind in ("tfk", "k3"):
        from kfreeze import keras_io
        return keras_io.load_model(path)
    from kfreeze import legacy
    return legacy.load_source(path, arch)


@pytest.mark.parametrize("kind", ["tfk", "k3", "tfkw", "k3.weights"])
def test_oversized_dataset_is_refused_before_it_is_read(files, spy, kind):
    good, big, name, arch = files[kind]
    with pytest.raises(KfreezeError) as e:
        _load(kind, big, arch)
    assert not [n for n in spy if n.endswith(name)], f"{name} was read: {spy}"
    line = str(e.value)
    assert len(line.splitlines()) == 1
    assert str(big) in line and name.split("/")[-1] in line and str(2**26) in line, line
    assert "does not belong to this architecture" in line


@pytest.mark.parametrize("kind", ["tfk", "k3", "tfkw", "k3.weights"])
def test_the_good_files_still_load(files, spy, kind):
    good, _, _, arch = files[kind]
    model = _load(kind, good, arch)
    assert model.count_params() == 4 * 5 + 5 + 5 * 3 + 3
    assert spy, "the spy sees reads"  # the positive control for the spy itself


def test_legacy_full_model_is_checked_too(files, spy):
    """A tf_keras .h5 goes through kfreeze.legacy (tf_keras builds it, kfreeze sets the weights)."""
    from kfreeze import legacy
    _, big, name, _ = files["tfk"]
    assert legacy.is_legacy(big)
    with pytest.raises(KfreezeError, match="layer 'd'"):
        legacy.load_source(big)
    assert not [n for n in spy if n.endswith(name)]


def test_a_dataset_for_a_layer_the_architecture_lacks_is_refused(files, tmp_path, spy):
    good, _, _, arch = files["tfkw"]
    path = tmp_path / "extra.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        f.create_dataset("ghost/ghost/kernel:0", (4, 5), "float32")
    with pytest.raises(KfreezeError, match="layer 'ghost' which the architecture does not have "
                                           r"\(dataset 'ghost/ghost/kernel:0', 20 values"):
        h5check.check_weights(path, {"d": [(4, 5), (5,)], "probs": [(5, 3), (3,)]})
    assert not spy


def test_junk_outside_the_layers_is_refused(files, tmp_path, spy):
    good, _, _, _ = files["tfk"]
    path = tmp_path / "junk.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        f.create_dataset("junk", (2**20,), "float32", chunks=(2**16,), compression="gzip")
    with pytest.raises(KfreezeError, match="'junk'.*outside every layer's weights"):
        h5check.check_weights(path, {"x": [], "d": [(4, 5), (5,)], "probs": [(5, 3), (3,)]})
    assert not spy


def test_per_layer_allowance_takes_cudnn_and_keras1_layouts(tmp_path, spy):
    """Twice the layer's values passes (cuDNN LSTM biases are twice LSTM's); more does not."""
    path = tmp_path / "w.h5"
    units, dim = 4, 3
    with h5py.File(path, "w") as f:
        g = f.create_group("lstm").create_group("lstm")
        g["kernel"] = np.zeros((dim, 4 * units), "float32")
        g["recurrent_kernel"] = np.zeros((units, 4 * units), "float32")
        g["bias"] = np.zeros((8 * units,), "float32")   # CuDNNLSTM: two biases
    need = {"lstm": [(dim, 4 * units), (units, 4 * units), (4 * units,)]}
    h5check.check_weights(path, need)  # reads the data only in a child: the spy sees nothing here
    with h5py.File(path, "r+") as f:
        f["lstm/lstm/extra"] = np.zeros((3 * (dim + units + 1) * 4 * units,), "float32")
    with pytest.raises(KfreezeError, match=r"'lstm/lstm/extra'.*layer 'lstm' needs 128 values"):
        h5check.check_weights(path, need)
    assert not spy


def test_the_first_child_check_reads_headers_only(files, spy):
    """convert's first h5check pass (before the architecture is known) reads no dataset's values."""
    _, big, _, _ = files["tfk"]
    h5check._read_all(str(big), read_data=False)
    assert not spy


def test_check_weights_message_names_file_layer_and_sizes(files, spy):
    _, big, name, _ = files["tfk"]
    with pytest.raises(KfreezeError) as e:
        h5check.check_weights(big, {"x": [], "d": [(4, 5), (5,)], "probs": [(5, 3), (3,)]})
    line = str(e.value)
    assert "layer 'd' needs 25 values" in line and "re-save it" in line, line
    assert json.dumps(str(big))[1:-1] in line


def test_an_attribute_declaring_more_than_the_file_holds_is_refused(tmp_path):
    """Attribute sizes need no bound of kfreeze's own: libhdf5 keeps an attribute's data in its
    header message and refuses a dataspace larger than the message. A hand-edited attribute
    that declares 2e9 bytes in a small file is refused in the child, as a damaged file."""
    import struct

    path = tmp_path / "attr.h5"
    with h5py.File(path, "w") as f:
        f.create_group("g").attrs["config"] = np.zeros(12345, np.uint8)
    data = path.read_bytes()
    assert data.count(struct.pack("<Q", 12345)) == 2  # the dataspace's size and maximum size
    path.write_bytes(data.replace(struct.pack("<Q", 12345), struct.pack("<Q", 2 * 10**9)))
    assert path.stat().st_size < 2**20
    with pytest.raises(KfreezeError, match=r"attr\.h5: not a readable HDF5 file \(.*ran off end of input buffer"):
        h5check.check(path)


def test_a_small_dataset_in_a_huge_chunk_is_refused_before_it_is_read(files, tmp_path):
    """Reading one element inflates its whole chunk: a 48-byte kernel, resizable, in one gzip chunk
    declared [32768, 16384] (2 GiB) made h5py allocate 2.6 GB (issue 25). The chunk counts as its size.
    Only metadata is written here: the chunk is never allocated."""
    good = files["tfk"][0]
    path = tmp_path / "chunk.h5"
    path.write_bytes(good.read_bytes())
    with h5py.File(path, "r+") as f:
        name = _kernel_of(f, "d")
        del f[name]
        f.create_dataset(name, (4, 5), "float32", maxshape=(None, None), chunks=(2**15, 2**14), compression="gzip")
    assert path.stat().st_size < 2**20
    with pytest.raises(KfreezeError, match=r"chunk\.h5: its datasets declare 20\d\d MiB, far more than"):
        h5check.check_structure(path)
    h5check.check_structure(good)  # contiguous datasets: their size, as before
