"""Writing a result bundle: one directory per run, written atomically, never overwritten.

The layout and its version are in `experiments.bundle_format`. The bundle is written into a
hidden sibling directory and renamed into place as a whole, so an interrupted run leaves either
a complete bundle or none. Reading one back (and re-judging it) is `experiments.records.bundle`,
which needs no root and does not import this side.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.bundle_format import FORMAT
from experiments.errors import UserError
from experiments.kernel.run import Observation
from experiments.observed import Observed
from experiments.spec import Spec, spec_hash
from topologies.names import partial_bundle_name


def write_bundle(results: Path, spec: Spec, obs: Observation, observed: Observed,
                 documents: Mapping[str, Any]) -> Path:
    """Write the bundle under `results/` and return its path. `documents` are further JSON
    files by name (the session adds the prediction and the verdict: the kernel side writes
    them without knowing what they are)."""
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    final = results / f"{stamp}-{spec.name}-{spec.backend}-{obs.run_id}"
    if final.exists():
        raise UserError(f"{final}: a bundle of that name exists; natlab never overwrites one")
    tmp = results / partial_bundle_name(obs.run_id)  # its owner: the sweeper can tell
    if tmp.exists():
        shutil.rmtree(tmp)
    try:  # from the mkdir on: a Ctrl-C right after it must not leave the directory
        tmp.mkdir()
        (tmp / "spec.toml").write_bytes(spec.path.read_bytes())
        _json(tmp / "meta.json", {
            "format": FORMAT, "name": spec.name, "backend": spec.backend,
            "run_id": obs.run_id, "spec_hash": spec_hash(spec.path),
            "spec_path": str(spec.path), "versions": obs.versions.to_json(),
            "timing": obs.timing, "capture_dropped": obs.capture_dropped,
            "steps": [{"index": s.index, "action": s.action, "start": s.start, "end": s.end,
                       "completed": s.completed, "detail": s.detail} for s in obs.steps],
        })
        _json(tmp / "observed.json", observed.to_json())
        with (tmp / "packets.jsonl").open("w") as f:
            for p in observed.packets:
                f.write(json.dumps(p.to_json()) + "\n")
        (tmp / "ruleset.txt").write_text(_ruleset_text(obs))
        (tmp / "conntrack").mkdir()
        for s in observed.snapshots:
            (tmp / "conntrack" / f"{s.name}.txt").write_text("".join(x + "\n" for x in s.lines))
        if obs.event_log.exists():
            shutil.copyfile(obs.event_log, tmp / "events.txt")
        (tmp / "pcap").mkdir()
        for iface, path in obs.pcaps.items():
            if path.exists():
                shutil.copyfile(path, tmp / "pcap" / f"{iface}.pcap")
        if obs.pcap.exists():
            shutil.copyfile(obs.pcap, tmp / "pcap" / "all.pcap")
        for name, document in documents.items():
            _json(tmp / name, document)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _ruleset_text(obs: Observation) -> str:
    """The ruleset as the kernel holds it (read back after loading)."""
    return obs.ruleset.readback


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
