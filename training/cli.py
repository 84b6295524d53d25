"""The `recsys` command: a thin face over the trainer and serving (recommend, serve, export)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import logging
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.config import load_config
from recsys.errors import ConfigError, GateRefusedError, LockedError, RecsysError

# Exit codes a scheduler can act on.
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug or an environment failure: look at the traceback
EXIT_BAD_INPUT = 2  # bad configuration or input files: fix them and rerun
EXIT_GATE_REFUSED = 3  # the new model is worse: the published one stays current
EXIT_LOCKED = 4  # another run holds the model directory: nothing was done

log = logging.getLogger("recsys")
_FILE_ERRORS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENOENT,
        errno.ENAMETOOLONG,
        errno.EFBIG,
    }
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `recsys` command line; return the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:
        # faiss logs every CPU feature it probes for at INFO: noise for a shop's terminal.
        logging.getLogger("faiss").setLevel(logging.WARNING)
    try:
        code: int = args.run(args)
        return code
    except GateRefusedError as exc:
        print(f"recsys: refused: {exc}", file=sys.stderr)
        return EXIT_GATE_REFUSED
    except LockedError as exc:
        print(f"recsys: locked: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except RecsysError as exc:
        print(f"recsys: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        # A full disk, a read-only or unwritable folder, a file where a folder should be: the
        # shop's to fix, said in a line (the published model stays current).
        if exc.errno not in _FILE_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"recsys: error: {where}{exc.strerror or exc}; fix it and rerun", file=sys.stderr)
        return EXIT_BAD_INPUT


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys", description="Personalized recommendations for e-commerce shops."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    check = sub.add_parser(
        "check", help="load and validate the logs, build matrices, print the load report"
    )
    check.add_argument("--config", required=True, type=Path, help="the shop's TOML config")
    check.add_argument(
        "--on-error",
        choices=["strict", "quarantine"],
        help="override validation.on_error: raise on bad rows, or set them aside",
    )
    check.add_argument("--rejects", type=Path, help="folder for rejected rows (default: config)")
    check.set_defaults(run=_check)

    train = sub.add_parser(
        "train", help="the nightly job: load, validate, fit, evaluate, gate and publish a model"
    )
    train.add_argument("--config", required=True, type=Path, help="the shop's TOML config")
    train.add_argument("--out", type=Path, help="model directory (default: output.models)")
    train.add_argument(
        "--force", action="store_true", help="publish even if the evaluation gate refuses"
    )
    train.add_argument(
        "--on-error", choices=["strict", "quarantine"], help="override validation.on_error"
    )
    _engine_options(
        train, "fit the models on this machine, or on Apache Spark (same gate, same directory)"
    )
    train.set_defaults(run=_train)

    ev = sub.add_parser(
        "evaluate",
        help="compare the engine, its strategies and baselines offline on a time split",
    )
    ev.add_argument(
        "--config",
        required=True,
        type=Path,
        action="append",
        help="the shop's TOML config; repeat to compare configurations (A/B) on one split",
    )
    held = ev.add_mutually_exclusive_group()
    held.add_argument("--holdout-days", type=float, help="hold out the last N days")
    held.add_argument(
        "--holdout-share", type=float, help="hold out the last share of the time span (e.g. 0.1)"
    )
    ev.add_argument("--k", help="comma-separated cut-offs (default: evaluation.ks, e.g. 10,20)")
    ev.add_argument("--out", type=Path, help="report folder (default: reports/<config name>)")
    ev.add_argument(
        "--on-error", choices=["strict", "quarantine"], help="override validation.on_error"
    )
    ev.add_argument(
        "--validation",
        action="store_true",
        help="score the period before the holdout instead, never reading the holdout "
        "(to choose weights without overfitting the test period)",
    )
    ev.add_argument("--no-sessions", action="store_true", help="skip the session protocol (faster)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    ev.set_defaults(run=_evaluate)

    tune = sub.add_parser(
        "tune",
        help="choose the blend weights on the period before the evaluation's holdout",
    )
    tune.add_argument("--config", required=True, type=Path, help="the shop's TOML config")
    held = tune.add_mutually_exclusive_group()
    held.add_argument("--holdout-days", type=float, help="the evaluation holds out N days")
    held.add_argument("--holdout-share", type=float, help="... or this share of the time span")
    tune.add_argument("--write", type=Path, help="also write the [blend] section to this file")
    tune.add_argument(
        "--grid", type=Path, help="also write every value tried and its score (Markdown)"
    )
    tune.add_argument(
        "--on-error", choices=["strict", "quarantine"], help="override validation.on_error"
    )
    tune.add_argument("--no-progress", action="store_true", help="no progress bar")
    tune.set_defaults(run=_tune)

    ab = sub.add_parser(
        "ab-report",
        help="compare the variants of an online A/B experiment from exposures and later events",
    )
    ab.add_argument("--config", required=True, type=Path, help="the shop's TOML config")
    ab.add_argument("--experiment", required=True, help="the experiment's name")
    ab.add_argument(
        "--exposures",
        required=True,
        type=Path,
        nargs="+",
        help="exposure logs: JSON-lines files, folders of them, or globs",
    )
    ab.add_argument(
        "--events", type=Path, nargs="+", help="event files (default: the config's events)"
    )
    ab.add_argument("--window", default="7d", help="attribution window: 7d, 36h or days (7)")
    ab.add_argument("--control", help="the control variant (default: 'control', else the first)")
    ab.add_argument("--out", type=Path, help="report folder (default: reports/ab-<experiment>)")
    ab.set_defaults(run=_ab_report)

    rec = sub.add_parser(
        "recommend", help="print recommendations from the published model (serving's answers)"
    )
    rec.add_argument("--models", required=True, type=Path, help="the model directory")
    rec.add_argument("--user", help="a user id (leave out for an anonymous visitor)")
    rec.add_argument("--session", help="comma-separated item ids viewed in this visit, newest last")
    rec.add_argument("--item", help="a product page: print similar and complementary items")
    rec.add_argument("--n", type=int, default=10)
    rec.set_defaults(run=_recommend)

    ref = sub.add_parser(
        "config-reference", help="write the configuration reference (every key) as Markdown"
    )
    ref.add_argument("--out", type=Path, help="file to write (default: print it)")
    ref.set_defaults(run=_config_reference)

    srv = sub.add_parser(
        "serve", help="answer over HTTP (JSON; OpenAPI docs on /docs), following CURRENT"
    )
    srv.add_argument("--models", required=True, type=Path, help="the model directory")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--workers", type=int, default=1, help="worker processes (use --redis)")
    srv.add_argument(
        "--redis", help="Redis URL for live events shared by every worker (default: in-process)"
    )
    srv.add_argument(
        "--api-key-env",
        default="RECSYS_API_KEY",
        help="environment variable holding the key POST /events requires (unset: no key)",
    )
    srv.add_argument("--exposures", type=Path, help="JSON-lines log of every list shown (A/B)")
    srv.add_argument(
        "--reload-seconds", type=float, default=30.0, help="how often to check CURRENT (0: never)"
    )
    srv.set_defaults(run=_serve)

    exp = sub.add_parser(
        "export", help="write every user's recommendation list (as serving gives it) to a file"
    )
    exp.add_argument("--models", required=True, type=Path, help="the model directory")
    exp.add_argument("--out", required=True, type=Path, help="output file (.parquet/.csv/.jsonl)")
    exp.add_argument("--n", type=int, default=20, help="items per user (default 20)")
    exp.add_argument("--users", type=Path, help="file of user ids (default: every known user)")
    exp.add_argument("--format", choices=["parquet", "csv", "jsonl"], help="default: from --out")
    exp.add_argument("--segment", help="only users of this segment (serving.segment_by)")
    exp.add_argument("--categories", help="comma-separated category ids to restrict lists to")
    exp.add_argument("--max-per-category", type=int, help="at most this many items a category")
    exp.add_argument(
        "--available-only",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave out unavailable items (default: serving.available_only)",
    )
    exp.add_argument(
        "--exclude-purchased",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="leave out bought items nobody rebuys (default: serving.exclude_purchased)",
    )
    exp.add_argument("--with-tier", action="store_true", help="add each user's portrait tier")
    exp.add_argument(
        "--now", type=_moment,
        help="answer as of this time (ISO date/time, UTC unless it says, or Unix seconds; "
        "default: the model's clock): two exports at one time give the same rows",
    )  # fmt: skip
    exp.add_argument("--workers", type=int, help="processes (default: one per core)")
    exp.add_argument("--chunk-size", type=int, default=20_000, help="users per task")
    exp.add_argument("--no-progress", action="store_true", help="no progress bar")
    _engine_options(exp, "local processes, or Apache Spark (--out is then a Parquet folder)")
    exp.add_argument("--partitions", type=int, help="Spark partitions (default: parallelism)")
    exp.set_defaults(run=_export)

    prof = sub.add_parser("profiles", help="write every user's portrait (RFM, tier) to a file")
    prof.add_argument("--models", required=True, type=Path, help="the model directory")
    prof.add_argument("--out", required=True, type=Path, help="output file (.parquet/.csv/.jsonl)")
    prof.add_argument("--format", choices=["parquet", "csv", "jsonl"], help="default: from --out")
    prof.set_defaults(run=_profiles)

    synth = sub.add_parser(
        "synth", help="write the seeded shop-scale synthetic log (RetailRocket format)"
    )
    synth.add_argument("--out", required=True, type=Path, help="folder to write into")
    synth.add_argument("--scale", type=float, default=1.0, help="size factor (1.0 = 2.76M events)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--format", choices=["csv", "csv.gz", "parquet"], default="csv")
    synth.add_argument(
        "--activity",
        choices=["light", "heavy"],
        default="light",
        help="visitor activity: heavy-tailed like a real shop (some visitors with thousands "
        "of events) or light",
    )
    synth.set_defaults(run=_synth)

    quick = sub.add_parser(
        "quickstart",
        help="train on the bundled sample, print three lists and export them, showing each "
        "command it runs (run from the project's root)",
    )
    quick.set_defaults(run=_quickstart)
    return parser


def _engine_options(command: argparse.ArgumentParser, what: str) -> None:
    """--engine local|spark, with Spark's --master and --conf."""
    command.add_argument("--engine", choices=["local", "spark"], default="local", help=what)
    command.add_argument(
        "--master", help="Spark master (default: spark-submit's, or local[*] outside it)"
    )
    command.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark option, e.g. spark.executor.memory=8g (repeatable)",
    )


