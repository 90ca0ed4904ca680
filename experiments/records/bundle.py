"""Reading a result bundle back and re-judging it (`natlab judge`): no root, no kernel side.

The layout and format versions are in `experiments.bundle_format`; the kernel side writes
bundles (`experiments.kernel.bundle`). The prediction and verdict documents are made here, from
a `Judgement`, so the kernel side never needs to know what a verdict is.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from experiments.backends import BACKENDS
from experiments.judging.judgement import Judgement, judge_observed
from experiments.model_config import model_ruleset
from experiments.observed import Observed
from experiments.records import bundle_fields
from experiments.records.bundle_fields import meta_fields
from experiments.records.safe_read import (
    BundleError,
    decode,
    open_bundle,
    printable,
    read_bytes,
    read_json,
)
from experiments.spec import Spec, SpecError, spec_from_bytes
from nat.hook_table import ChainNotModelled
from nat.listing import render
from nat.rules.ast import UnsupportedRule


def documents(j: Judgement) -> dict[str, dict[str, Any]]:
    """The bundle's judgement files, by name."""
    return {"prediction.json": prediction_json(j), "verdict.json": verdict_json(j)}


def prediction_json(j: Judgement) -> dict[str, Any]:
    p = j.prediction
    return {
        "conntrack": {name: [render(e) for e in entries] for name, _, entries in p.snapshots},
        "sent": [{"input": i, "iface": iface, "data": data.hex()} for i, iface, data in p.sent],
        "choices": [c.__dict__ for c in p.choices],
        "journeys": [jr.render() for jr in p.journeys],
    }


def verdict_json(j: Judgement) -> dict[str, Any]:
    return {"name": j.name, "verdict": j.status, "diffs": [d.to_json() for d in j.diffs],
            "expect": {"status": j.expect.status, "failures": list(j.expect.failures)},
            "xfail": j.xfail, "notes": list(j.notes), "warnings": list(j.warnings),
            "unmodeled": j.unmodeled, "error": j.error}


def load_observed(bundle: Path) -> tuple[Spec, Observed, dict[str, Any]]:
    """Read back what `judge` needs, each file through the safe reader and each field checked
    (`experiments.records.safe_read`, `bundle_fields`); a spec.toml that does not hash to
    meta.json's `spec_hash` is refused. Every error is a BundleError naming the bundle, the
    file and the field."""
    dir_fd = open_bundle(bundle)
    try:
        backend, recorded_hash = meta_fields(bundle, read_json(bundle, dir_fd, "meta.json"))
        raw_spec = read_bytes(bundle, dir_fd, "spec.toml")
        actual_hash = hashlib.sha256(raw_spec).hexdigest()
        if actual_hash != recorded_hash:
            raise BundleError(bundle, "spec.toml", "", f"hashes to {actual_hash}, but "
                              f"meta.json's spec_hash is {recorded_hash}: the spec was "
                              "changed after the run")
        if backend not in BACKENDS:
            raise BundleError(bundle, "meta.json", "backend",
                              f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
        try:
            spec = spec_from_bytes(raw_spec, bundle / "spec.toml", backend=backend)
        except SpecError as e:
            raise BundleError(bundle, "spec.toml", e.field_path, e.message) from None
        text = decode(bundle, "packets.jsonl", read_bytes(bundle, dir_fd, "packets.jsonl"))
        observed = bundle_fields.observed(bundle, read_json(bundle, dir_fd, "observed.json"),
                                          bundle_fields.packets(bundle, text))
        recorded = bundle_fields.recorded_verdict(bundle,
                                                  read_json(bundle, dir_fd, "verdict.json"))
    finally:
        os.close(dir_fd)
    try:
        model_ruleset(spec, observed.ruleset_fed)
    except (UnsupportedRule, ChainNotModelled):
        pass        # valid rules outside the model: the judgement says UNMODELED
    except ValueError as e:
        file, field = (("observed.json", "ruleset_fed") if observed.ruleset_fed is not None
                       else ("spec.toml", "nft" if spec.nft is not None else "rules"))
        raise BundleError(bundle, file, field, f"rules the model cannot read: {e}") from None
    return spec, observed, recorded


# The verdict document's parts, in the order `natlab judge` reports a difference.
_PARTS = (("name", "name"), ("verdict", "verdict"), ("diffs", "diffs"),
          ("expect.status", "expectation status"), ("expect.failures", "expectation failures"),
          ("xfail", "xfail"), ("notes", "notes"), ("warnings", "warnings"),
          ("unmodeled", "unmodeled construct"), ("error", "error"))


def _part(document: dict[str, Any], dotted: str) -> Any:
    value: Any = document
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


class Rejudged:
    """`natlab judge`: the verdict recomputed from a bundle, next to the recorded one. The
    whole verdict document is compared: verdict, diffs, the expectation's status and
    failures, xfail and notes."""

    def __init__(self, bundle: Path, judgement: Judgement, recorded: dict[str, Any]) -> None:
        self.bundle = bundle
        self.judgement = judgement
        self.recorded = recorded

    def differences(self) -> list[str]:
        """One line per part of the verdict document that differs from the record."""
        now = verdict_json(self.judgement)
        out = []
        for dotted, label in _PARTS:
            was, is_ = _part(self.recorded, dotted), _part(now, dotted)
            if was != is_:
                out.append(f"{label}: recorded {_short(was)}, re-judged {_short(is_)}")
        extra = sorted(set(self.recorded) - set(now))
        if extra:
            out.append(f"fields natlab does not write: {', '.join(map(repr, extra))}")
        return out

    @property
    def same(self) -> bool:
        return not self.differences()

    @property
    def clean(self) -> bool:
        """Exit status 0: re-judged exactly as recorded, and clean in itself."""
        return self.same and self.judgement.clean

    @property
    def status(self) -> str:
        return self.judgement.status if self.same else "CHANGED"

    def render(self) -> str:
        differences = self.differences()
        where = printable(str(self.bundle))
        if not differences:
            return f"{self.judgement.render()}\n(re-judged from {where}: the same as recorded)"
        lines = [f"  differs: {d}" for d in differences]
        was = printable(str(self.recorded.get("verdict")))
        return "\n".join([self.judgement.render(),
                          f"(re-judged from {where}: DIFFERENT from the recorded {was})",
                          *lines])


def _short(value: Any) -> str:
    """A recorded value for one line: lists by their length and first item, strings quoted
    (escaped, so a bundle cannot write control characters to the terminal), cut at 120."""
    if isinstance(value, list):
        head = f", first {json.dumps(value[0], sort_keys=True)}" if value else ""
        text = f"{len(value)} item(s){head}"
    else:
        text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


def judge(bundle: Path) -> Rejudged:
    spec, observed, recorded = load_observed(bundle)
    try:
        judgement = judge_observed(spec, observed)
    except ValueError as e:     # every model error is one; the fields were checked before
        raise BundleError(bundle, "observed.json", "",
                          f"the model cannot re-judge what the bundle records: {e}") from None
    return Rejudged(bundle, judgement, recorded)
