"""Refuse notebooks stored with outputs or execution counts (a pre-commit hook)."""

import json
import sys

bad = []
for path in sys.argv[1:]:
    nb = json.load(open(path, encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count")):
            bad.append(path)
            break
if bad:
    print(
        "Notebooks stored with outputs (clear them: Restart Kernel and Clear Outputs, save):",
        *bad,
        sep="\n  ",
    )
    sys.exit(1)