def _check(args: argparse.Namespace) -> int:
    from training.dataset import build_dataset

    config = load_config(args.config)
    dataset = build_dataset(config, on_error=args.on_error, rejects_dir=args.rejects)
    print(dataset.format())
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from training.job import train

    config = load_config(args.config)
    if args.engine == "spark":
        from training.spark.spark_train import train_spark

        result = train_spark(
            config,
            out=args.out,
            force=args.force,
            on_error=args.on_error,
            master=args.master,
            conf=_spark_conf(args.conf),
        )
    else:
        result = train(config, out=args.out, force=args.force, on_error=args.on_error)
    if result.dataset is not None:
        print(result.dataset.format(timings=False))
    if result.evaluation is not None:
        print(result.evaluation.format())
    if result.gate is not None:
        print(result.gate.message)
    if result.portraits is not None:
        print(result.portraits.format_summary())
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    print(f"timings: {steps}")
    print(f"published version {result.version}: {result.path}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluation.evaluate import default_out, evaluate, format_summary
    from training.evaluation.report import write_report

    configs = [load_config(path) for path in args.config]
    ks = None
    if args.k:
        try:
            ks = [int(k) for k in args.k.split(",")]
        except ValueError:
            raise ConfigError(
                f"--k must be comma-separated whole numbers (got {args.k!r})"
            ) from None
    results = evaluate(
        configs,
        holdout_days=args.holdout_days,
        holdout_share=args.holdout_share,
        ks=ks,
        on_error=args.on_error,
        progress=not args.no_progress,
        validation=args.validation,
        sessions=not args.no_sessions,
    )
    files = write_report(results, args.out or default_out(configs[0]))
    print(format_summary(results))
    print(f"report: {files.markdown} (numbers: {files.json}; {len(files.plots)} plots)")
    return EXIT_OK


def _tune(args: argparse.Namespace) -> int:
    from training.evaluation.tune import tune

    result = tune(
        load_config(args.config),
        holdout_days=args.holdout_days,
        holdout_share=args.holdout_share,
        on_error=args.on_error,
        progress=not args.no_progress,
    )
    print(result.format())
    print("\npaste into the configuration (then confirm with `recsys evaluate`):\n")
    print(result.toml())
    if args.write is not None:
        args.write.write_text(result.toml(), encoding="utf-8")
        print(f"wrote {args.write}")
    if args.grid is not None:
        args.grid.write_text(result.grid_markdown(), encoding="utf-8")
        print(f"wrote the grid to {args.grid}")
    return EXIT_OK


def _ab_report(args: argparse.Namespace) -> int:
    import dataclasses

    from recsys.ingest import load_events
    from serving.exposures import read_exposures
    from training.evaluation.abreport import ab_report, format_ab_report, write_ab_report

    config = load_config(args.config)
    if args.events:
        config = dataclasses.replace(
            config, events=dataclasses.replace(config.events, path=tuple(args.events))
        )
    window = _days(args.window)
    out = args.out or Path("reports") / f"ab-{args.experiment}"
    exposures = read_exposures(args.exposures)
    # Rows the log's validation sets aside go beside the report, not over the trainer's.
    events = load_events(config, rejects_dir=out / "rejects").frame
    shares = None
    for experiment in config.experiments:
        if experiment.name == args.experiment:
            shares = {v.name: v.share for v in experiment.variants}
    try:
        results = ab_report(
            exposures,
            events,
            args.experiment,
            control=args.control,
            window_days=window,
            expected_shares=shares,
        )
    except ValueError as exc:  # an unknown experiment or control, shares that do not fit
        print(f"recsys: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if shares is None:
        results.setdefault("notes", []).append(
            f"{args.experiment} is not in {args.config}: the sample-ratio check assumed equal "
            "shares; add the experiment to the config for its real shares"
        )
    files = write_ab_report(results, out)
    print(format_ab_report(results))
    print(f"report: {files.markdown} (numbers: {files.json})")
    return EXIT_OK


def _days(text: str) -> float:
    """A window as days: '7d', '36h' or a number of days."""
    value = text.strip().lower()
    try:
        if value.endswith("d"):
            days = float(value[:-1])
        elif value.endswith("h"):
            days = float(value[:-1]) / 24
        else:
            days = float(value)
    except ValueError:
        raise ConfigError(f"--window must look like 7d, 36h or 7 (got {text!r})") from None
    if days <= 0:
        raise ConfigError(f"--window must be positive (got {text!r})")
    return days


def _config_reference(args: argparse.Namespace) -> int:
    from recsys.config_reference import reference, write_reference

    if args.out is None:
        print(reference(), end="")
    else:
        print(f"wrote {write_reference(args.out)}")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from serving import http
    except ImportError as exc:
        raise ConfigError(
            f"recsys serve needs the [serve] extra ({exc.name} is missing): "
            "pip install 'recsys[serve]'"
        ) from None
    from recsys.modeldir import current_path

    current_path(args.models)  # a clear ModelDirError now, not in every worker
    if args.workers > 1 and not args.redis:
        log.warning(
            "%d workers without --redis: each keeps its own live events, so a visitor's next "
            "answer may not see what they just did; pass --redis URL",
            args.workers,
        )
    os.environ[http.ENV_MODELS] = str(Path(args.models).resolve())
    os.environ[http.ENV_RELOAD] = str(args.reload_seconds)
    if args.redis:
        os.environ[http.ENV_REDIS] = args.redis
    if args.exposures:
        os.environ[http.ENV_EXPOSURES] = str(args.exposures.resolve())
    key = os.environ.get(args.api_key_env)
    if key:
        os.environ[http.ENV_API_KEY] = key
    # BLAS threads of concurrent calls would fight over the cores.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    uvicorn.run(
        "serving.http:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info" if not args.quiet else "warning",
    )
    return EXIT_OK


def _recommend(args: argparse.Namespace) -> int:
    from serving import Recommender

    rec = Recommender.load(args.models)
    model = rec.model

    def parse(value: str, ids_are_ints: bool) -> object:
        return int(value) if ids_are_ints and value.lstrip("-").isdigit() else value

    ints_users = model.users.dtype == "int64"
    ints_items = model.items.dtype == "int64"
    try:
        if args.item is not None:
            item = parse(args.item, ints_items)
            similar = rec.similar_items(item, args.n)
            complements = rec.complementary_items(item, args.n)
            if model.items.index_of(item) < 0:
                print(f"item {item} is not in the model: these are popular items instead")
            _print_list(f"similar to item {item}", similar)
            _print_list(f"bought with item {item}", complements)
            return EXIT_OK
        user = None if args.user is None else parse(args.user, ints_users)
        session = [parse(s, ints_items) for s in args.session.split(",")] if args.session else None
        result = rec.recommend(user, args.n, session_items=session)
    except ValueError as exc:
        # A bad id or n is the caller's to fix: one line, exit 2 (not a traceback).
        print(f"recsys: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    who = "anonymous visitor" if user is None else f"user {user}"
    if session:
        who += f" with session {session}"
    if user is not None and not result.user_known:
        who += " (not in the model: the fallback chain answers)"
    _print_list(f"for {who} (model {result.model_version})", result)
    if result.unknown_session_items:
        print(f"  ignored unknown session items: {list(result.unknown_session_items)}")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from recsys.filters import Filters
    from serving.export import export

    categories = None
    if args.categories:
        categories = tuple(
            int(c) if c.lstrip("-").isdigit() else c for c in args.categories.split(",")
        )
    filters = Filters(
        categories=categories,
        available_only=args.available_only,
        exclude_purchased=args.exclude_purchased,
        max_per_category=args.max_per_category,
    )
    if args.engine == "spark":
        return _export_spark(args, filters)
    summary = export(
        args.models,
        args.out,
        args.n,
        users=args.users,
        fmt=args.format,
        filters=filters,
        segment=args.segment,
        workers=args.workers,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        with_tier=args.with_tier,
        now=args.now,
    )
    print(summary.format_text())
    return EXIT_OK


def _moment(text: str) -> int:
    """Unix seconds of a --now value: whole seconds, or an ISO date/time (UTC unless it says)."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give an ISO date/time (2011-10-01, 2011-10-01T09:30) or "
            "Unix seconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp())


def _export_spark(args: argparse.Namespace, filters: Any) -> int:
    from serving.spark_export import export_spark

    unsupported = [
        flag
        for flag, used in (
            ("--format", args.format not in (None, "parquet")),
            ("--segment", args.segment is not None),
            ("--with-tier", args.with_tier),
        )
        if used
    ]
    if unsupported:
        raise ConfigError(
            f"{', '.join(unsupported)}: not available with --engine spark yet (Parquet, all "
            "or --users, no tier column); run the local export for those"
        )
    conf = _spark_conf(args.conf)
    summary = export_spark(
        args.models,
        str(args.out),
        args.n,
        users=args.users,
        filters=filters,
        partitions=args.partitions,
        now=args.now,
        master=args.master,
        conf=conf,
    )
    print(summary.format_text())
    return EXIT_OK


def _spark_conf(items: list[str]) -> dict[str, str]:
    """--conf KEY=VALUE options as a dict."""
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--conf must be KEY=VALUE (got {item!r})")
        conf[key.strip()] = value.strip()
    return conf


def _profiles(args: argparse.Namespace) -> int:
    from serving.export import export_profiles

    path = export_profiles(args.models, args.out, args.format)
    print(f"wrote every user's portrait to {path}")
    return EXIT_OK


def _print_list(title: str, items: Sequence[Any]) -> None:
    print(title + ":")
    if not items:
        print("  (nothing)")
    for rank, r in enumerate(items, start=1):
        print(f"  {rank:>2}. {r.item_id!s:<12} {r.score:>9.4f}  {r.source:<16} {r.reason}")


def _synth(args: argparse.Namespace) -> int:
    from training.synthetic import SyntheticShape, generate_retailrocket

    shape = dataclasses.replace(SyntheticShape().scaled(args.scale), activity=args.activity)
    paths = generate_retailrocket(args.out, shape, seed=args.seed, fmt=args.format)
    for name, path in vars(paths).items():
        print(f"{name}: {path}")
    return EXIT_OK


# The quick start's shop and the ids it asks about (a customer and a product of the sample).
QUICKSTART_CONFIG = Path("data/configs/sample.toml")
QUICKSTART_USER = "13047"
QUICKSTART_SESSION = "84879,22745"
QUICKSTART_ITEM = "84879"
QUICKSTART_EXPORT = "recs.parquet"


def _quickstart(args: argparse.Namespace) -> int:
    """Run the quick start's commands one after another, each printed before it runs."""
    if not QUICKSTART_CONFIG.is_file():
        print(
            f"recsys: error: {QUICKSTART_CONFIG}: no such file in {Path.cwd()}; run "
            "`recsys quickstart` from the project's root (the folder holding data/)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    models = os.path.relpath(load_config(QUICKSTART_CONFIG).output.models)
    commands = [
        ["train", "--config", str(QUICKSTART_CONFIG)],
        ["recommend", "--models", models, "--user", QUICKSTART_USER, "--n", "5"],
        ["recommend", "--models", models, "--session", QUICKSTART_SESSION, "--n", "3"],
        ["recommend", "--models", models, "--item", QUICKSTART_ITEM, "--n", "3"],
        ["export", "--models", models, "--out", QUICKSTART_EXPORT, "--n", "10"],
    ]
    parser = _parser()
    for command in commands:
        print(f"\n$ recsys {shlex.join(command)}", flush=True)
        step = parser.parse_args(command)
        code: int = step.run(step)
        sys.stdout.flush()
        if code != EXIT_OK:
            return code
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
