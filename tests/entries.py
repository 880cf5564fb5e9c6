"""params.yaml entries for tests, generated from kfreeze.params.KEYS: a new key needs no edit here."""

from __future__ import annotations

import yaml

from kfreeze.params import KERAS, KEYS, TF1, VERIFY


def _defaults(section: str) -> dict:
    return {k: key.default if not isinstance(key.default, list) else list(key.default)
            for k, key in KEYS[section].items() if not key.required}


def keras_entry(source: str, **keys) -> dict:
    """A 'models:' entry with every key: ``source``, the table's defaults, then ``keys``."""
    return {"source": source, **_defaults(KERAS), **keys}


def graph_entry(graph: str, checkpoint: str | None, **keys) -> dict:
    """A 'graphs:' entry with every key: ``graph``, the table's defaults, ``checkpoint`` (None: a graph
    frozen already, or a SavedModel folder), then ``keys``."""
    return {"graph": graph, **_defaults(TF1), "checkpoint": checkpoint, **keys}


def params_text(models: dict | None = None, graphs: dict | None = None, **verify) -> str:
    """A whole params.yaml: the entries as given and the verify defaults with ``verify`` overrides."""
    params = {KERAS: models or {}, TF1: graphs or {}, VERIFY: {**_defaults(VERIFY), **verify}}
    return yaml.safe_dump(params, sort_keys=False, default_flow_style=None)  # lists as [a, b]
