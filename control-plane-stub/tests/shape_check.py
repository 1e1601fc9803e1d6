#!/usr/bin/env python3
"""Checks the ECS responses of a golden transcript against botocore's ECS model.

Every member of every structure must be one botocore defines for that structure (recursively
through structures, lists and maps), and every value must have its shape's type. A key named
`berth` is Berth's documented extension and is skipped wherever it appears. Error responses
must carry `__type` and `message`. The Berth REST routes (/berth/v1/...) have no botocore
model and are not checked.

Usage: shape_check.py [TRANSCRIPT]   (default: tests/golden/ecs_transcript.txt beside this file)
Prints each violation with its JSON path; exits 1 if there is any.
"""

import json
import os
import re
import sys

import botocore.session

TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
EXTENSION = "berth"
# golden.rs replaces timestamps near the recording time with this placeholder; any number will
# do in its place, since only the type is checked.
TIMESTAMP_PLACEHOLDER = "<ts>"


def entries(text):
    """Yields (title, status, body) for each `=== title` / `status content-type` / body entry."""
    blocks = re.split(r"^=== ", text, flags=re.M)
    for block in blocks[1:]:
        title, _, rest = block.partition("\n")
        status_line, _, body = rest.partition("\n")
        yield title, int(status_line.split()[0]), body.strip()


def ecs_operation(title):
    """The ECS operation an entry called, or None for a Berth REST route. A raw request names
    its X-Amz-Target, which may not be an ECS one: then the operation is ''."""
    first, _, rest = title.partition(" ")
    if first == "POST" and rest.startswith("/ "):
        target = rest[2:].split(" ", 1)[0]
        return target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
    if first in ("GET", "PUT", "POST", "DELETE"):
        return None
    return first


def is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


TYPE_CHECKS = {
    "string": (lambda v: isinstance(v, str), "a string"),
    "blob": (lambda v: isinstance(v, str), "a base64 string"),
    "integer": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "long": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "boolean": (lambda v: isinstance(v, bool), "a boolean"),
    "timestamp": (is_number, "a number (epoch seconds)"),
    "double": (is_number, "a number"),
    "float": (is_number, "a number"),
}


def check(value, shape, path, out):
    """Appends to `out` each way `value` does not fit `shape`."""
    if getattr(shape, "is_document_type", False):
        return
    kind = shape.type_name
    if value is None:
        out.append(f"{path}: null where {shape.name} ({kind}) is expected")
    elif kind == "structure":
        if not isinstance(value, dict):
            out.append(f"{path}: {type(value).__name__} where structure {shape.name} is expected")
            return
        for key, member in value.items():
            if key == EXTENSION:
                continue
            if key not in shape.members:
                out.append(f"{path}.{key}: not a member of {shape.name}")
                continue
            check(member, shape.members[key], f"{path}.{key}", out)
    elif kind == "list":
        if not isinstance(value, list):
            out.append(f"{path}: {type(value).__name__} where list {shape.name} is expected")
            return
        for i, item in enumerate(value):
            check(item, shape.member, f"{path}[{i}]", out)
    elif kind == "map":
        if not isinstance(value, dict):
            out.append(f"{path}: {type(value).__name__} where map {shape.name} is expected")
            return
        for key, item in value.items():
            check(item, shape.value, f"{path}[{json.dumps(key)}]", out)
    elif kind in TYPE_CHECKS:
        fits, wanted = TYPE_CHECKS[kind]
        if not fits(value):
            out.append(f"{path}: {json.dumps(value)} is not {wanted} ({shape.name})")
    else:
        out.append(f"{path}: the checker does not know botocore type {kind!r} ({shape.name})")


def check_error(body, path, out):
    if not isinstance(body, dict):
        out.append(f"{path}: an error response that is not a JSON object")
        return
    for key in ("__type", "message"):
        if not isinstance(body.get(key), str) or not body[key]:
            out.append(f"{path}.{key}: missing from an error response")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    transcript = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "golden", "ecs_transcript.txt")
    with open(transcript, encoding="utf-8") as f:
        text = f.read()
    model = botocore.session.get_session().get_service_model("ecs")
    operations = set(model.operation_names)

    violations = []
    checked = 0
    for n, (title, status, body) in enumerate(entries(text), start=1):
        op = ecs_operation(title)
        if op is None:
            continue
        where = f"entry {n} ({title[:80]})"
        try:
            parsed = json.loads(body.replace(TIMESTAMP_PLACEHOLDER, "1700000000"))
        except ValueError as e:
            violations.append(f"{where}: $: the body is not JSON ({e})")
            continue
        checked += 1
        found = []
        if status != 200:
            check_error(parsed, "$", found)
        elif op not in operations:
            found.append(f"$: {op!r} succeeded but is not an operation of botocore's ECS model")
        else:
            output = model.operation_model(op).output_shape
            if output is None:
                if parsed != {}:
                    found.append(f"$: {op} has no output in botocore, yet the body is {body}")
            else:
                check(parsed, output, "$", found)
        violations.extend(f"{where}: {v}" for v in found)

    for v in violations:
        print(v)
    print(f"{checked} ECS responses checked against botocore {botocore.__version__}: "
          f"{len(violations)} violation(s)")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
