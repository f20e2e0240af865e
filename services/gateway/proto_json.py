"""Messages rendered as the plugin's JSON: json_name keys, every field present, and 64-bit
integers as JSON numbers (protobuf's JSON mapping writes them as strings; the webapp wants numbers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.common.errors import InvalidInput

if TYPE_CHECKING:
    # A message's DESCRIPTOR is either implementation's (pure Python or upb), as its stub says.
    from google._upb._message import Descriptor as UpbDescriptor

M = TypeVar("M", bound=Message)

# Ranges of protobuf's integer fields, for values a route maps onto a field by hand.
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_INT64 = {
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED64,
}


def _numbers(value: dict[str, Any], descriptor: Descriptor | UpbDescriptor, proto_names: bool) -> dict[str, Any]:
    for field in descriptor.fields:
        key = field.name if proto_names else field.json_name
        if key not in value:
            continue
        item = value[key]
        if field.type in _INT64:
            value[key] = [int(v) for v in item] if isinstance(item, list) else int(item)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            if isinstance(item, list):
                value[key] = [_numbers(v, field.message_type, proto_names) for v in item]
            elif isinstance(item, dict) and field.message_type.full_name != "google.protobuf.Struct":
                value[key] = _numbers(item, field.message_type, proto_names)
    return value


def to_json(message: Message, *, proto_names: bool = False) -> dict[str, Any]:
    """The plugin's JSON shape of ``message``; ``proto_names`` keeps the proto's snake_case field
    names, for the plugin's payloads that use them (``JobStatus``, search results)."""
    raw = json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        use_integers_for_enums=True,
        preserving_proto_field_name=proto_names,
    )
    return _numbers(raw, message.DESCRIPTOR, proto_names)


def from_json(payload: Any, message: M, what: str) -> M:
    """Parse a request body into ``message``; InvalidInput naming the problem for a bad shape."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    try:
        json_format.ParseDict(payload, message, ignore_unknown_fields=True)
    except json_format.ParseError as err:
        raise InvalidInput(f"invalid {what}: {err}") from None
    return message
