"""Load Keras models safely and save them byte-for-byte reproducibly."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

from kfreeze import atomic
from kfreeze.errors import KfreezeError
from kfreeze.graphio import check_file
from kfreeze.tfenv import tf  # noqa: F401  (configures TF before Keras)

import keras  # noqa: E402

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def load_model(path: str | Path) -> keras.Model:
    """Load a ``.keras`` or full-model ``.h5`` with Keras safe mode on (no Lambda bytecode)."""
    path = check_file(path, "model file")
    suffix = path.suffix.lower()
    if suffix not in KERAS_SUFFIXES:
        raise KfreezeError(path, f"'{suffix}' is not a Keras model file",
                           "give a .keras or full-model .h5 file as 'source'")
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise KfreezeError(path, "not a .keras archive (not a zip file)", "re-save the model with model.save()")
    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many types; all mean "cannot load this file"
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise KfreezeError(path, f"Keras cannot load this model ({reason})",
                           "check that it is a complete Keras model file") from None
    if not isinstance(model, keras.Model) or not model.inputs or not model.outputs:
        raise KfreezeError(path, "model has no defined inputs or outputs (a subclassed model?)",
                           "save a Functional or Sequential model with known input shapes")
    return model


def canonical_bytes(model: keras.Model) -> bytes:
    """A ``.keras`` archive whose bytes depend only on the model.

    Keras stamps ``metadata.json`` with the save date and the weights entry with
    the current time; both are reset here so an unchanged model gives unchanged
    bytes and DVC skips everything downstream.
    """
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "model.keras")
        raw = (Path(tmp) / "model.keras").read_bytes()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in sorted(src.namelist()):
            data = src.read(name)
            if name == "metadata.json":
                meta = json.loads(data)
                meta.pop("date_saved", None)
                data = json.dumps(meta, sort_keys=True).encode()
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            dst.writestr(info, data)
    return out.getvalue()


def save_canonical(model: keras.Model, path: str | Path) -> None:
    atomic.write_bytes(path, canonical_bytes(model))
