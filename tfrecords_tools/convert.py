"""Raw Kaggle files -> sharded TFRecords with folds, once.

    python -m tfrecords_tools.convert --config configs/steel.json \\
        [--set data.shard_size=64]... [--workers N] [--skip-bad] \\
        [--runner local|beam [--beam-option KEY=VALUE]...]

Reads `cfg.data.raw_dir` through the task's plugin
(`tfrecords_tools.competitions.<task>`), assigns folds
(`cfg.data.folds`, `cfg.data.fold_strategy`, `cfg.seed`) and writes
`cfg.data.records_dir`:

- `train-00000-of-000NN.tfrec` (one fold per shard, at most
  `cfg.data.shard_size` records) and `test-...tfrec` (fold -1),
- `folds.csv` (id,fold), `errors.csv` (file,reason) when inputs were
  skipped, and `manifest.json` last (schema, counts per split, fold and
  class, shards, input hash).

`--workers N` lists headers and encodes in N spawned processes (records
are identical for any N). `--runner beam` runs the encoding as an Apache
Beam pipeline instead (`tfrecords_tools.beam_convert`: DirectRunner here,
Dataflow / Flink / Spark through `--beam-option`), with the same records.
Spawned workers import the caller's main module again: a script calling `convert(cfg, workers=N)` should import TensorFlow inside a
function, not at its top level, or every worker loads it.

A rerun with the same inputs and settings writes nothing; a killed run
resumes from its staged shards (see `tfrecords_tools.writer`). A bad input
stops the run with exit code 1 and a message naming the file (and row),
unless `--skip-bad` records it in `errors.csv` and goes on.

Example:

>>> from kaggle_tf import config
>>> cfg = config.load("configs/steel_demo.json")        # doctest: +SKIP
>>> manifest = convert(cfg, workers=2)                  # doctest: +SKIP
>>> manifest["splits"]["train"]["records"]              # doctest: +SKIP
64
"""

import argparse
import os
import sys

from kaggle_tf import cli
from tfrecords_tools import competitions
from tfrecords_tools import faults
from tfrecords_tools import schema
from tfrecords_tools.engine import encode_record
from tfrecords_tools.engine import finalize
from tfrecords_tools.engine import pending_shards
from tfrecords_tools.engine import prepare
from tfrecords_tools.engine import stage_shard
from tfrecords_tools.items import BadInput


# --- workers -------------------------------------------------------------

_WORKER = {}


def _init_worker(task, cfg):
    cli.quiet_from_env()  # as quiet as the command that spawned it
    _WORKER["module"] = competitions.get(task)
    _WORKER["cfg"] = cfg


def _encode(job):
    """`encode_record` of one (item, fold); runs in a worker."""
    item, fold = job
    return encode_record(_WORKER["module"], _WORKER["cfg"], item, fold)


def convert(cfg, workers: int = 1, skip_bad: bool = False,
            progress: bool = True) -> dict:
    """Converts `cfg.data.raw_dir` into `cfg.data.records_dir`.

    Args:
        cfg: a validated config.
        workers: processes for the header listing and the encoding
            (spawned; 1 = in this process).
        skip_bad: record bad inputs in `errors.csv` instead of stopping.
        progress: show tqdm progress bars.

    Returns:
        The manifest (also written to `records_dir/manifest.json`).

    Raises:
        BadInput: an unusable input and `skip_bad` is False.
        ValueError: too few items for the folds.
    """
    manifest, plan = prepare(cfg, skip_bad, progress, workers)
    if manifest is not None:
        return manifest
    states = {}
    with _Pool(cfg, workers) as pool:
        for split in schema.SPLITS:
            states.update(_write_split(plan, split, skip_bad, pool,
                                       progress))
    return finalize(plan, states)


class _Pool:
    """Spawned encoding processes, started on first use (none for 1)."""

    def __init__(self, cfg, workers):
        self.cfg, self.workers, self.pool = cfg, workers, None

    def imap(self, items):
        if self.workers <= 1:
            _init_worker(self.cfg.task, self.cfg)
            return map(_encode, items)
        if self.pool is None:
            import multiprocessing

            ctx = multiprocessing.get_context("spawn")
            self.pool = ctx.Pool(self.workers, initializer=_init_worker,
                                 initargs=(self.cfg.task, self.cfg))
        return self.pool.imap(_encode, items, chunksize=8)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _write_split(plan, split, skip_bad, pool, progress):
    """Stages the shards of one split that are not staged yet."""
    from tqdm import tqdm

    from tfrecords_tools import writer

    items = plan.items[split]
    states, pending = pending_shards(plan, split, skip_bad)
    total = len(items)
    todo = sum(len(index) for _, _, index in pending)
    if not todo:
        return states
    jobs = [(items[i], fold) for _, fold, index in pending for i in index]
    results = pool.imap(jobs)
    bar = tqdm(total=total, initial=total - todo, unit="img",
               desc=f"{plan.cfg.task} {split}", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)

    def take(count):
        for _ in range(count):
            result = next(results)
            bar.update(1)
            yield result

    with bar:
        for name, fold, index in pending:
            states[name] = stage_shard(plan.staging, name, fold,
                                       take(len(index)), skip_bad)
            writer.pause_after_shard()
            faults.point("shard")
    return states


