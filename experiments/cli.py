"""The `natlab` command line.

Every subcommand imports what it needs when it runs, so `natlab model`, `natlab list` and
`natlab judge` work without root and without Mininet. A `UserError` (bad spec, unsupported
rule, missing program, not root) becomes one line on stderr, `natlab: <message>`, and exit
status 2; anything else is a bug in natlab and keeps its traceback (exit status 1).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from experiments.errors import (
    BACKEND_BINARIES,
    KERNEL_RUN_BINARIES,
    UserError,
    require_binaries,
    require_root,
)

BUILTIN_SPECS = Path(__file__).resolve().parent / "specs"
# Exit statuses (also in `natlab --help`).
OK, BUG, USAGE, NOT_CLEAN = 0, 1, 2, 3

_EPILOG = """\
exit status: 0 ok; 1 a bug in natlab (with a traceback); 2 a problem you can fix (bad spec,
unsupported rule, missing program, not root), told in one line; 3 finished, but the result
is not clean (a mismatch for `judge`, leftovers for `clean`); 130 interrupted.

SPEC is a spec file, a directory of *.toml specs, or the name of a built-in spec
(`natlab list` shows them). The spec format: docs/spec-format.md."""


# --- finding specs -----------------------------------------------------------------------------


def builtin_spec_paths() -> list[Path]:
    return sorted(BUILTIN_SPECS.glob("*.toml"))


def resolve_spec_args(args: Sequence[str]) -> list[Path]:
    """SPEC arguments as files: a file, every *.toml of a directory, or a built-in name."""
    paths: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.toml") if p.is_file())
            if not found:
                raise UserError(f"{arg}: no *.toml spec in this directory")
            paths += found
        elif path.is_file():
            paths.append(path)
        elif path.exists():
            raise UserError(f"{arg}: not a regular file or directory")
        else:
            name = arg.removesuffix(".toml")
            builtin = BUILTIN_SPECS / f"{name}.toml"
            if "/" in arg or not builtin.is_file():
                raise UserError(f"no such spec: {arg!r} is not a file or directory, nor a "
                                "built-in spec (`natlab list` shows those)")
            paths.append(builtin)
    return paths


def load_specs(args: Sequence[str], backend: str | None = None) -> list[Any]:
    """Load (and validate) every spec before running any: a typo fails fast."""
    from experiments.spec import load_spec

    return [load_spec(p, backend=backend) for p in resolve_spec_args(args)]  # type: ignore[arg-type]


def _lazy(module: str, attr: str, command: str) -> Any:
    """`module.attr`, or a UserError if this checkout does not have the module yet."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        raise UserError(f"natlab {command} is not available in this version "
                        f"({module} is missing)") from None
    return getattr(mod, attr)


# --- output helpers ----------------------------------------------------------------------------


def _console() -> Any:
    from rich.console import Console

    # Piped output is not cut to 80 columns: conntrack tuples are long.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _print_json(obj: dict[str, Any]) -> None:
    from experiments.records.report import to_jsonable

    print(json.dumps(to_jsonable(obj), separators=(",", ":")), flush=True)


def _heading(console: Any, spec: Any, side: str) -> None:
    console.rule(f"[bold]{spec.name}[/bold]  ({side}, topology {spec.topology.name}, "
                 f"backend {spec.backend})")
    if spec.summary:
        console.print(spec.summary)


