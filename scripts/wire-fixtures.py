#!/usr/bin/env python3
"""Cross-language checks of the Swift wrappers against Python's protobuf (PyPI `protobuf`).

  scripts/wire-fixtures.py generate    writes Tests/CondenseWireTests/Fixtures/<message>.<variant>.bin,
                                       every sample of scripts/wire_samples.py encoded by Python
  scripts/wire-fixtures.py check DIR   decodes every <message>.<variant>.bin in DIR (written by the
                                       Swift tests) with Python and compares it with the same sample

The Swift tests decode the committed fixtures, and run `check` on their own encodings.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire_samples  # noqa: E402

FIXTURES = os.path.join(wire_samples.ROOT, "Tests", "CondenseWireTests", "Fixtures")


def samples():
    """{file name: expected Python message} for every message and variant."""
    result = {}
    for module, descriptor in wire_samples.messages():
        message_class = getattr(module, descriptor.name)
        for variant in range(wire_samples.variant_count(descriptor)):
            result[f"{descriptor.full_name}.{variant}.bin"] = wire_samples.build(descriptor, variant, message_class)
    return result


def generate():
    os.makedirs(FIXTURES, exist_ok=True)
    expected = samples()
    for old in os.listdir(FIXTURES):
        if old.endswith(".bin") and old not in expected:
            os.remove(os.path.join(FIXTURES, old))
    for name, message in expected.items():
        with open(os.path.join(FIXTURES, name), "wb") as out:
            out.write(message.SerializeToString(deterministic=True))
    print(f"wrote {len(expected)} fixtures to {os.path.relpath(FIXTURES, wire_samples.ROOT)}")


def check(directory):
    expected = samples()
    failures = []
    checked = 0
    for name, message in expected.items():
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            failures.append(f"{name}: missing")
            continue
        with open(path, "rb") as data:
            decoded = type(message).FromString(data.read())
        checked += 1
        if decoded != message:
            failures.append(f"{name}: decoded\n{decoded}\nexpected\n{message}")
    for failure in failures:
        print("MISMATCH", failure)
    print(f"python decoded {checked} Swift-encoded messages, {len(failures)} mismatches")
    return 1 if failures else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["generate"]:
        generate()
    elif len(sys.argv) == 3 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2]))
    else:
        sys.exit(__doc__)
