"""Prints the scenario × target table of docs/INTEROP.md from target/interop/*.json.

    python3 interop/knox/table.py [REPORT.json ...]
"""

import json
import sys
from pathlib import Path

paths = [Path(p) for p in sys.argv[1:]] or sorted(Path("target/interop").glob("*.json"))
reports = [json.loads(p.read_text()) for p in paths]
names = list(dict.fromkeys(s["name"] for r in reports for s in r["scenarios"]))
print("| scenario | " + " | ".join(r["target"] for r in reports) + " |")
print("|---|" + "---|" * len(reports))
for n in names:
    cells = []
    for r in reports:
        s = next((s for s in r["scenarios"] if s["name"] == n), None)
        cells.append("—" if s is None else f"{'pass' if s['ok'] else 'FAIL'} ({s['seconds']} s)")
    print(f"| `{n}` | " + " | ".join(cells) + " |")
print("| **passed / failed** | " + " | ".join(f"**{r['passed']} / {r['failed']}**" for r in reports) + " |")
figs = ["resolve_s", "knoxcli_s", "start_s", "rss_mib_max", "classpath_jars", "suite_s"]
print()
print("| figure | " + " | ".join(r["target"] for r in reports) + " |")
print("|---|" + "---|" * len(reports))
for f in figs:
    print(f"| {f} | " + " | ".join(str(r.get("figures", {}).get(f, "—")) for r in reports) + " |")