# --- subcommands -------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from experiments.spec import load_spec

    specs = [load_spec(p) for p in builtin_spec_paths()]
    if args.json:
        for s in specs:
            _print_json({"name": s.name, "description": s.summary, "path": s.path,
                         "topology": s.topology.name, "backend": s.backend})
        return OK
    from rich.table import Table

    table = Table(title="built-in specs", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("topology")
    table.add_column("description")
    for s in specs:
        table.add_row(s.name, s.topology.name, s.summary)
    _console().print(table)
    return OK


def cmd_check(args: argparse.Namespace) -> int:
    from experiments.spec import check_rules

    specs = load_specs(args.specs, args.backend)
    for spec in specs:
        if args.model:
            check_rules(spec)
        print(f"{spec.path}: ok ({spec.name}, {len(spec.steps)} steps)")
    return OK


def cmd_model(args: argparse.Namespace) -> int:
    from experiments.spec import check_rules

    specs = load_specs(args.specs, args.backend)
    for spec in specs:
        check_rules(spec)
    from experiments.modelrun.run import run_on_model
    from nat.listing import render

    console = _console()
    for spec in specs:
        result = run_on_model(spec)
        if args.json:
            _print_json({
                "name": spec.name, "spec": spec.path, "backend": spec.backend,
                "model": {
                    "conntrack": result.conntrack_lines,
                    "checkpoints": {n: [render(e) for e in es] for n, es in result.checkpoints},
                    "received": result.received,
                    "journeys": [j.render() for j in result.journeys],
                },
            })
            continue
        from experiments.records.report import conntrack_table, received_table

        _heading(console, spec, "model")
        for j in result.journeys:
            console.print(j.render(), markup=False, highlight=False, soft_wrap=True)
        for name, entries in result.checkpoints:
            console.print(conntrack_table([render(e) for e in entries],
                                          f"model: conntrack at checkpoint {name!r}"))
        console.print(conntrack_table(result.conntrack_lines, "model: conntrack at the end"))
        console.print(received_table(result.received, "model: received by the hosts"))
    return OK


def _workdir(out: str | None, name: str) -> Path:
    """A fresh directory for one run's files; never an existing one."""
    if out is None:
        return Path(tempfile.mkdtemp(prefix=f"natlab-{name}-"))
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = base / (f"{name}-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UserError(f"{base}: cannot make a fresh run directory for {name}")


def _kernel_preflight(command: str, backends: Sequence[str]) -> None:
    require_root(command)
    require_binaries(KERNEL_RUN_BINARIES)
    for backend in dict.fromkeys(backends):
        require_binaries(BACKEND_BINARIES[backend])


def _check_rules(spec: Any) -> None:
    from experiments.spec import check_rules

    check_rules(spec)


def cmd_run(args: argparse.Namespace) -> int:
    """Each spec on the kernel, then the model fed what the gateway received; compared."""
    specs = load_specs(args.specs, args.backend)
    _kernel_preflight("run", [s.backend for s in specs])
    model_problems: dict[int, UserError] = {}
    for i, spec in enumerate(specs):
        try:
            _check_rules(spec)
        except UserError as e:      # reported after the kernel had its say on the same rules
            model_problems[i] = e
    console = _console()
    results = Path(args.out) if args.out else Path("results")

    def one(i: int) -> tuple[str, bool]:
        return _run_one(specs[i], model_problems.get(i), results, args, console)

    clean = True
    for text, spec_clean in _in_order(len(specs), args.jobs, one):
        sys.stdout.write(text)
        sys.stdout.flush()
        clean = clean and spec_clean
    return OK if clean else NOT_CLEAN


def _run_one(spec: Any, model_problem: UserError | None, results: Path,
             args: argparse.Namespace, console: Any) -> tuple[str, bool]:
    """One spec: kernel run, judgement, bundle. Returns what to print and whether it is clean."""
    import shutil

    from experiments.judging.judgement import judge_observed
    from experiments.kernel.run import run_on_kernel
    from experiments.records.bundle import observed_from, write_bundle
    from experiments.records.report import to_jsonable
    from topologies.hostexec import CommandError

    workdir = Path(tempfile.mkdtemp(prefix=f"natlab-{spec.name}-"))
    try:
        try:
            obs = run_on_kernel(spec, workdir=workdir)
        except CommandError as e:
            raise UserError(f"{spec.path}: {e}") from None
        except UserError as e:
            raise UserError(f"{spec.path}: {e}") from None
        if model_problem is not None:
            raise model_problem
        observed = observed_from(obs)
        judgement = judge_observed(spec, observed)
        bundle = write_bundle(results, spec, obs, observed, judgement)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        return json.dumps(to_jsonable({
            "name": spec.name, "spec": spec.path, "backend": spec.backend,
            "run_id": obs.run_id, "verdict": judgement.status,
            "expect": {"status": judgement.expect.status,
                       "failures": list(judgement.expect.failures)},
            "diffs": [d.to_json() for d in judgement.diffs],
            "xfail": spec.xfail,
            "kernel": {
                "conntrack": obs.final_conntrack_lines,
                "checkpoints": {s.name: list(s.lines) for s in obs.checkpoints},
                "received": obs.received,
            },
            "model": {"conntrack": list(judgement.model_conntrack)},
            "bundle": bundle,
        }), separators=(",", ":")) + "\n", judgement.clean
    with console.capture() as captured:
        _show_run(console, spec, obs, judgement, bundle, args.verbose)
    return captured.get(), judgement.clean


def _in_order(count: int, jobs: int, one: Callable[[int], tuple[str, bool]]
              ) -> Iterator[tuple[str, bool]]:
    """`one(i)` for i in 0..count-1, results in that order. With jobs > 1, up to `jobs` of
    them run at once, each in a forked worker process (a run owns its namespaces and its
    SIGINT handling: on Ctrl-C or an error every running worker is interrupted, tears its run
    down, and is waited for). A worker's error is raised when its turn comes."""
    if jobs <= 1 or count <= 1:
        for i in range(count):
            yield one(i)
        return
    import multiprocessing
    import signal
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("fork")
    running: dict[Any, tuple[int, Any]] = {}
    done: dict[int, tuple[Any, ...]] = {}
    todo, turn = 0, 0
    try:
        while turn < count:
            while todo < count and len(running) < jobs:
                reader, writer = ctx.Pipe(duplex=False)
                sys.stdout.flush()
                sys.stderr.flush()
                # SIGINT stays blocked until the worker has its own handler.
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                try:
                    proc = ctx.Process(target=_worker, args=(one, todo, writer))
                    proc.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
                writer.close()
                running[reader] = (todo, proc)
                todo += 1
            readable: list[Any] = wait(list(running))
            for ready in readable:
                i, proc = running.pop(ready)
                try:
                    done[i] = ready.recv()
                except EOFError:
                    proc.join()
                    done[i] = ("bug", f"the worker of spec #{i + 1} died ({proc.exitcode})")
                ready.close()
                proc.join()
            while turn in done:
                kind, *value = done.pop(turn)
                turn += 1
                if kind == "ok":
                    yield value[0], value[1]
                elif kind == "user":
                    raise UserError(value[0])
                elif kind == "interrupted":
                    raise KeyboardInterrupt
                else:
                    raise RuntimeError(f"a natlab worker failed:\n{value[0]}")
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # wait for their teardown
        try:
            for _, proc in running.values():
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGINT)
            for _, proc in running.values():
                proc.join()
        finally:
            signal.signal(signal.SIGINT, previous)


def _worker(one: Callable[[int], tuple[str, bool]], i: int, writer: Any) -> None:
    """A forked worker of `natlab run -j`: run spec `i`, send back the outcome."""
    import signal
    import traceback

    def interrupt_once(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut teardown
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt_once)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    result: tuple[Any, ...]
    try:
        text, clean = one(i)
        result = ("ok", text, clean)
    except UserError as e:
        result = ("user", str(e))
    except KeyboardInterrupt:
        result = ("interrupted",)
    except BaseException:  # noqa: BLE001 - a bug: its traceback goes to the parent
        result = ("bug", traceback.format_exc())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import contextlib

    with contextlib.suppress(OSError):  # the parent is gone
        writer.send(result)
    writer.close()


def _show_run(console: Any, spec: Any, obs: Any, judgement: Any, bundle: Path,
              verbose: bool) -> None:
    from experiments.records.report import conntrack_table, received_table, side_by_side

    _heading(console, spec, "kernel and model")
    for snap in obs.checkpoints:
        console.print(conntrack_table(list(snap.lines),
                                      f"kernel: conntrack at checkpoint {snap.name!r}"))
    console.print(side_by_side(list(judgement.kernel_conntrack),
                               list(judgement.model_conntrack), list(judgement.diffs)))
    console.print(received_table(obs.received, "kernel: received by the hosts"))
    if verbose:
        for journey in judgement.prediction.journeys:
            console.print(journey.render(), markup=False)
    style = {"MATCH": "bold green", "XFAIL": "bold yellow"}.get(judgement.status, "bold red")
    console.print(f"[{style}]{judgement.status}[/{style}]  expect: {judgement.expect.status}")
    for failure in judgement.expect.failures:
        console.print(f"  expect: {failure}", markup=False)
    if judgement.xfail:
        console.print(f"  known divergence: {judgement.xfail}", markup=False)
    for note in judgement.notes:
        console.print(f"  note: {note}", markup=False)
    console.print(f"bundle: {bundle}", markup=False)


def cmd_judge(args: argparse.Namespace) -> int:
    judge: Callable[[Path], Any] = _lazy("experiments.records.bundle", "judge", "judge")
    bundle = Path(args.bundle)
    if not bundle.exists():
        raise UserError(f"{bundle}: no such bundle")
    verdict = judge(bundle)
    render = getattr(verdict, "render", None)
    print(render() if callable(render) else verdict)
    status = getattr(verdict, "status", "MATCH")
    return OK if status in ("MATCH", "XFAIL") else NOT_CLEAN


def cmd_clean(args: argparse.Namespace) -> int:
    require_root("clean")
    from topologies.sweep import sweep

    try:
        report = sweep(args.run_id)
    except ValueError as e:
        raise UserError(str(e)) from None
    print(report.summary())
    return NOT_CLEAN if report.errors else OK


def cmd_bench(args: argparse.Namespace) -> int:
    bench_main: Callable[[list[str]], int] = _lazy("experiments.bench", "main", "bench")
    return bench_main(list(args.args))


def cmd_up(args: argparse.Namespace) -> int:
    from experiments.spec import load_spec
    from topologies.presets import PRESETS

    spec = None
    if args.topology in PRESETS:
        topology = PRESETS[args.topology]
    else:
        try:
            (path,) = resolve_spec_args([args.topology])
        except (UserError, ValueError):
            known = ", ".join(sorted(PRESETS))
            raise UserError(f"{args.topology!r} is neither a topology preset ({known}) nor a "
                            "spec") from None
        spec = load_spec(path, backend=args.backend)
        topology = spec.topology
    backend = args.backend or (spec.backend if spec is not None else "iptables")
    rules, nft = (spec.rules, spec.nft) if spec is not None else ("", None)
    if args.rules is not None:
        try:
            text = Path(args.rules).read_text()
        except OSError as e:
            raise UserError(f"{args.rules}: cannot read the rules: {e.strerror or e}") from None
        rules, nft = (text, None) if backend != "nft" else ("", text)
    _kernel_preflight("up", [backend])
    from experiments.kernel.rules import load_rules, set_sysctls
    from topologies.mininet_net import running

    with running(topology) as net:
        if spec is not None:
            for host, text in spec.host_rules.items():
                load_rules(net.host(host), backend, text)
        if rules.strip() or (nft or "").strip():
            load_rules(net.gateway, backend, rules, nft)
        if spec is not None and spec.sysctls:
            set_sysctls(net.gateway, spec.sysctls)
        if sys.stdin.isatty() and not args.simple:
            print(f"topology {topology.name} is up: Mininet's CLI, hosts by their names "
                  f"({', '.join(h.name for h in topology.hosts)}); e.g. "
                  f"`{topology.gateway} conntrack -L`. `exit` tears everything down.")
            net.mininet_cli()
            return OK
        return interactive(net, sys.stdin, sys.stdout)


_SHELL_HELP = """\
  HOST COMMAND [ARGS...]   run a command inside HOST (no shell: an argument list), e.g.
                           laptop ping -c 1 203.0.113.10
  conntrack                the gateway's table (conntrack -L)
  hosts                    the hosts, their addresses, and how to enter them from elsewhere
  help                     this text
  exit | quit | Ctrl-D     tear everything down and leave"""


def interactive(net: Any, stdin: Any, stdout: Any) -> int:
    """A small shell over a running topology: commands run in a host's namespace with the
    terminal attached. (Mininet's own CLI knows our hosts only by their run-scoped node
    names, so natlab speaks topology names instead.)"""
    import shlex

    def say(text: str) -> None:
        stdout.write(text + "\n")
        stdout.flush()

    def hosts() -> None:
        for name, handle in net.hosts.items():
            addrs = " ".join(f"{i.name}={i.address}" for i in net.topology.host(name).interfaces)
            say(f"  {name:<10} {addrs:<48} enter: mnexec -a {handle.pid} bash")

    say(f"natlab: topology {net.topology.name} is up (run {net.run_id}); type help")
    hosts()
    interactive_tty = stdin.isatty()
    while True:
        if interactive_tty:
            stdout.write("natlab> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        try:
            words = shlex.split(line)
        except ValueError as e:
            say(f"natlab: {e}")
            continue
        if not words:
            continue
        if words[0] in ("exit", "quit"):
            break
        if words[0] == "help":
            say(_SHELL_HELP)
            continue
        if words[0] == "hosts":
            hosts()
            continue
        if words[0] == "conntrack":
            words = [net.topology.gateway, "conntrack", "-L", *words[1:]]
        if words[0] not in net.hosts or len(words) < 2:
            say(f"natlab: {words[0]!r}: expected HOST COMMAND (hosts: "
                f"{', '.join(net.hosts)}); type help")
            continue
        try:
            stdout.flush()
            proc = net.host(words[0]).popen(words[1:], stdin=None, stdout=None, stderr=None)
            try:
                code = proc.wait()
            except KeyboardInterrupt:
                code = proc.wait()
        except Exception as e:  # noqa: BLE001 - one failed command must not end the session
            say(f"natlab: {e}")
            continue
        if code:
            say(f"natlab: exit status {code}")
    say("natlab: tearing down")
    return OK


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
    from experiments.spec import BACKENDS

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
            "errors. Exit status 0 only when every spec is MATCH or XFAIL and no expectation "
            "fails.",
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

    p = add("list", "list the built-in specs",
            "The specs shipped with natlab, with their one-line descriptions. Any of them "
            "can be given by name where a SPEC is expected.", cmd_list)
    p.add_argument("--json", action="store_true", help="one JSON object per spec per line")

    p = add("judge", "re-judge a result bundle (no root)",
            "Recompute the verdict of a recorded run from its bundle: the comparison is a "
            "pure function of the recorded observation and prediction.", cmd_judge)
    p.add_argument("bundle", metavar="BUNDLE", help="a result bundle directory")

    p = add("clean", "remove what crashed natlab runs left behind (root)",
            "Find processes, links and state files of dead natlab runs (by natlab's own run "
            "ids only) and remove them. Live runs are left alone unless named.", cmd_clean)
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
        return status
    except UserError as e:
        print(f"natlab: {' '.join(str(e).split())}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print("natlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`natlab list | head`): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return OK


if __name__ == "__main__":
    sys.exit(main())
