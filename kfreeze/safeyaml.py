"""YAML from users' files: ``yaml.safe_load`` with alias bombs and duplicate keys refused."""

from __future__ import annotations

import yaml

from kfreeze.errors import KfreezeError

YAML_NODES_MAX = 100_000  # a params file expanded through its aliases; a real one has a few hundred


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                if key in seen:
                    raise KfreezeError(f"{self.name}:{key_node.start_mark.line + 1}", f"duplicate key {short(key)}",
                                       "YAML keeps only the last one; remove or rename the other")
                seen.add(key)
        return super().construct_mapping(node, deep)


def safe_yaml(text: str, path) -> object:
    """``yaml.safe_load`` with aliases bounded and duplicate keys refused.

    Aliases share one Python object, so a billion-laughs file loads small but
    explodes wherever it is walked or printed; its expanded size is counted on
    the node graph first, before anything is built.
    """
    loader = _Loader(text)
    loader.name = str(path)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def expanded(n) -> int:
            if id(n) in sizes:
                return sizes[id(n)]
            sizes[id(n)] = YAML_NODES_MAX + 1  # a recursive alias counts as too big
            children = (n.value if isinstance(n, yaml.SequenceNode) else
                        [c for kv in n.value for c in kv] if isinstance(n, yaml.MappingNode) else [])
            total = 1
            for child in children:
                total += expanded(child)
                if total > YAML_NODES_MAX:
                    break
            sizes[id(n)] = total
            return total

        if expanded(node) > YAML_NODES_MAX:
            raise KfreezeError(path, f"expands to more than {YAML_NODES_MAX} values through its aliases (&anchors "
                               "and *references)", "write the entries out; kfreeze refuses alias bombs")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def short(value, limit: int = 80) -> str:
    """``repr`` for one error line, bounded while it is built: a 10-level alias list shares its
    objects, and a plain repr would expand them all (10^10 items) before anything is cut."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 6, 6, 6, 6
    r.maxstring = r.maxother = r.maxlong = limit
    text = r.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
