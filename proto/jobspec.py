"""The job spec on the wire: `simpletvm.spec.JobSpec` <-> `pb.JobSpec`, the one conversion the
client and the daemon share.

Fields map by name (the few renamed or JSON-encoded ones are listed below), so a field added to
both the spec and the .proto needs nothing here. An unset wire field takes the spec's default:
for `optional` fields that is "not present", for plain proto3 scalars the zero value (an empty
name, 0 for no latency goal), except for the `REQUIRED` ones, whose zero the spec refuses.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Any

from proto import tunesched_pb2 as pb
from simpletvm.spec import JobSpec, SpecError
from simpletvm.targets import parse_target

WIRE_NAMES = {"target": "target_json", "input_shapes": "input_shapes_json",
              "replay": "replay_dir"}
LOCAL = frozenset({"job_id", "demand_overrides", "cpu_profile_exclusivity"})  # not sent
REQUIRED = frozenset({"trials"})
_WIRE = pb.JobSpec.DESCRIPTOR.fields_by_name


def to_pb(spec: JobSpec, request_id: str = "") -> pb.JobSpec:
    """The wire form of `spec`; `request_id` makes a retried submit return the same job."""
    values: dict[str, Any] = {"request_id": request_id}
    for f in fields(JobSpec):
        value = getattr(spec, f.name)
        if f.name in LOCAL or value is None:
            continue
        if f.name in ("target", "input_shapes"):
            value = json.dumps(value)
        values[WIRE_NAMES.get(f.name, f.name)] = value
    return pb.JobSpec(**values)


def from_pb(msg: pb.JobSpec) -> JobSpec:
    """The JobSpec a wire spec asks for (a preset such as "cuda" made a dict here; "cpu", or an
    llvm target without num-cores, is left for the runner that takes the job); SpecError, one
    line, when it breaks a rule."""
    values: dict[str, Any] = {}
    for f in fields(JobSpec):
        wire = WIRE_NAMES.get(f.name, f.name)
        if f.name in LOCAL or wire not in _WIRE:
            continue
        value = getattr(msg, wire)
        present = msg.HasField(wire) if _WIRE[wire].has_presence else bool(value)
        if present or f.name in REQUIRED:
            values[f.name] = value
    values["target"] = parse_target(msg.target_json or "cpu", check_with_tvm=False,
                                    resolve=False)
    if "input_shapes" in values:
        values["input_shapes"] = _json(values["input_shapes"])
    return JobSpec(**values)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, 4300+ digits, deep nesting
        raise SpecError('input shapes must be JSON like {"x": [1, 3, 224, 224]}') from None
