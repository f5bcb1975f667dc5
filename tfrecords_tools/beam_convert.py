"""The conversion as an Apache Beam pipeline (`--runner beam`).

    python -m tfrecords_tools.convert --config configs/steel.json \\
        --runner beam [--beam-option KEY=VALUE]... [--skip-bad]

The same plan as the local converter (`tfrecords_tools.engine.prepare`:
listing, folds, shards, hashes) is made in the launching process; the
pipeline then encodes every pending item (`engine.encode_record`, the
one per-item encoding of both engines), groups the results by shard,
orders them as the plan does and stages each shard
(`engine.stage_shard`, through `tf.io.gfile`, so `records_dir` may be a
`gs://` path). The launcher finally writes folds, errors and the manifest
(`engine.finalize`). Records, shards, folds and the manifest are
byte-for-byte those of the local converter; a killed pipeline resumes from
the shards it staged.

`--beam-option KEY=VALUE` becomes the pipeline option `--KEY=VALUE`.
Without `runner` it is Beam's DirectRunner (with `--workers N > 1`, N
local processes). Examples beyond one machine:

    --beam-option runner=DataflowRunner --beam-option project=P
    --beam-option region=europe-west1
    --beam-option temp_location=gs://B/tmp
    --beam-option requirements_file=requirements.txt
    --beam-option runner=FlinkRunner --beam-option flink_master=host:8081
    --beam-option runner=SparkRunner --beam-option spark_master_url=...

The workers must read `raw_dir` at the same path as the launcher (the
plugins read files with plain `open`: a shared file system or a Cloud
Storage FUSE mount), and install this package with `apache-beam` and
TensorFlow.

A bad input fails the pipeline with a message naming the file, or with
`--skip-bad` is left out and listed in `errors.csv`.
"""

import re

from tfrecords_tools import competitions
from tfrecords_tools import engine
from tfrecords_tools import schema
from tfrecords_tools.items import BadInput


def pipeline_options(beam_options=(), workers: int = 1):
    """`PipelineOptions` from `KEY=VALUE` strings (`--KEY=VALUE`).

    Raises:
        ValueError: an option without `=`, naming it.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    args, keys = [], set()
    for text in beam_options:
        key, sep, value = text.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"--beam-option must be KEY=VALUE. Received: "
                             f"{text!r}")
        keys.add(key)
        args.append(f"--{key}={value}")
    if "runner" not in keys:
        args.append("--runner=DirectRunner")
        if workers > 1 and "direct_num_workers" not in keys:
            args += [f"--direct_num_workers={workers}",
                     "--direct_running_mode=multi_processing"]
    return PipelineOptions(args)


class _Encode:
    """Encodes one (shard, position, item, fold); the plugin is imported
    once per worker."""

    def __init__(self, task, cfg, skip_bad):
        self.task, self.cfg, self.skip_bad = task, cfg, skip_bad
        self.module = None

    def __call__(self, job):
        name, position, item, fold = job
        if self.module is None:
            self.module = competitions.get(self.task)
        features, error = engine.encode_record(self.module, self.cfg,
                                                item, fold)
        if error is not None and not self.skip_bad:
            raise BadInput(error[0], error[1], error[2])
        return name, (position, features, error)


class _Stage:
    """Stages one shard from its grouped, position-ordered results."""

    def __init__(self, records_dir, plan_hash, folds, skip_bad):
        self.records_dir, self.plan_hash = records_dir, plan_hash
        self.folds, self.skip_bad = folds, skip_bad

    def __call__(self, group):
        from tfrecords_tools import writer

        name, results = group
        results = sorted(results, key=lambda r: r[0])
        staging = writer.Staging(self.records_dir, self.plan_hash)
        state = engine.stage_shard(
            staging, name, self.folds[name],
            ((features, error) for _, features, error in results),
            self.skip_bad)
        return name, state["records"]


def convert_beam(cfg, beam_options=(), workers: int = 1,
                 skip_bad: bool = False, progress: bool = True) -> dict:
    """`tfrecords_tools.convert.convert` with Beam as the engine.

    Args:
        cfg: a validated config.
        beam_options: `KEY=VALUE` pipeline options (see the module doc).
        workers: header-listing processes, and DirectRunner processes
            when no runner is given.
        skip_bad: record bad inputs in `errors.csv` instead of failing.
        progress: print the listing's progress lines.

    Returns:
        The manifest, equal to the local converter's.

    Raises:
        BadInput: an unusable input and `skip_bad` is False (the failed
            pipeline's error, naming the file).
        ValueError: a malformed option, or too few items for the folds.
    """
    try:
        import apache_beam as beam
    except ImportError:
        raise ValueError("--runner beam needs apache-beam: pip install "
                         "'kaggle_tf[beam]'") from None
    options = pipeline_options(beam_options, workers)
    manifest, plan = engine.prepare(cfg, skip_bad, progress, workers)
    if manifest is not None:
        return manifest
    states, jobs, folds = {}, [], {}
    for split in schema.SPLITS:
        staged, pending = engine.pending_shards(plan, split, skip_bad)
        states.update(staged)
        items = plan.items[split]
        for name, fold, index in pending:
            folds[name] = fold
            jobs.extend((name, k, items[i], fold)
                        for k, i in enumerate(index))
    if jobs:
        chunks = _write_jobs(plan.staging, jobs)
        try:
            with beam.Pipeline(options=options) as p:
                _ = (p
                     | "Chunks" >> beam.Create(chunks, reshuffle=True)
                     | "Items" >> beam.FlatMap(_read_jobs)
                     | "Spread" >> beam.Reshuffle()
                     | "Encode" >> beam.Map(_Encode(cfg.task, cfg,
                                                    skip_bad))
                     | "ByShard" >> beam.GroupByKey()
                     | "Stage" >> beam.Map(_Stage(
                         cfg.data.records_dir, plan.plan, folds, skip_bad)))
        except BadInput:
            raise
        except Exception as e:  # the runner wraps the worker's error
            bad = _bad_input(e)
            if bad is None:
                raise
            raise bad from None
        for name in folds:
            state = plan.staging.done(name)
            if state is None:
                raise RuntimeError(f"{plan.staging.part_path(name)}: the "
                                   "pipeline finished without staging it")
            states[name] = state
    return engine.finalize(plan, states)


JOBS_PER_CHUNK = 256


def _write_jobs(staging, jobs):
    """Pickles the jobs into chunk files of the staging folder and returns
    their paths: the pipeline graph carries the paths only (a remote runner
    limits its size; the items of 752k ICH slices would not fit)."""
    import pickle

    from tfrecords_tools import writer

    paths = []
    for k in range(0, len(jobs), JOBS_PER_CHUNK):
        path = f"{staging.folder}/jobs-{k // JOBS_PER_CHUNK:06d}.pkl"
        writer.write_bytes(path, pickle.dumps(jobs[k:k + JOBS_PER_CHUNK]))
        paths.append(path)
    return paths


def _read_jobs(path):
    import pickle

    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        return pickle.loads(f.read())


_BAD_RE = re.compile(r"BadInput: (.+?): (.+?)(?: \[while running|\n|$)")


def _bad_input(error):
    """The `BadInput` a runner's exception carries: by type (DirectRunner),
    else from its message (a remote runner sends the worker's text)."""
    first, seen = error, set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BadInput):
            return error
        error = error.__cause__ or error.__context__
    match = _BAD_RE.search(str(first))
    return BadInput(match.group(1), match.group(2)) if match else None