# --- command line --------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m tfrecords_tools.convert",
        description="Raw Kaggle files -> sharded TFRecords with folds.")
    p.add_argument("--config", required=True, help="recipe JSON")
    cli.add_set(p, help="override config keys, e.g. --set "
                        "data.shard_size=64 data.folds=2 (repeatable)")
    p.add_argument("--workers", type=int, default=1,
                   help="encoding processes (default: 1)")
    p.add_argument("--runner", choices=("local", "beam"), default="local",
                   help="engine: this machine's processes (default) or an "
                        "Apache Beam pipeline (pip install kaggle_tf[beam])")
    p.add_argument("--beam-option", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="Beam pipeline option --KEY=VALUE, e.g. "
                        "runner=DataflowRunner (repeatable; --runner beam)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unusable inputs, listing them in errors.csv")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--verify", action="store_true",
                   help="check every shard of records_dir against the "
                        "manifest (size, sha256, records) instead of "
                        "converting")
    cli.add_common(p)
    return p.parse_args(argv)


@cli.command
def main(argv=None) -> int:
    args = parse_args(argv)
    from kaggle_tf import config as config_lib

    cfg = config_lib.load_or_exit(args.config, args.overrides)
    if args.workers < 1:
        print(f"error: --workers must be >= 1. Received: {args.workers}",
              file=sys.stderr)
        return 2
    if args.verify:
        return _verify(cfg.data.records_dir)
    if args.beam_option and args.runner != "beam":
        print("error: --beam-option needs --runner beam", file=sys.stderr)
        return 2
    try:
        if args.runner == "beam":
            from tfrecords_tools import beam_convert

            manifest = beam_convert.convert_beam(
                cfg, args.beam_option, workers=args.workers,
                skip_bad=args.skip_bad, progress=not args.quiet)
        else:
            manifest = convert(cfg, workers=args.workers,
                               skip_bad=args.skip_bad,
                               progress=not args.quiet)
    except BadInput as e:
        if cli.debugging():
            raise
        hint = "" if "not found; " in str(e) else (
            " (rerun with --skip-bad to skip bad inputs and list them in "
            "errors.csv)")
        print(f"error: {e}{hint}", file=sys.stderr)
        return 1
    except ValueError as e:
        if cli.debugging():
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    train, test = manifest["splits"]["train"], manifest["splits"]["test"]
    print(f"{cfg.data.records_dir}: {train['records']} train records in "
          f"{len(train['shards'])} shards, {test['records']} test records; "
          f"{manifest['skipped']} skipped", flush=True)
    return 0


def verify(records_dir):
    """[(shard path, reason)] of the shards that do not match the manifest.

    Raises:
        FileNotFoundError: no manifest in `records_dir`.
    """
    from tfrecords_tools import writer

    path = os.path.join(records_dir, schema.MANIFEST)
    manifest = writer.read_json(path)
    if manifest is None:
        raise FileNotFoundError(f"{path}: no readable manifest; convert "
                                "first (python -m tfrecords_tools.convert "
                                "--config ...)")
    bad = []
    for split in schema.SPLITS:
        for entry in manifest.get("splits", {}).get(split, {}).get(
                "shards", []):
            reason = writer.verify_shard(records_dir, entry)
            if reason:
                bad.append((os.path.join(records_dir, entry["file"]),
                            reason))
    return bad


def _verify(records_dir):
    bad = verify(records_dir)
    for path, reason in bad:
        print(f"{path}: {reason}", file=sys.stderr)
    if bad:
        manifest = os.path.join(records_dir, schema.MANIFEST)
        print(f"error: {len(bad)} damaged shard(s) in {records_dir}; "
              f"remove {manifest} and convert again (every shard is "
              "written anew)", file=sys.stderr)
        return 1
    print(f"{records_dir}: every shard matches the manifest", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
