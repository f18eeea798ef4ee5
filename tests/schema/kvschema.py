"""A validator for the OpenAPI (swagger 2.0) subset KubeVirt's schema uses, strict
as a structural CRD schema is: every field must be declared (an unknown field is
an error, as kube-apiserver's fieldValidation=Strict makes it), types must match,
required fields must be there, enums and integer formats are checked.

    from kvschema import Schema
    errors = Schema().validate(doc, "v1.VirtualMachineInstance")

Only the Python standard library: the tests' API server imports it too.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "kubevirt-v1.9.0.json")

INT_RANGES = {"int32": (-2**31, 2**31 - 1), "int64": (-2**63, 2**63 - 1)}


class Schema:
    def __init__(self, path=DEFAULT):
        with open(path) as f:
            doc = json.load(f)
        self.source = doc["_source"]
        self.defs = doc["definitions"]

    def validate(self, value, root):
        """Returns the list of problems, each "PATH: what is wrong"; [] when valid."""
        errors = []
        self._check(value, {"$ref": "#/definitions/" + root}, "", errors)
        return errors

    def _check(self, v, s, path, errors):
        while "$ref" in s:
            s = self.defs[s["$ref"].rsplit("/", 1)[1]]
        where = path or "."
        types = s.get("type")
        if types is None and ("properties" in s or "additionalProperties" in s):
            types = "object"
        if types is not None:
            types = types if isinstance(types, list) else [types]
            if not any(_is(v, t) for t in types):
                errors.append(f"{where}: {_name(v)} where {' or '.join(types)} is expected")
                return
        if "enum" in s and v not in s["enum"]:
            errors.append(f"{where}: {v!r} is not one of {s['enum']}")
        fmt = s.get("format")
        if isinstance(v, int) and not isinstance(v, bool) and fmt in INT_RANGES:
            lo, hi = INT_RANGES[fmt]
            if not lo <= v <= hi:
                errors.append(f"{where}: {v} does not fit {fmt}")
        if isinstance(v, dict):
            props = s.get("properties")
            extra = s.get("additionalProperties")
            for name in s.get("required", []):
                if name not in v:
                    errors.append(f"{where}: the required field {name!r} is missing")
            for k, item in v.items():
                if props is not None and k in props:
                    self._check(item, props[k], f"{path}.{k}", errors)
                elif isinstance(extra, dict):
                    self._check(item, extra, f"{path}.{k}", errors)
                elif props is not None or extra is False:
                    errors.append(f"{where}: unknown field {k!r}")
        elif isinstance(v, list) and "items" in s:
            for i, item in enumerate(v):
                self._check(item, s["items"], f"{path}[{i}]", errors)


def _is(v, t):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return False


def _name(v):
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number"}.get(type(v), "null")
