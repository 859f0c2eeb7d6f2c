#!/usr/bin/env python3
"""Reads YAML the way kubectl, Helm and Argo CD do (YAML 1.1), for tests/tests/yaml11.rs.

sigs.k8s.io/yaml, which those tools use to turn YAML into JSON, follows YAML 1.1: an unquoted
`on`, `off`, `yes`, `no`, `y`, `n` (and their case variants) is a boolean, `0777` an octal
number, `1_000` a thousand. Buoy reads YAML with serde_yaml (YAML 1.2), so the same text can
mean two things. This prints what the YAML 1.1 reader makes of it, as JSON, for the Rust test to
compare with serde_yaml's reading.

The reader is PyYAML's SafeLoader (YAML 1.1 resolvers), adjusted towards go-yaml v2 (what
sigs.k8s.io/yaml is built on) where the two disagree:
  - `y`, `Y`, `n`, `N` are booleans (YAML 1.1's bool type and go-yaml; PyYAML leaves them out);
  - timestamps (`2024-01-01`) stay strings: go-yaml gives a string when decoding into an
    untyped value, and so does serde_yaml;
  - `=` is a plain string (PyYAML's `!!value` type has no constructor in the safe loader).
Everything else YAML 1.1 reads differently from YAML 1.2 is kept, even where go-yaml happens to
agree with YAML 1.2 (sexagesimal `1:20`, `1e3` without a dot): any YAML 1.1 tool may read it so.

Keys become strings as sigs.k8s.io/yaml makes them (`true`, `false`, `null`, numbers as
written); floats that JSON cannot hold become the strings `.inf`, `-.inf` and `.nan`.

    yaml11.py < REQUEST.json    REQUEST: [{"name": N, "text": YAML}, ...]
        prints [{"name": N, "docs": [{"line": L, "value": V}, ...]} or {"name": N, "error": E}]
    yaml11.py FILE...           prints each file's documents as JSON, one per line
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys

try:
    import yaml
except ImportError as e:  # pragma: no cover - reported to the Rust test
    sys.exit(f"missing Python package 'PyYAML' ({e}); `python3 -m pip install pyyaml`")


class Yaml11Loader(yaml.SafeLoader):
    """SafeLoader with go-yaml v2's booleans and untyped timestamps (see the module doc)."""


# A resolver table of our own: SafeLoader's, less timestamps and `=`.
Yaml11Loader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml11Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN")
)


def construct_bool(loader, node):
    value = loader.construct_scalar(node)
    return value.lower() in ("y", "yes", "true", "on")


Yaml11Loader.add_constructor("tag:yaml.org,2002:bool", construct_bool)
# An explicit `!!timestamp` still gives a string, as go-yaml does for an untyped value.
Yaml11Loader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def key(k) -> str:
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    if isinstance(k, float):
        n = number(k)
        return n if isinstance(n, str) else repr(k)
    if isinstance(k, (int, str)):
        return str(k)
    return json.dumps(to_json(k), separators=(",", ":"))


def number(f: float):
    if math.isnan(f):
        return ".nan"
    if math.isinf(f):
        return ".inf" if f > 0 else "-.inf"
    return f


def to_json(v):
    if isinstance(v, dict):
        return {key(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, float):
        return number(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, (set, frozenset)):
        return {key(k): None for k in v}
    return v


def load(text: str) -> list[dict]:
    """Every document of a stream (empty ones as null), with the line its content starts on."""
    docs = []
    loader = Yaml11Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            value = to_json(loader.construct_document(node))
            docs.append({"line": node.start_mark.line + 1, "value": value})
    finally:
        loader.dispose()
    return docs


def main() -> int:
    if len(sys.argv) > 1:
        for path in sys.argv[1:]:
            with open(path) as f:
                for d in load(f.read()):
                    print(json.dumps(d["value"]))
        return 0
    out = []
    for req in json.load(sys.stdin):
        try:
            out.append({"name": req["name"], "docs": load(req["text"])})
        except yaml.YAMLError as e:
            out.append({"name": req["name"], "error": str(e)})
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
