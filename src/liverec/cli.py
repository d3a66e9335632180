"""Command line: the only place that parses config files and options.

User mistakes (bad paths, options, data) print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from liverec.errors import DataNotFoundError, LiverecError

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console()
err_console = Console(stderr=True)

TOP_KEYS = {"model", "data", "seed", "params", "dataset", "train", "eval"}


@contextlib.contextmanager
def user_errors():
    """Turn user mistakes into one line on stderr and exit code 2."""
    try:
        yield
    except (LiverecError, DataNotFoundError, FileNotFoundError, tomllib.TOMLDecodeError) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None


def parse_value(text: str) -> Any:
    """`--set` values are TOML values (numbers, booleans, lists, quoted strings); else plain strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_set(raw: dict, assignment: str) -> None:
    """Apply one `section.key=value` (or `key=value` for top-level keys) to the raw config."""
    if "=" not in assignment:
        raise LiverecError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if parts[0] == "model" and len(parts) > 1:
        parts[0] = "params"  # `--set model.embedding_dim=128` reads naturally
    if parts[0] not in TOP_KEYS or len(parts) > 2:
        raise LiverecError(
            f"--set key {key!r} is not valid; use one of model, data, seed, or "
            "params.X / dataset.X / train.X / eval.X"
        )
    if len(parts) == 1:
        raw[parts[0]] = parse_value(value)
    else:
        raw.setdefault(parts[0], {})[parts[1]] = parse_value(value)


def build_run_config(
    model: str | None, data: str | None, config: Path | None, split: str | None,
    sets: list[str], seed: int | None, device: str | None,
):
    """Merge recipe file, --set and explicit options (in that order of precedence, lowest first)."""
    from liverec.data.split import DataConfig
    from liverec.evaluate import EvalConfig
    from liverec.experiment import RunConfig
    from liverec.models import MODELS
    from liverec.models.base import make_config
    from liverec.train import TrainConfig

    raw: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise DataNotFoundError(f"config file {config} does not exist")
        with config.open("rb") as f:
            raw = tomllib.load(f)
        unknown = sorted(set(raw) - TOP_KEYS)
        if unknown:
            raise LiverecError(f"{config}: unknown key(s) {unknown}; valid: {sorted(TOP_KEYS)}")
    for s in sets:
        apply_set(raw, s)
    if model is not None:
        raw["model"] = model
    if data is not None:
        raw["data"] = data
    if seed is not None:
        raw["seed"] = seed
    if split is not None:
        raw.setdefault("dataset", {})["split"] = split
    if device is not None:
        raw.setdefault("train", {})["device"] = device
    if "model" not in raw:
        raise LiverecError("no model given: pass MODEL or a --config with `model = ...`")
    if "data" not in raw:
        raise LiverecError("no data given: pass --data NAME_OR_PATH or set `data` in the config")
    if raw["model"] not in MODELS:
        raise LiverecError(f"unknown model {raw['model']!r}; available: {', '.join(MODELS)}")
    make_config(MODELS[raw["model"]].Config, raw.get("params", {}))  # fail before loading data
    ev = dict(raw.get("eval", {}))
    if "ks" in ev:
        ev["ks"] = tuple(ev["ks"]) if isinstance(ev["ks"], list) else (ev["ks"],)
    cfg = RunConfig(
        model=raw["model"], data=str(raw["data"]), seed=int(raw.get("seed", 0)),
        params=raw.get("params", {}),
        dataset=make_config(DataConfig, raw.get("dataset", {})),
        train=make_config(TrainConfig, raw.get("train", {})),
        eval=make_config(EvalConfig, ev),
    )
    cfg.train.validate()
    return cfg


def metrics_table(rows: dict[str, dict[str, float]], title: str) -> Table:
    """One row per metric, one column per run/stage (stays narrow in a terminal)."""
    names = list(dict.fromkeys(k for r in rows.values() for k in r if k != "users"))
    table = Table(title=title)
    table.add_column("metric")
    for label in rows:
        table.add_column(label, justify="right")
    for n in names:
        table.add_row(n, *(f"{r[n]:.4f}" if n in r else "" for r in rows.values()))
    return table


