"""Runs the conformance scenarios against one target and writes target/interop/<target>.json.

Invoked by `interop/knox/run`; see docs/INTEROP.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from pathlib import Path

from keeper import Failed, Keeper
from scenarios import SCENARIOS, Ctx
from targets import Knox, Sim, write_report


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(prog="interop/knox/run")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--knox-version", default="2.0.0", help="the Knox release to run (from Maven Central)")
    which.add_argument("--sim", action="store_true", help="run against the project's simulator")
    ap.add_argument("--scenario", action="append", default=[], help="run only these (repeatable)")
    ap.add_argument("--keeper", required=True, type=Path, help="the token-keeper binary")
    ap.add_argument("--knox-sim", required=True, type=Path, help="the knox-sim binary (for --sim)")
    ap.add_argument("--root", required=True, type=Path, help="the repository root")
    args = ap.parse_args()

    names = [n for n, _ in SCENARIOS]
    unknown = [s for s in args.scenario if s not in names]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(names)}")
    chosen = [(n, f) for n, f in SCENARIOS if not args.scenario or n in args.scenario]

    out = args.root / "target/interop"
    target = (Sim(args.knox_sim, out / "sim-work", log) if args.sim
              else Knox(args.knox_version, out / f"knox-{args.knox_version}-work", log))
    report_path = out / f"{target.name}.json"
    results: list[dict] = []
    t0 = time.monotonic()
    try:
        log(f"starting {target.name}")
        target.start()
    except Exception as e:  # the target itself: fail loudly, never skip
        log(f"FAILED to start {target.name}: {e}")
        target.stop()
        write_report(report_path, target.name, [{"name": "start", "ok": False, "detail": str(e)[-2000:],
                                                 "seconds": round(time.monotonic() - t0, 1)}], {})
        print("0 passed, 1 failed")
        return 1
    scen_dir = out / f"{target.name}-scenarios"
    shutil.rmtree(scen_dir, ignore_errors=True)
    try:
        for name, fn in chosen:
            d = scen_dir / name
            d.mkdir(parents=True)
            s0 = time.monotonic()
            try:
                detail, ok = fn(Ctx(target, args.keeper, d)), True
            except Failed as e:
                detail, ok = str(e), False
            except Exception as e:  # a bug in the scenario or a crash: still a failure
                detail, ok = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}", False
            finally:
                Keeper.reap()
            secs = round(time.monotonic() - s0, 1)
            results.append({"name": name, "ok": ok, "detail": detail, "seconds": secs})
            log(f"{'ok  ' if ok else 'FAIL'} {name} ({secs}s): {detail}")
    finally:
        figures = target.figures()
        target.stop()
    figures["suite_s"] = round(time.monotonic() - t0, 1)
    report = write_report(report_path, target.name, results, figures)
    log(f"report: {report_path} figures: {figures}")
    print(f"{report['passed']} passed, {report['failed']} failed")
    return 0 if report["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
