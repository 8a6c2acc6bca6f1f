"""Generate Python code from every .proto file in this folder (`make proto`). Never hand-edit."""

from __future__ import annotations

import sys
from pathlib import Path

from grpc_tools import protoc


def main() -> int:
    here = Path(__file__).resolve().parent
    root = here.parent
    protos = sorted(here.glob("*.proto"))
    for proto in protos:
        code = protoc.main([
            "grpc_tools.protoc", f"-I{root}", f"--python_out={root}", f"--pyi_out={root}",
            f"--grpc_python_out={root}", str(proto.relative_to(root)),
        ])
        if code != 0:
            print(f"protoc failed on {proto.name}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