@app.command()
def train(
    model: str = typer.Argument(None, help="Model name (see `liverec models`); optional with --config."),
    data: str = typer.Option(None, "--data", help="Data set name under LIVEREC_DATA, or a path."),
    config: Path = typer.Option(None, "--config", help="Recipe file (TOML)."),
    split: str = typer.Option(None, "--split", help="given | loo | temporal | ratio"),
    set_: list[str] = typer.Option([], "--set", help="Override: section.key=value (repeatable)."),
    seed: int = typer.Option(None, "--seed"),
    device: str = typer.Option(None, "--device", help="auto | cpu | cuda"),
    out: Path = typer.Option(None, "--out", help="Run directory (default runs/MODEL-DATA-TIME)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    nproc: int = typer.Option(
        None, "--nproc", help="Data-parallel training on N local processes (re-runs itself under torchrun)."
    ),
    max_restarts: int = typer.Option(
        0, "--max-restarts", help="With --nproc: restart failed workers up to K times, from the last checkpoint."
    ),
    bf16: bool = typer.Option(False, "--bf16", help="bf16 autocast of training steps on GPU (no effect on CPU)."),
) -> None:
    """Train a model, evaluate it on valid/test and write a run directory."""
    from liverec.experiment import train_run
    from liverec.models import MODELS
    from liverec.train.distributed import DistContext, init_distributed, shutdown, under_torchrun
    from liverec.train.trainer import resolve_device

    with user_errors():
        cfg = build_run_config(model, data, config, split, set_, seed, device)
        if quiet:
            cfg.train.progress = False
        if bf16:
            cfg.train.bf16 = True
        trainable = MODELS[cfg.model].trainable
        if nproc is not None and not trainable and (nproc > 1 or under_torchrun()):
            err_console.print(
                f"{cfg.model} is fitted in closed form by one process: --nproc {nproc} is ignored"
            )
        if nproc is not None and trainable and not under_torchrun():
            if out is None:
                out = _default_out(cfg)
            args = _worker_args(model, data, config, split, set_, seed, device, out, quiet, bf16)
            raise typer.Exit(_launch(nproc, max_restarts, args))
        dist = DistContext(device=resolve_device(cfg.train.device))
        if under_torchrun():
            if out is None:
                raise LiverecError(
                    "under torchrun pass --out DIR: every rank and every restart must use the same run directory"
                )
            if not trainable:
                if os.environ.get("RANK", "0") != "0":
                    return  # rank 0 fits the model alone
            else:
                if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and cfg.train.checkpoint_every == 0:
                    cfg.train.checkpoint_every = 1  # a restarted worker must have something to resume
                dist = init_distributed(cfg.train.device)
        if out is None:
            out = _default_out(cfg)
        try:
            metrics = train_run(cfg, out, console=console, dist=dist)
        finally:
            shutdown(dist)
        if metrics is None:
            return  # not rank 0: rank 0 reports
        rows = {f"{cfg.model} {stage}": metrics[stage] for stage in ("valid", "test") if metrics[stage]}
        console.print(metrics_table(rows, f"{cfg.model} on {cfg.data}"))
        console.print(
            f"train {metrics['train_seconds']:.1f}s, eval {metrics['eval_seconds']:.1f}s -> {out}/metrics.json"
        )


def _default_out(cfg) -> Path:
    return Path("runs") / f"{cfg.model}-{Path(cfg.data).name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _worker_args(model, data, config, split, sets, seed, device, out, quiet, bf16) -> list[str]:
    """The `liverec train` arguments each torchrun worker gets: the same options, --out fixed."""
    args = ["train"] + ([model] if model is not None else [])
    for option, value in (("--data", data), ("--config", config), ("--split", split),
                          ("--seed", seed), ("--device", device), ("--out", out)):
        if value is not None:
            args += [option, str(value)]
    for s in sets:
        args += ["--set", s]
    return args + (["--quiet"] if quiet else []) + (["--bf16"] if bf16 else [])


def _launch(nproc: int, max_restarts: int, args: list[str]) -> int:
    """Run the workers under torch.distributed.run (TorchElastic); its exit code is ours."""
    import subprocess

    from liverec.train.distributed import torchrun_command

    command = torchrun_command(nproc, max_restarts, args)
    err_console.print(f"launching {nproc} processes: torchrun --nproc-per-node {nproc} -m liverec {' '.join(args)}",
                      highlight=False, soft_wrap=True)
    return subprocess.run(command).returncode


