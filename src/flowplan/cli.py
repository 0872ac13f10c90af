"""The ``flowplan`` command: run, resume and inspect pipelines from a shell.

Place in the data flow: the application on top — it imports a target's definitions
(:mod:`flowplan._cli_target`), plans and executes them with the SQLite store
(``.flowplan/runs.db`` by default) and draws runs with :mod:`flowplan.report` and
:mod:`flowplan.progress`. Being an application, it may configure structlog (``--log-format``);
the library never does.

Commands::

    flowplan run TARGET        run a pipeline (TARGET is FILE_OR_MODULE[:obj])
    flowplan resume RUN_ID     run again what did not succeed (RUN_ID: id, prefix or "last")
    flowplan runs              the run history
    flowplan show RUN_ID       one run, task by task
    flowplan graph TARGET      the DAG as mermaid, dot or an ascii tree
    flowplan explain TARGET    what a run would do, and why (a dry run)

Exit codes: 0 success, 1 the run failed, 2 a usage or definition error (one line on stderr;
``--verbose`` adds the traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from flowplan._cli_deps import check_context, load_context
from flowplan._cli_runs import (
    UsageError,
    find_run,
    open_store,
    read_deps,
    read_target,
    record_deps,
    record_target,
)
from flowplan._cli_target import Target, import_location, load_target, split_target
from flowplan._estimate import store_history
from flowplan._html import render_html
from flowplan._tally import reused_names
from flowplan.cache import MemoryCache, ResultCache, SqliteCache
from flowplan.errors import FlowplanError
from flowplan.hooks import Hook
from flowplan.interpreter import execute
from flowplan.plan import plan
from flowplan.report import (
    format_duration,
    format_table,
    format_time,
    root_cause_lines,
    snapshot_table,
    status_counts,
    to_ascii,
    to_dot,
    to_mermaid,
)
from flowplan.snapshot import Snapshot
from flowplan.store import RunInfo, SqliteStateStore

if TYPE_CHECKING:
    from flowplan.graph import TaskGraph

__all__ = ["main"]

DEFAULT_STORE = os.path.join(".flowplan", "runs.db")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--store",
        default=os.environ.get("FLOWPLAN_STORE", DEFAULT_STORE),
        metavar="PATH",
        help="the SQLite run store (default: $FLOWPLAN_STORE or %(default)s)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    running = _Parser(add_help=False)
    running.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="live progress on stderr (default: on when stderr is a terminal)",
    )
    running.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=None,
        help="structured logs of every event on stderr",
    )
    running.add_argument("--max-workers", type=int, default=None, metavar="N")
    running.add_argument(
        "--deps",
        default=None,
        metavar="[FILE_OR_MODULE:]NAME",
        help="the RunContext for tasks that take one: NAME (in the target's module) or "
        "FILE_OR_MODULE:NAME, a function returning your deps or a RunContext (resume reuses "
        "the run's own --deps unless given)",
    )
    targeted = _Parser(add_help=False)
    targeted.add_argument("target", metavar="TARGET", help="FILE_OR_MODULE[:obj]")
    targeted.add_argument("--dag", help="the DAG, when TARGET is an Engine with several")
    cached = _Parser(add_help=False)
    cached.add_argument(
        "--cache",
        default=os.environ.get("FLOWPLAN_CACHE"),
        metavar="PATH",
        help="a SQLite result cache for cache=True / effect='pure' tasks (default: "
        "$FLOWPLAN_CACHE, else no result cache)",
    )
    only = _Parser(add_help=False)
    only.add_argument(
        "--only",
        action="append",
        metavar="TASK",
        help="run only TASK and what it needs (repeatable)",
    )

    parser = _Parser(
        prog="flowplan",
        description="Run, resume and inspect flowplan pipelines.",
        epilog="TARGET is a file or module with an optional :obj, e.g. pipeline.py or "
        "pkg.etl:flow. Exit codes: 0 success, 1 run failed, 2 usage or definition error.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    sub.add_parser(
        "run", parents=[common, running, targeted, only, cached], help="run a pipeline"
    ).set_defaults(func=_cmd_run)
    resume = sub.add_parser(
        "resume",
        parents=[common, running, cached],
        help="run again what did not succeed in a run",
        description="Run again what did not succeed in a run, importing the target (and "
        "--deps) the run recorded in the store. A run store is trusted like code: resuming "
        "imports and runs whatever file it names. A recorded file outside the current "
        "directory is shown and refused unless --trust-path is given; --target imports "
        "definitions of your choosing instead.",
    )
    resume.add_argument("run_id", metavar="RUN_ID", help="a run id, a unique prefix, or 'last'")
    resume.add_argument(
        "--rerun", action="append", metavar="TASK", help="also rerun TASK and its dependents"
    )
    resume.add_argument(
        "--rerun-changed",
        action="store_true",
        help="also rerun the succeeded tasks whose code changed since (and their dependents)",
    )
    resume.add_argument("--target", help="the target to import (for runs not started here)")
    resume.add_argument(
        "--trust-path",
        action="store_true",
        help="import the target or --deps the store recorded even when it lies outside the "
        "current directory (the store is trusted like code)",
    )
    resume.add_argument("--dag", help="the DAG, when the target is an Engine with several")
    resume.set_defaults(func=_cmd_resume)
    runs = sub.add_parser("runs", parents=[common], help="list recent runs")
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="(default: %(default)s)")
    runs.set_defaults(func=_cmd_runs)
    show = sub.add_parser("show", parents=[common], help="show one run, task by task")
    show.add_argument("run_id", metavar="RUN_ID", help="a run id, a unique prefix, or 'last'")
    show.set_defaults(func=_cmd_show)
    report = sub.add_parser(
        "report", parents=[common], help="write one run as a self-contained HTML page"
    )
    report.add_argument("run_id", metavar="RUN_ID", help="a run id, a unique prefix, or 'last'")
    report.add_argument(
        "--html", required=True, metavar="FILE", help="where to write the page ('-': stdout)"
    )
    report.add_argument(
        "--target",
        help="the definitions to draw the DAG from (default: the run's own, when it lies "
        "inside the current directory)",
    )
    report.add_argument("--dag", help="the DAG, when the target is an Engine with several")
    report.set_defaults(func=_cmd_report)
    graph = sub.add_parser("graph", parents=[common, targeted], help="draw the DAG")
    graph.add_argument("--format", choices=["mermaid", "dot", "ascii"], default="mermaid")
    graph.add_argument("--run", metavar="RUN_ID", help="color the tasks by this run's states")
    graph.add_argument(
        "--critical-path",
        action="store_true",
        help="highlight the critical path, estimated from the store's past runs of this DAG",
    )
    graph.set_defaults(func=_cmd_graph)
    explain = sub.add_parser(
        "explain", parents=[common, targeted, only, cached], help="what a run would do, and why"
    )
    explain.add_argument("--run", metavar="RUN_ID", help="plan a resume of this run")
    explain.add_argument(
        "--estimate",
        action="store_true",
        help="end with how long the run should take and its critical path, from the store's "
        "past runs of this DAG",
    )
    explain.add_argument(
        "--max-workers",
        type=int,
        default=None,
        metavar="N",
        help="with --estimate: schedule N tasks at a time (default: unlimited)",
    )
    explain.set_defaults(func=_cmd_explain)
    return parser


# -- running ------------------------------------------------------------------------------------
def _hooks(args: argparse.Namespace) -> list[Hook]:
    hooks: list[Hook] = []
    show_progress = args.progress if args.progress is not None else sys.stderr.isatty()
    if show_progress:
        from flowplan.progress import ProgressHook

        hooks.append(ProgressHook())
    if args.log_format is not None:
        import structlog

        from flowplan.hooks import StructlogHook

        renderer: structlog.typing.Processor = (
            structlog.processors.JSONRenderer()
            if args.log_format == "json"
            else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        )
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            cache_logger_on_first_use=False,
        )
        hooks.append(StructlogHook())
    return hooks


def _execute(
    args: argparse.Namespace,
    store: SqliteStateStore,
    target: Target,
    *,
    snapshot: Snapshot | None = None,
    targets: Sequence[str] | None = None,
    rerun: Sequence[str] = (),
    resumed_from: str | None = None,
    deps_workdir: str | None = None,
) -> int:
    planned = plan(
        target.graph,
        snapshot,
        targets=targets,
        rerun=rerun,
        cache=_cache(args),
        rerun_changed=getattr(args, "rerun_changed", False),
    )
    context = None if args.deps is None else load_context(args.deps, target, workdir=deps_workdir)
    shown = split_target(args.target or target.ref)[0]
    check_context(planned, context, source=shown)  # before anything is recorded
    store.create_run(planned, dag_name=target.label, targets=targets, resumed_from=resumed_from)
    record_target(args.store, planned.run_id, target.ref, args.dag)
    if args.deps is not None:
        record_deps(args.store, planned.run_id, args.deps)
    workers = args.max_workers if args.max_workers is not None else target.max_workers
    result = execute(
        planned,
        store=store,
        hooks=_hooks(args),
        fail_fast=target.fail_fast,
        max_workers=workers,
        context=context,
    )
    info = store.get_run(planned.run_id)
    took = format_duration(_duration_ms(info))
    counts = status_counts(result, run_started_at=info.created_at)  # as `runs` counts it
    print(f"run {info.run_id} {info.status} in {took}: {counts}")
    print(snapshot_table(result, run_started_at=info.created_at))
    stale = [f"{n} ({why})" for n, why in planned.code_changed.items() if n in planned.reused]
    if stale:
        print(
            f"reused although changed since they succeeded: {', '.join(stale)}; "
            f"flowplan resume {info.run_id[:12]} --rerun-changed runs them again"
        )
    if info.status != "succeeded":
        print(f"fix the cause, then: flowplan resume {info.run_id[:12]}")
        return 1
    return 0


def _cache(args: argparse.Namespace, *, create: bool = True) -> ResultCache | None:
    """The ``--cache`` result cache; a missing file is an empty cache (created only to run)."""
    if args.cache is None:
        return None
    if not create and not os.path.exists(args.cache):
        return MemoryCache()
    return SqliteCache(args.cache)


def _cmd_run(args: argparse.Namespace) -> int:
    target = load_target(args.target, dag=args.dag)
    with open_store(args.store, create=True) as store:
        return _execute(args, store, target, targets=args.only)


def _cmd_resume(args: argparse.Namespace) -> int:
    with open_store(args.store, create=False) as store:
        info = find_run(store, args.run_id)
        recorded = read_target(args.store, info.run_id)
        if args.target is not None:
            target = load_target(args.target, dag=args.dag)
        elif recorded is None:
            raise UsageError(
                f"run {info.run_id[:12]} was not started by the flowplan command, so its "
                "definitions are unknown; pass them with --target FILE_OR_MODULE[:obj]"
            )
        else:
            ref, workdir, dag = recorded
            args.dag = args.dag or dag
            _check_recorded_path(args, info.run_id, "target", ref, workdir)
            target = load_target(ref, dag=args.dag, workdir=workdir)
        deps_workdir = None  # a --deps given now is read from here
        if args.deps is None:  # else the one the resumed run was given, from where it ran
            args.deps = read_deps(args.store, info.run_id)
            deps_workdir = None if recorded is None else recorded[1]
            if args.deps is not None and split_target(args.deps)[1] is not None:
                where = deps_workdir or os.getcwd()
                _check_recorded_path(args, info.run_id, "--deps", args.deps, where)
        snapshot = store.load(info.run_id)
        return _execute(
            args,
            store,
            target,
            snapshot=snapshot,
            targets=info.targets,
            rerun=args.rerun or (),
            resumed_from=info.run_id,
            deps_workdir=deps_workdir,
        )


def _check_recorded_path(
    args: argparse.Namespace, run_id: str, what: str, ref: str, workdir: str
) -> None:
    """Before importing code a run store recorded: one outside the current directory tree is
    named on stderr, and refused unless ``--trust-path`` (a crafted store must not run code
    the user never chose)."""
    location = import_location(ref, workdir)
    here = Path.cwd().resolve()
    if location.is_relative_to(here):
        return
    if args.trust_path:
        print(
            f"flowplan: importing {location} (the {what} run {run_id[:12]} recorded in "
            f"{args.store}, outside the current directory {here})",
            file=sys.stderr,
        )
        return
    raise UsageError(
        f"the run store {args.store} records {location} as the {what} of run {run_id[:12]}, "
        f"outside the current directory {here}; resuming would import it and run its code. A "
        "run store is trusted like code: pass --trust-path if you trust this store, or "
        "--target FILE_OR_MODULE[:obj] to import definitions of your choosing"
    )


# -- inspecting ---------------------------------------------------------------------------------
def _duration_ms(info: RunInfo) -> float | None:
    return None if info.finished_at is None else (info.finished_at - info.created_at) * 1000


def _cmd_runs(args: argparse.Namespace) -> int:
    with open_store(args.store, create=False) as store:
        runs = store.list_runs()[-max(args.limit, 1) :]
        rows = []
        for info in reversed(runs):
            resumed = f" (resumes {info.resumed_from[:12]})" if info.resumed_from else ""
            if info.damage is not None:  # its row cannot be read: say why, list the others
                tasks = f"damaged: {info.damage}"
            else:
                snapshot = store.load(info.run_id)
                tasks = status_counts(snapshot, run_started_at=info.created_at) + resumed
            rows.append(
                [
                    info.run_id[:12],
                    info.dag_name or "-",
                    info.status,
                    format_time(info.created_at),
                    format_duration(_duration_ms(info)),
                    tasks,
                ]
            )
    if not rows:
        print("no runs yet")
        return 0
    print(format_table(["RUN", "DAG", "STATUS", "STARTED", "DURATION", "TASKS"], rows))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    with open_store(args.store, create=False) as store:
        info = find_run(store, args.run_id)
        snapshot = store.load(info.run_id)
    print(f"run       {info.run_id}")
    print(f"dag       {info.dag_name or '-'}")
    print(f"status    {info.status}")
    print(f"started   {format_time(info.created_at)}")
    print(f"duration  {format_duration(_duration_ms(info))}")
    if info.resumed_from:
        print(f"resumes   {info.resumed_from}")
    if info.targets:
        print(f"targets   {', '.join(info.targets)}")
    print()
    print(snapshot_table(snapshot, run_started_at=info.created_at))
    causes = root_cause_lines(snapshot)  # root causes apart from the cascades they caused
    if causes:
        print()
        print("\n".join(causes))
    return 0


def _report_graph(
    args: argparse.Namespace, recorded: tuple[str, str, str | None] | None
) -> TaskGraph | None:
    """The graph to draw a run with: ``--target``'s, or the run's own recorded target when it
    lies inside the current directory (a store is not trusted to name code to import); else
    ``None``, with a note on stderr."""
    if args.target is not None:
        return load_target(args.target, dag=args.dag).graph
    if recorded is None:
        print(
            "flowplan: note: the run was not started by the flowplan command; pass --target "
            "FILE_OR_MODULE[:obj] to draw its DAG",
            file=sys.stderr,
        )
        return None
    ref, workdir, dag = recorded
    source, _ = split_target(ref)
    here = os.path.realpath(os.getcwd())
    path = os.path.realpath(os.path.join(workdir, source))
    if os.path.exists(path) and os.path.commonpath([here, path]) != here:
        print(
            f"flowplan: note: not importing {path} (outside the current directory) to draw "
            "the DAG; pass --target to draw it",
            file=sys.stderr,
        )
        return None
    return load_target(ref, dag=args.dag or dag, workdir=workdir).graph


def _cmd_report(args: argparse.Namespace) -> int:
    with open_store(args.store, create=False) as store:
        info = find_run(store, args.run_id)
        snapshot = store.load(info.run_id)
        recorded = read_target(args.store, info.run_id)
    graph = _report_graph(args, recorded)
    reused = reused_names(snapshot.records, info.created_at)  # as status_counts counts them
    facts = [
        ("dag", info.dag_name or "-"),
        ("started", format_time(info.created_at)),
        ("duration", format_duration(_duration_ms(info))),
    ]
    if info.resumed_from:
        facts.append(("resumes", info.resumed_from))
    page = render_html(
        graph,
        snapshot,
        reused=reused,
        facts=facts,
        status=info.status,
        counts=status_counts(snapshot, run_started_at=info.created_at),
        root_lines=root_cause_lines(snapshot),
    )
    if args.html == "-":
        sys.stdout.write(page)
    else:
        with open(args.html, "w", encoding="utf-8", errors="backslashreplace") as out:
            out.write(page)
        print(f"wrote {args.html}")
    return 0


def _load_snapshot(args: argparse.Namespace) -> Snapshot | None:
    if args.run is None:
        return None
    with open_store(args.store, create=False) as store:
        return store.load(find_run(store, args.run).run_id)


def _history(args: argparse.Namespace, target: Target) -> tuple[Snapshot, ...]:
    """The store's newest runs of ``target``'s DAG (none when there is no store yet)."""
    if not os.path.exists(args.store):
        return ()
    with open_store(args.store, create=False) as store:
        return store_history(store, dag_name=target.label)


def _cmd_graph(args: argparse.Namespace) -> int:
    target = load_target(args.target, dag=args.dag)
    snapshot = _load_snapshot(args)
    path: tuple[str, ...] = ()
    if args.critical_path:
        path = plan(target.graph, run_id="estimate").estimate(_history(args, target)).critical_path
    if args.format == "mermaid":
        print(to_mermaid(target.graph, snapshot=snapshot, critical_path=path))
    elif args.format == "dot":
        print(to_dot(target.graph, snapshot=snapshot, critical_path=path))
    else:
        print(to_ascii(target.graph, snapshot=snapshot, critical_path=path))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    target = load_target(args.target, dag=args.dag)
    snapshot = _load_snapshot(args)
    planned = plan(target.graph, snapshot, targets=args.only, cache=_cache(args, create=False))
    if not args.estimate:
        print(planned.explain())  # the library's explanation, word for word
        return 0
    print(planned.explain(durations=_history(args, target), max_workers=args.max_workers))
    return 0


# -- entry point --------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = "; ".join(_one_line(e) for e in exc.exceptions)
        return f"{exc.message}: {inner}"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return (
        first if isinstance(exc, UsageError | FlowplanError) else f"{type(exc).__name__}: {first}"
    )


def _printable_streams() -> None:
    """Print any text: task names, errors and paths from non-UTF-8 bytes (lone surrogates) are
    written as backslash escapes instead of crashing a strict UTF-8 stdout/stderr."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flowplan`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit
    code: 0 success, 1 the run failed, 2 a usage or definition error, 130 interrupted."""
    verbose = "-v" in (argv or sys.argv[1:]) or "--verbose" in (argv or sys.argv[1:])
    _printable_streams()
    try:
        args = _parser().parse_args(argv)
        code: int = args.func(args)
    except BrokenPipeError:  # e.g. `flowplan graph ... | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print("flowplan: interrupted; resume with 'flowplan resume last'", file=sys.stderr)
        return 130
    except (UsageError, FlowplanError, OSError) as exc:
        if verbose:
            traceback.print_exc()
        print(f"flowplan: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    return code


if __name__ == "__main__":  # pragma: no cover - python -m flowplan.cli
    sys.exit(main())
