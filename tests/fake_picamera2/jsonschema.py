"""Stand-in for ``jsonschema`` (apt ``python3-jsonschema``), which picamera2's IMX500 helper
validates a network's intrinsics with: the part of JSON Schema its schema uses (``type``,
``enum``, ``properties``, ``required``, ``items``, ``minimum``)."""

from __future__ import annotations

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool,
          "integer": int, "number": (int, float)}


class ValidationError(ValueError):
    """The instance does not match the schema."""


def validate(instance, schema: dict, path: str = "$") -> None:
    """Raise :class:`ValidationError` where ``instance`` breaks ``schema``."""
    wanted = schema.get("type")
    if wanted and not isinstance(instance, _TYPES[wanted]) or (
            wanted in ("integer", "number") and isinstance(instance, bool)):
        raise ValidationError(f"{path}: {instance!r} is not of type {wanted!r}")
    if "enum" in schema and instance not in schema["enum"]:
        raise ValidationError(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "minimum" in schema and instance < schema["minimum"]:
        raise ValidationError(f"{path}: {instance!r} is less than {schema['minimum']}")
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                raise ValidationError(f"{path}: {key!r} is a required property")
        properties = schema.get("properties", {})
        for key, value in instance.items():
            if key in properties:
                validate(value, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                raise ValidationError(f"{path}: additional property {key!r}")
    if isinstance(instance, list) and "items" in schema:
        for i, item in enumerate(instance):
            validate(item, schema["items"], f"{path}[{i}]")