@app.command(context_settings={"allow_extra_args": True})
def evaluate(
    ctx: typer.Context,
    run_dir: Path = typer.Argument(..., help="A run directory written by `liverec train`."),
    data: str = typer.Option(None, "--data", help="Evaluate on this data instead of the run's."),
    k: list[int] = typer.Option(None, "--k", help="Cut-offs, e.g. --k 10 20"),
    protocol: str = typer.Option(None, "--protocol", help="full | sampled:N"),
    save_rankings: Path = typer.Option(None, "--save-rankings", help="Write top-k lists (.parquet/.jsonl)."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Evaluate a trained run (full ranking or sampled) and optionally save its rankings."""
    from liverec.evaluate import evaluate as run_eval
    from liverec.experiment import check_same_vocab, load_dataset, load_run

    with user_errors():
        ks = list(k or []) + [_int_arg(a, "--k") for a in ctx.args]
        cfg, model, users, items = load_run(run_dir, device=device)
        if data is not None:
            cfg.data = data
        if ks:
            cfg.eval.ks = tuple(ks)
        if protocol is not None:
            cfg.eval.protocol = protocol
        cfg.eval.validate()
        ds = load_dataset(cfg)
        check_same_vocab(ds, users, items)
        dev = next(iter(model.state_dict().values())).device
        stages = [s for s in ("valid", "test") if getattr(ds, s) is not None and len(getattr(ds, s))]
        results = {s: run_eval(model, ds, s, cfg.eval, device=dev, return_rankings=True) for s in stages}
        if save_rankings is not None:
            write_rankings(save_rankings, ds, {s: r["rankings"] for s, r in results.items()})
        rows = {s: {n: v for n, v in r.items() if n != "rankings"} for s, r in results.items()}
        console.print(metrics_table(rows, f"{cfg.model} on {cfg.data} ({cfg.eval.protocol})"))


def _int_arg(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise LiverecError(f"unexpected argument {text!r} (for {option} give integers)") from None


def write_rankings(path: Path, ds, rankings: dict) -> None:
    """One row per evaluated user and split: raw user id, top-k raw item ids, split name."""
    rows_user, rows_items, rows_split = [], [], []
    for stage, (user_idx, topk) in rankings.items():
        rows_user.extend(ds.users.decode(user_idx).tolist())
        rows_items.extend(ds.items.decode(topk).tolist())
        rows_split.extend([stage] * len(user_idx))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    if path.suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise LiverecError("writing .parquet needs pyarrow: pip install 'liverec[parquet]'") from None
        pq.write_table(pa.table({"user": rows_user, "items": rows_items, "split": rows_split}), tmp)
    elif path.suffix == ".jsonl":
        import json

        with tmp.open("w") as f:
            for u, its, s in zip(rows_user, rows_items, rows_split, strict=True):
                f.write(json.dumps({"user": u, "items": its, "split": s}) + "\n")
    else:
        raise LiverecError(f"--save-rankings must end in .parquet or .jsonl, not {path.suffix!r}")
    tmp.replace(path)


@app.command()
def recommend(
    run_dir: Path = typer.Argument(..., help="A run directory written by `liverec train`."),
    user: str = typer.Option(..., "--user", help="Raw user id as in the data set."),
    k: int = typer.Option(10, "--k", help="Number of recommendations."),
    history: int = typer.Option(10, "--history", help="How many recent history items to show."),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Show a user's recent history and top-k recommendations (with titles when known)."""
    from liverec.experiment import check_same_vocab, load_dataset, load_run
    from liverec.recommend import recommend_for_user, user_history

    with user_errors():
        if k <= 0 or k > 1000:
            raise LiverecError("--k must be between 1 and 1000")
        cfg, model, users, items = load_run(run_dir, device=device)
        ds = load_dataset(cfg)
        check_same_vocab(ds, users, items)
        uidx = int(ds.users.encode([user], missing="mask")[0])
        if uidx < 0:
            raise LiverecError(f"user {user!r} is not in {cfg.data}")
        print_user(ds, model, uidx, k, history, recommend_for_user, user_history)


def print_user(ds, model, uidx: int, k: int, n_history: int, recommend_for_user, user_history) -> None:
    hist = user_history(ds, uidx)
    raw_user = ds.users.decode([uidx])[0]
    table = Table(title=f"user {raw_user}: last {min(n_history, len(hist))} of {len(hist)} items")
    table.add_column("item", justify="right")
    table.add_column("title")
    for it in hist[-n_history:]:
        raw = ds.items.decode([it])[0]
        table.add_row(str(raw), ds.title(raw))
    console.print(table)
    recs, scores = recommend_for_user(model, ds, uidx, k)
    table = Table(title=f"top-{k} recommendations ({type(model).__name__})")
    for col in ("rank", "item", "title", "score"):
        table.add_column(col, justify="left" if col == "title" else "right")
    for rank, (it, s) in enumerate(zip(recs, scores, strict=True), 1):
        raw = ds.items.decode([it])[0]
        table.add_row(str(rank), str(raw), ds.title(raw), f"{s:.3f}")
    console.print(table)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory written by `liverec train`."),
    to: Path = typer.Option(Path("registry"), "--to", help="Registry directory (created if absent)."),
    index: str = typer.Option("exact", "--index", help="Item index: exact | hnsw | ivf."),
    target_recall: float = typer.Option(
        0.95, "--target-recall",
        help="hnsw/ivf: search just hard enough for this recall@10 vs exact on the model's users.",
    ),
) -> None:
    """Publish a trained run as the next version of a model registry (atomic; `latest` moves last)."""
    from liverec.registry import publish

    with user_errors():
        number = publish(run_dir, to, index=index, target_recall=target_recall)
        console.print(f"published {run_dir} as version {number} -> {to / 'versions' / str(number)}")


@app.command()
def compress(
    run_dir: Path = typer.Argument(..., help="A run directory written by `liverec train`."),
    method: str = typer.Option(
        ..., "--method",
        help="int8 | int4 | fp16 | bf16 | linear-int8 | prune-magnitude | prune-structured | "
        "merge-rare | distill; chain with commas, e.g. merge-rare,int4.",
    ),
    out: Path = typer.Option(..., "--out", help="Compressed run directory (exportable, servable)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Method option name=value, e.g. amount=0.5, min_count=5, dim=16."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars (distill)."),
) -> None:
    """Compress a trained run (quantise, prune or distil) into a new run directory."""
    from liverec.compress import CompressOptions, compress_run, parse_methods
    from liverec.models.base import make_config

    with user_errors():
        methods = parse_methods(method)
        options = make_config(CompressOptions, _set_options(set_))
        if not (run_dir / "model.safetensors").is_file():
            raise DataNotFoundError(f"{run_dir} is not a run directory (no model.safetensors)")
        metrics = compress_run(run_dir, out, methods, options, console=None if quiet else console)
        info = metrics["compression"]
        rows = {"original": info["source_test"], "+".join(methods): metrics["test"]}
        console.print(metrics_table(rows, f"{metrics['model']} on {metrics['data']} (test)"))
        console.print(
            f"model.safetensors {info['source_bytes']:,} -> {info['bytes']:,} bytes "
            f"({info['source_bytes'] / info['bytes']:.2f}x smaller) -> {out}"
        )


@app.command()
def serve(
    registry: Path = typer.Argument(..., help="Registry directory written by `liverec export`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Bind address (loopback by default)."),
    port: int = typer.Option(8000, "--port"),
    token: str = typer.Option(
        None, "--token", envvar="LIVEREC_TOKEN", help="Bearer token for write endpoints."
    ),
    poll: float = typer.Option(1.0, "--poll", help="Seconds between checks for a new version."),
    log_url: str = typer.Option(
        None, "--log", help="Event log for POST /v1/events (default sqlite: REGISTRY/events.sqlite)."
    ),
    online: bool = typer.Option(
        False, "--online", help="Learn from --log in this process: the served model changes after each micro-batch."
    ),
    group: str = typer.Option("liverec-online", "--group", help="Consumer group of the --online trainer."),
    set_: list[str] = typer.Option([], "--set", help="--online trainer option: key=value (see OnlineConfig)."),
) -> None:
    """Serve the registry's latest model over HTTP (docs at /docs); new versions are hot-swapped."""
    import ipaddress

    with user_errors():
        loopback = host == "localhost" or (
            host.replace(".", "").isdigit() and ipaddress.ip_address(host).is_loopback
        )
        if not loopback and not token:
            raise LiverecError(
                f"binding {host} exposes the API beyond this machine: set --token (or LIVEREC_TOKEN)"
            )
        if not registry.is_dir():
            raise DataNotFoundError(f"registry {registry} does not exist; run `liverec export RUN --to {registry}`")
        import uvicorn

        from liverec.serve import create_app

        if log_url is not None:
            from liverec.stream import open_log

            open_log(log_url).close()  # a bad URL is a one-line error now, not at the first event
        config = _online_config(registry, set_) if online else None
        if online:  # the trainer's progress and outage lines, as under `liverec online`
            import logging

            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        if set_ and not online:
            raise LiverecError("--set configures the in-process trainer: add --online")
        uvicorn.run(create_app(registry, token=token, poll_seconds=poll, log_url=log_url,
                               online=config, online_group=group),
                    host=host, port=port, log_level="warning", access_log=False)


def _set_options(assignments: list[str], prefix: str = "") -> dict[str, Any]:
    """`--set key=value` options of one flat options dataclass (keys may carry `prefix`)."""
    options: dict[str, Any] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise LiverecError(f"--set expects key=value, got {assignment!r}")
        options[key.strip().removeprefix(prefix)] = parse_value(value)
    return options


def _online_config(registry: Path, assignments: list[str]):
    """The OnlineConfig of `--set key=value` options, checked against the registry's model now
    (a wrong option or model is a one-line error before the server starts)."""
    import json

    from liverec.models.base import make_config
    from liverec.registry import latest_version
    from liverec.stream.online import AS_FACTOR_MODEL, ONLINE_MODELS, SEQUENCE_MODELS, OnlineConfig

    config = make_config(OnlineConfig, _set_options(assignments, "online."))
    number = latest_version(registry)
    if number is None:
        raise DataNotFoundError(f"{registry} has no published version; run `liverec export RUN --to {registry}`")
    model = json.loads((registry / "versions" / str(number) / "manifest.json").read_text())["model"]
    learns = ONLINE_MODELS + AS_FACTOR_MODEL + SEQUENCE_MODELS
    if model not in learns:
        raise LiverecError(
            f"--online learns {list(learns)}, and {registry} serves {model!r}"
        )
    return config


@app.command()
def online(
    source: Path = typer.Argument(..., help="A registry (resumed from its latest version) or a run directory."),
    log_url: str = typer.Option(..., "--log", help="sqlite:///path.db or kafka://host:port/topic"),
    to: Path = typer.Option(None, "--to", help="Registry to publish into when SOURCE is a run directory."),
    group: str = typer.Option("liverec-online", "--group", help="Consumer group name in the log."),
    start: str = typer.Option(
        "earliest", "--start", help="earliest | latest: where a model without online state starts reading."
    ),
    set_: list[str] = typer.Option([], "--set", help="Online option: key=value (see OnlineConfig)."),
    max_events: int = typer.Option(None, "--max-events", help="Stop after reading this many events."),
    idle_exit: float = typer.Option(None, "--idle-exit", help="Stop after this many idle seconds."),
    min_count: int = typer.Option(
        None, "--min-count", help="Events a new user or item needs before it enters the model (default 1)."
    ),
    expire_after: float = typer.Option(
        None, "--expire-after", help="Remove users and items with no event for this many s of event time."
    ),
) -> None:
    """Learn from an event log continuously and publish versions that `liverec serve` hot-swaps."""
    import logging
    import signal
    import threading

    from liverec.models.base import make_config
    from liverec.stream import open_log
    from liverec.stream.online import OnlineConfig, load_state
    from liverec.stream.trainer import OnlineTrainer

    with user_errors():
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        if start not in ("earliest", "latest"):
            raise LiverecError(f"--start must be earliest or latest, got {start!r}")
        options = _set_options(set_, "online.")
        for key, value in (("min_count", min_count), ("expire_after", expire_after)):
            if value is not None:
                options[key] = value
        config = make_config(OnlineConfig, options)
        registry = _online_registry(source, to)
        state = load_state(registry, config)
        events = open_log(log_url, group=group)
        if not state.position and start == "latest":
            state.position = events.end()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        err_console.print(f"online: {state.model_name} from {registry}, reading {log_url} at {state.position or 'the start'}")
        stats = OnlineTrainer(state, events, registry).run(stop, max_events, idle_exit)
        events.close()
        err_console.print(
            f"online: {stats.events} events in {stats.seconds:.1f}s, {stats.published} versions, "
            f"latest {stats.last_version}, {state.counters.dead} dead letters in total"
        )


def _online_registry(source: Path, to: Path | None) -> Path:
    """SOURCE as a registry, or publish the run SOURCE into --to first (unless it has versions)."""
    from liverec.registry import latest_version, publish

    if (source / "config.json").is_file():  # a run directory
        if to is None:
            raise LiverecError(f"{source} is a run directory: pass --to REGISTRY to publish it into")
        if latest_version(to) is None:
            publish(source, to)
        return to
    if not source.is_dir() or latest_version(source) is None:
        raise DataNotFoundError(f"{source} is neither a run directory nor a registry with a version")
    return source


@app.command()
def models() -> None:
    """List the available models and their options."""
    from liverec.models import MODELS

    table = Table(title="models")
    table.add_column("name")
    table.add_column("trained by")
    table.add_column("options (defaults)")
    for name, cls in MODELS.items():
        opts = ", ".join(f"{f.name}={f.default!r}" for f in fields(cls.Config))
        table.add_row(name, "Trainer" if cls.trainable else "fit() (no gradients)", opts)
    console.print(table)


@app.command()
def datasets() -> None:
    """List known data sets and those available locally under LIVEREC_DATA."""
    from liverec.data.sources import data_home, list_datasets

    with user_errors():
        table = Table(title=f"data sets (LIVEREC_DATA={data_home()})")
        rows = list_datasets()
        cols = list(dict.fromkeys(k for r in rows for k in r))
        for c in cols:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(str(r.get(c, "")) for c in cols))
        console.print(table)


@app.command()
def demo(
    data: str = typer.Option("ml-100k", "--data"),
    out: Path = typer.Option(Path("runs"), "--out"),
    user: str = typer.Option(None, "--user", help="Raw user id to show (default: a sampled one)."),
) -> None:
    """Train EASE and MF on ML-100K, print a metrics table and one user's recommendations."""
    from liverec.experiment import RunConfig, load_dataset, load_run, train_run
    from liverec.recommend import recommend_for_user, user_history
    from liverec.train import TrainConfig

    with user_errors():
        recipes = {
            "pop": RunConfig(model="pop", data=data),
            "ease": RunConfig(model="ease", data=data, params={"l2": 200.0}),
            "mf": RunConfig(
                model="mf", data=data, params={"embedding_dim": 64},
                train=TrainConfig(epochs=60, batch_size=1024, lr=5e-3, l2=1e-4, patience=5,
                                  monitor="NDCG@10", progress=True),
            ),
        }
        rows = {}
        for name, cfg in recipes.items():
            console.print(f"[bold]{name}[/] on {data} (leave-last-out, full ranking)")
            m = train_run(cfg, out / f"demo-{name}", console=console)
            rows[name] = m["test"]
        console.print(metrics_table(rows, f"test metrics on {data} (leave-last-out, full ranking)"))
        cfg = recipes["ease"]
        ds = load_dataset(cfg)
        uidx = int(ds.users.encode([user])[0]) if user else ds.num_users // 3
        _, model, _, _ = load_run(out / "demo-ease")
        print_user(ds, model, uidx, 10, 10, recommend_for_user, user_history)


@app.command("demo-loop")
def demo_loop(
    out: Path = typer.Option(Path("runs/demo-loop"), "--out", help="Folder for the registry, log and child logs."),
    seconds: float = typer.Option(60.0, "--seconds", help="How long the simulated users keep clicking."),
    users: int = typer.Option(200, "--users"),
    items: int = typer.Option(400, "--items"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Closed loop: simulated users click served recommendations; clicks flow back over HTTP into
    the embedded log, `liverec online` learns, the server hot-swaps; the hit rate is printed."""
    from liverec.stream.feedback import LoopConfig, run_loop

    with user_errors():
        config = LoopConfig(users=users, items=items, seconds=seconds, seed=seed)
        reports = run_loop(config, out, print_line=console.print)
        if len(reports) >= 2:
            console.print(f"hit rate {reports[0][1]:.3f} in the first {reports[0][0]:.0f}s -> "
                          f"{reports[-1][1]:.3f} at {reports[-1][0]:.0f}s")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
