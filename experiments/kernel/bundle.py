"""Writing a result bundle: one directory per run, written atomically, never overwritten.

The layout and its version are in `experiments.bundle_format`. The bundle is written into a
hidden sibling directory and renamed into place as a whole, so an interrupted run leaves either
a complete bundle or none. Reading one back (and re-judging it) is `experiments.records.bundle`,
which needs no root and does not import this side.

What people open is written for them: the captures as pcapng with the gateway's interface
names, directions and a comment per packet (`experiments.kernel.wireshark`), the event log as
conntrack printed it; natlab's own marker frame and marker entry (which tell natlab that the
capture and the log are complete) are left out of both.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.bundle_format import FORMAT
from experiments.errors import UserError
from experiments.kernel.conntrack import event_text
from experiments.kernel.run import Observation
from experiments.kernel.wireshark import write_captures
from experiments.observed import Observed
from experiments.spec import Spec, spec_hash
from topologies.names import partial_bundle_name


def write_bundle(results: Path, spec: Spec, obs: Observation, observed: Observed,
                 documents: Mapping[str, Any],
                 comments: Mapping[int, Sequence[str]] | None = None) -> Path:
    """Write the bundle under `results/` and return its path. `documents` are further JSON
    files by name, `comments` the captures' comments by packet number (index into
    `observed.packets`): the session adds the prediction, the verdict and each packet's
    journey; the kernel side writes them without knowing what they are."""
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
            (tmp / "events.txt").write_text(event_text(obs.event_log))
        write_captures(obs.pcap, obs.ifnames, comments or {}, tmp / "pcap",
                       header=_capture_header(spec, obs))
        for name, document in documents.items():
            _json(tmp / name, document)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _capture_header(spec: Spec, obs: Observation) -> str:
    """The captures' section comment: which run, and what the packet comments are."""
    return (f"natlab run {obs.run_id} of spec {spec.name} (backend {spec.backend}): "
            "everything in and out of the gateway. Packet numbers (#N) count the IPv4 "
            "packets as packets.jsonl and verdict.json do; each packet's comments are the "
            "model's account of it (prediction.json has every journey in full).")


def _ruleset_text(obs: Observation) -> str:
    """The ruleset as the kernel holds it (read back after loading)."""
    return obs.ruleset.readback


def _json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
