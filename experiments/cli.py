"""The `natlab` command line: the parser, and what each subcommand prints.

The rootless commands (`list`, `check`, `model`, `judge`) are built from rooms that never import
the kernel side. The commands that need root (`run`, `up`, `clean`, `bench`) reach their room
through `_lazy`, the one place where this module imports on demand: so `natlab judge` on a
laptop without Mininet never loads it (tests/model/test_cli.py checks). A `UserError` (bad
spec, unsupported rule, missing program, not root) becomes one line on stderr, `natlab:
<message>`, and exit status 2; so does a kernel-side failure (`topologies.hostexec.KernelError`:
a tool refused the rules, a program failed), which the rooms that run the kernel (`session`,
`shell`) turn into a UserError, since this module cannot import them. Anything else is a bug in
natlab and keeps its traceback (exit status 1).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from experiments.backends import BACKENDS
from experiments.campaign import in_order
from experiments.ending import ENDING_SIGNALS, handle_ending_signals, signal_exit_status
from experiments.errors import UserError
from experiments.library import builtin_spec_paths, load_specs
from experiments.model_config import UnmodeledRules, check_rules
from experiments.modelrun import run as model_run
from experiments.preflight import check_output_folder, kernel_preflight, require_root
from experiments.records import bundle as records
from experiments.records.show import console, json_line, model_json, run_json, run_text, show_model
from experiments.spec import load_spec
from experiments.terminal import literal

# Exit statuses (also in `natlab --help`, README.md and docs/exit-status.md).
OK, BUG, USAGE, NOT_CLEAN, INFRA = 0, 1, 2, 3, 4

_EPILOG = """\
exit status: 0 ok (MATCH, XFAIL or UNMODELED, and no expectation failed); 1 a bug in natlab
(with a traceback); 2 a problem you can fix (bad spec, rules the kernel or the model's parser
refuses, missing program, not root, a bundle refused, an output folder that cannot be
written, a sysctl no network namespace has, `clean` of a run id this machine never had), told
in one line; 3 finished, but the result is not clean (MISMATCH, XPASS, an expectation failed
or a step did not complete; for `judge`: anything differing from the record, or a verdict not
clean; leftovers for `clean`); 4 natlab's own machinery failed under a run (a helper died, a
command natlab needs failed): verdict ERROR with its bundle, or one line when nothing could
be recorded; 130 interrupted (Ctrl-C), 143 SIGTERM, 129 SIGHUP: everything torn down first.
`natlab run` with several specs (and -j N) runs them all even when one fails (each failure is
told in its own line) and exits with the gravest: 4 if any, else 2, else 3, else 0.

SPEC is a spec file, a directory of *.toml specs, or the name of a built-in spec
(`natlab list` shows them). The spec format: docs/spec-format.md."""


def _lazy(module: str, attr: str, command: str) -> Any:
    """`module.attr`, imported now (a room that needs root), or a UserError if this checkout
    does not have the module."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise UserError(f"natlab {command} is not available in this version "
                        f"({module} is missing)") from None
    return getattr(mod, attr)


def error_line(message: str) -> None:
    """A problem told in one line on stderr, `natlab: <message>`: spec or bundle text in it is
    shown as data (control characters escaped), and newlines become spaces."""
    print(literal(f"natlab: {' '.join(message.split())}", markup=False), file=sys.stderr)


