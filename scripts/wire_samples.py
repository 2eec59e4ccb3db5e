"""Deterministic sample values for every condense.v1 message, shared by the Swift wrapper
generator (scripts/gen-wire-swift.py, which writes them as Swift test values) and the
cross-language fixture script (scripts/wire-fixtures.py, which builds them with protobuf).

Every field gets a non-default value; each real oneof sets member `variant % member_count`,
so the variants of a message together cover every oneof member. One-field oneofs named
`*_choice` model field presence and are always set.
"""
import os
import sys

from google.protobuf.descriptor import FieldDescriptor as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "Clients", "python", "condense_client", "_proto"))

from condense.v1 import common_pb2, embedding_pb2, finetune_pb2, worker_pb2  # noqa: E402

# Proto files with Swift wrappers, in dependency order, and the Swift file for each.
MODULES = [
    (common_pb2, "CommonMessages.swift"),
    (embedding_pb2, "EmbeddingMessages.swift"),
    (finetune_pb2, "FineTuneMessages.swift"),
    (worker_pb2, "WorkerMessages.swift"),
]


def is_repeated(field):
    """Whether `field` is repeated: protobuf 7 dropped `FieldDescriptor.label` for `is_repeated`."""
    repeated = getattr(field, "is_repeated", None)
    return repeated if repeated is not None else field.label == F.LABEL_REPEATED


def messages():
    """(module, descriptor) for every top-level message, in file order."""
    for module, _ in MODULES:
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            yield module, descriptor


def is_presence_oneof(oneof):
    return oneof.name.endswith("_choice") and len(oneof.fields) == 1


def real_oneofs(descriptor):
    return [o for o in descriptor.oneofs if not is_presence_oneof(o)]


def variant_count(descriptor, seen=()):
    """Variants needed so that every oneof member in this message's tree is set once."""
    count = max([len(o.fields) for o in real_oneofs(descriptor)] + [1])
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.full_name not in seen:
            count = max(count, variant_count(field.message_type, seen + (descriptor.full_name,)))
    return count


def scalar(field, variant, element):
    """Value of one scalar (or enum) field, element = position in a repeated field."""
    n = field.number
    t = field.type
    if t == F.TYPE_STRING:
        return f"{field.name}-{variant}-{element}-é✓"
    if t == F.TYPE_BYTES:
        return bytes([n, variant, element, 0, 255])
    if t == F.TYPE_BOOL:
        return True
    if t == F.TYPE_UINT32:
        return 2**31 + n * 1000 + variant * 10 + element
    if t == F.TYPE_UINT64:
        return 2**40 + n * 1000 + variant * 10 + element
    if t == F.TYPE_INT64:
        return -(2**33 + n * 1000 + variant * 10 + element)
    if t == F.TYPE_FLOAT:
        return n + 0.25 + variant + element * 0.5
    if t == F.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number != 0]
        return values[-1 - (element % len(values))]
    raise ValueError(f"no sample rule for {field.full_name} (type {t})")


def sample(descriptor, variant):
    """[(field, value)] for the fields set in this variant. Message values are nested
    lists of the same form; repeated values are Python lists of two elements."""
    chosen = {o.name: o.fields[variant % len(o.fields)].name for o in real_oneofs(descriptor)}
    result = []
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and not is_presence_oneof(oneof) and chosen[oneof.name] != field.name:
            continue
        if field.type == F.TYPE_MESSAGE:
            make = lambda element: sample(field.message_type, variant)
        else:
            make = lambda element: scalar(field, variant, element)
        if is_repeated(field):
            result.append((field, [make(0), make(1)]))
        else:
            result.append((field, make(0)))
    return result


def build(descriptor, variant, message_class):
    """The sample as a protobuf Python message."""
    message = message_class()
    fill(message, sample(descriptor, variant))
    return message


def fill(message, plan):
    for field, value in plan:
        target = getattr(message, field.name)
        if field.type == F.TYPE_MESSAGE:
            if is_repeated(field):
                for element in value:
                    fill(target.add(), element)
            else:
                target.SetInParent()  # marks presence even if the sample message is empty
                fill(target, value)
        elif is_repeated(field):
            target.extend(value)
        else:
            setattr(message, field.name, value)