# --- subcommands -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    specs = [load_spec(p) for p in builtin_spec_paths()]
    if args.json:
        for s in specs:
            sys.stdout.write(json_line({"name": s.name, "description": s.summary,
                                        "path": s.path, "topology": s.topology.name,
                                        "backend": s.backend}))
        sys.stdout.flush()
        return OK
    table = Table(title="built-in specs", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("topology")
    table.add_column("description")
    for s in specs:
        table.add_row(literal(s.name), literal(s.topology.name), literal(s.summary))
    console().print(table)
    return OK


def cmd_check(args: argparse.Namespace) -> int:
    for spec in load_specs(args.specs, args.backend):
        if args.model:
            check_rules(spec)
        if args.json:
            sys.stdout.write(json_line({"path": spec.path, "name": spec.name, "ok": True,
                                        "steps": len(spec.steps), "backend": spec.backend,
                                        "model": bool(args.model)}))
        else:
            print(literal(f"{spec.path}: ok ({spec.name}, {len(spec.steps)} steps)",
                          markup=False))
    sys.stdout.flush()
    return OK


def cmd_model(args: argparse.Namespace) -> int:
    specs = load_specs(args.specs, args.backend)
    for spec in specs:
        check_rules(spec)
    out = console()
    for spec in specs:
        result = model_run.run_on_model(spec)
        if args.json:
            sys.stdout.write(model_json(spec, result))
            sys.stdout.flush()
        else:
            show_model(out, spec, result)
    return OK


def cmd_run(args: argparse.Namespace) -> int:
    """Each spec on the kernel, then the model fed what the gateway received; compared.
    A spec the kernel refuses is told in its own line and the others still run."""
    specs = load_specs(args.specs, args.backend)
    kernel_preflight("run", [s.backend for s in specs])
    results = Path(args.out) if args.out else Path("results")
    check_output_folder(results)
    _lazy("experiments.kernel.sysctl_names", "check_sysctl_names", "run")(specs)
    model_problems: dict[int, UserError] = {}
    for i, spec in enumerate(specs):
        try:
            check_rules(spec)
        except UnmodeledRules:      # runs on the kernel alone: verdict UNMODELED
            pass
        except UserError as e:      # reported after the kernel had its say on the same rules
            model_problems[i] = e
    swept = _lazy("topologies.sweep", "sweep_before_run", "run")(results)
    if swept is not None:
        error_line(swept)
    run_spec = _lazy("experiments.session", "run_spec", "run")
    out = console()

    def one(i: int) -> tuple[str, int, bool]:
        """(what to print, exit status, whether it is a recorded run)."""
        try:
            rec = run_spec(specs[i], results, model_problems.get(i))
        except UserError as e:      # this spec failed: told in one line, the others still run
            return " ".join(str(e).split()), e.exit_status, False
        text = run_json(rec) if args.json else run_text(out, rec, args.verbose)
        return text, run_status(rec.judgement.status, rec.clean), True

    statuses = []
    unrun = 0
    for text, status, recorded in in_order(len(specs), args.jobs, one):
        if recorded:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            sys.stdout.flush()
            error_line(text)
            unrun += 1
        statuses.append(status)
    if unrun and len(specs) > 1:
        print(f"natlab: {unrun} of {len(specs)} specs could not be run", file=sys.stderr)
    return gravest(statuses)


def run_status(verdict: str, clean: bool) -> int:
    """One recorded run's exit status: 4 for ERROR (natlab's machinery failed under it),
    else 0 when clean, else 3."""
    if verdict == "ERROR":
        return INFRA
    return OK if clean else NOT_CLEAN


_GRAVITY = (INFRA, USAGE, NOT_CLEAN)


def gravest(statuses: list[int]) -> int:
    """The exit status of several runs (`natlab run A B`, `-j N`): the gravest of theirs,
    4 (infrastructure) before 2 (could not be run) before 3 (not clean) before 0; any other
    status (none is expected) counts as 2."""
    for status in _GRAVITY:
        if status in statuses:
            return status
    return USAGE if any(s != OK for s in statuses) else OK


def cmd_judge(args: argparse.Namespace) -> int:
    verdict = records.judge(Path(args.bundle))
    if args.json:
        sys.stdout.write(json_line({**records.verdict_json(verdict.judgement),
                                    "bundle": str(args.bundle), "status": verdict.status,
                                    "same_as_recorded": verdict.same,
                                    "differences": verdict.differences()}))
        sys.stdout.flush()
    else:
        print(literal(verdict.render(), markup=False, newlines=True))
    return OK if verdict.clean else NOT_CLEAN


def cmd_clean(args: argparse.Namespace) -> int:
    require_root("clean")
    sweep = _lazy("topologies.sweep", "sweep", "clean")
    try:
        report = sweep(args.run_id, results=Path("results"), tmpdir=Path(tempfile.gettempdir()))
    except ValueError as e:
        raise UserError(str(e)) from None
    print(report.summary())
    return NOT_CLEAN if report.errors else OK


def cmd_bench(args: argparse.Namespace) -> int:
    bench_main: Callable[[list[str]], int] = _lazy("experiments.bench", "main", "bench")
    return bench_main(list(args.args))


def cmd_up(args: argparse.Namespace) -> int:
    up: Callable[..., int] = _lazy("experiments.shell", "up", "up")
    return up(args.topology, args.backend, args.rules, args.simple)


# --- the parser --------------------------------------------------------------------------------


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of jobs (1 or more)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natlab",
        description="Watch Linux NAT and connection tracking work in real network namespaces, "
                    "and check a Python model of netfilter against the real kernel.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, description: str,
            func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=description, epilog=_EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    def specs(p: argparse.ArgumentParser) -> None:
        p.add_argument("specs", nargs="+", metavar="SPEC",
                       help="a spec file, a directory of specs, or a built-in spec's name")
        p.add_argument("--backend", choices=BACKENDS, default=None,
                       help="load the gateway's rules with this backend instead of the "
                            "spec's own (iptables = iptables-nft)")

    p = add("run", "run specs on the real kernel and check the model against it (root)",
            "Build each spec's topology in fresh network namespaces, load the rules into the "
            "gateway, send the traffic while capturing every packet in and out of the gateway, "
            "and snapshot its conntrack table. Then feed the model the packets the gateway "
            "received and compare: conntrack entries field by field, sent packets byte for "
            "byte. Prints kernel | model side by side and a verdict (MATCH, MISMATCH, XFAIL, "
            "XPASS), checks the spec's [expect], and writes a result bundle that `natlab judge` "
            "can re-check anywhere. Needs root. Everything is torn down afterwards, even on "
            "errors, SIGTERM, SIGHUP and Ctrl-C (exit 143, 129, 130; finished bundles are kept "
            "whole, no partial one is left). First it sweeps what dead natlab runs left (said "
            "in one line on stderr), and refuses in one line, before anything is built, an "
            "--out that cannot be written and a sysctl no network namespace has. A spec that "
            "fails on the kernel is told in its own line and the other specs still run. Rules "
            "the kernel takes but the model does not cover (see `natlab check --model`) run on "
            "the kernel alone: verdict UNMODELED naming the construct, judged by [expect] "
            "only. A step that does not complete (a send refused, a deadline passed) is a "
            "warning and fails the expectation, unless the step says `unanswered = true`. A "
            "failure of natlab's own machinery during the run (a helper died) gives verdict "
            "ERROR. Exit status: 0 when every spec is MATCH, XFAIL or UNMODELED and no "
            "expectation fails; 4 when any ended in ERROR or natlab's machinery failed; "
            "else 2 when any spec could not be run; else 3.",
            cmd_run)
    specs(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object per spec per line, with name and kernel.conntrack")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="write each run's result bundle in a new directory under DIR "
                        "(default: ./results)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="also print each packet's journey through the modelled gateway")
    p.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N",
                   help="run up to N specs at once, each in its own worker process (output "
                        "and exit status as when run one by one; default 1)")

    p = add("model", "predict what specs do, with the Python model (no root)",
            "Run each spec through the model of netfilter alone: the predicted conntrack "
            "table and each packet's journey through the gateway's hooks. No root, no "
            "namespaces. Rules the model does not support are reported as errors.",
            cmd_model)
    specs(p)
    p.add_argument("--json", action="store_true",
                   help="one JSON object per spec per line, with name and model.conntrack")

    p = add("check", "validate specs without running them",
            "Load and validate each spec (file syntax, fields, hosts, addresses). With "
            "--model also parse the gateway's rules as the model reads them.", cmd_check)
    specs(p)
    p.add_argument("--model", action="store_true",
                   help="also check that the model supports every rule")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per valid spec per line (a bad spec: one line on "
                        "stderr, exit 2)")

    p = add("list", "list the built-in specs",
            "The specs shipped with natlab, with their one-line descriptions. Any of them "
            "can be given by name where a SPEC is expected.", cmd_list)
    p.add_argument("--json", action="store_true", help="one JSON object per spec per line")

    p = add("judge", "re-judge a result bundle (no root)",
            "Recompute the verdict of a recorded run from its bundle: the comparison is a "
            "pure function of the recorded observation and prediction. The bundle is read as "
            "untrusted input (regular files only, each size-limited; spec.toml must hash to "
            "meta.json's spec_hash); the whole recorded verdict is compared, expectation "
            "included.", cmd_judge)
    p.add_argument("bundle", metavar="BUNDLE", help="a result bundle directory")
    p.add_argument("--json", action="store_true",
                   help="the re-judged verdict document as one JSON object, with "
                        "`same_as_recorded` and the `differences` from the record")

    p = add("clean", "remove what crashed natlab runs left behind (root)",
            "Find processes, links and state files of dead natlab runs (by natlab's own run "
            "ids only), and partial bundles in ./results and work directories in $TMPDIR whose "
            "owner is dead, and remove them. Live runs are left alone unless named. An id this "
            "machine never had (nor swept) is an error (exit 2). `natlab run` and `natlab up` "
            "sweep dead runs first too.", cmd_clean)
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", default=None,
                   help="sweep this run even if its owner is alive")

    p = add("up", "bring a topology up and explore it by hand (root)",
            "Build a topology (a preset, or a spec's topology with its rules and sysctls), "
            "optionally load rules into the gateway, and open Mininet's interactive CLI on it "
            "(hosts answer to their topology names: `gateway conntrack -L`). Without a "
            "terminal, or with --simple, a small line shell reads commands from stdin "
            "instead. Leaving either tears everything down.", cmd_up)
    p.add_argument("topology", nargs="?", default="home", metavar="TOPOLOGY",
                   help="a topology preset (home, lan) or a spec (default: home)")
    p.add_argument("--rules", metavar="FILE", default=None,
                   help="rules for the gateway: iptables-restore text (nft -f text with "
                        "--backend nft)")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="how to load the rules (default: the spec's, else iptables)")
    p.add_argument("--simple", action="store_true",
                   help="natlab's line shell (HOST COMMAND ARGS...) instead of Mininet's CLI")

    p = add("bench", "measure natlab's speed",
            "Benchmarks of the model and of kernel runs; arguments go to the benchmark.",
            cmd_bench)
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `natlab` console script."""
    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    if argv is None:  # the console script, not a test calling main() in its own process
        handle_ending_signals()
    try:
        if words[:1] == ["bench"]:
            # argparse's REMAINDER refuses a first word that looks like an option
            # (`natlab bench --quick`): the benchmark parses its own arguments.
            args = argparse.Namespace(func=cmd_bench, args=words[1:])
        else:
            args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2), already printed by argparse
        return e.code if isinstance(e.code, int) else USAGE
    try:
        status: int = args.func(args)
        if argv is None:  # done: a signal now must not turn this status into death by it
            signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
        return status
    except UserError as e:
        error_line(str(e))
        return e.exit_status
    except KeyboardInterrupt:   # Ctrl-C, SIGTERM or SIGHUP: everything is torn down by now
        if argv is None:
            # A further signal now would meet the default handlers Python restores while it
            # shuts down and end the process by that signal instead of this exit status.
            signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
        status, words_ = signal_exit_status()
        with contextlib.suppress(OSError):   # after SIGHUP the terminal may be gone
            print(f"natlab: {words_}", file=sys.stderr)
        return status
    except BrokenPipeError:
        # stdout closed early (`natlab list | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK


if __name__ == "__main__":
    sys.exit(main())
