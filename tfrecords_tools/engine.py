"""The steps of a conversion that every engine shares.

`prepare` lists the items, assigns folds, plans the shards and hashes the
inputs; `encode_record` is the one per-item encoding; `stage_shard`
serializes and stages one shard; `finalize` moves the shards into place
and writes `folds.csv`, `errors.csv` and the manifest. The local process
pool (`tfrecords_tools.convert`) and the Apache Beam pipeline
(`tfrecords_tools.beam_convert`) differ only in how they run
`encode_record` and `stage_shard`, so their records are the same.

Example:

>>> manifest, plan = prepare(cfg)                       # doctest: +SKIP
>>> features, error = encode_record(plan.module, cfg, item, 0)  # doctest: +SKIP
"""

import collections
import csv
import dataclasses
import hashlib
import inspect
import io
import json
import os
import sys

from tfrecords_tools import competitions
from tfrecords_tools import download
from tfrecords_tools import folds as folds_lib
from tfrecords_tools import schema
from tfrecords_tools.items import BadInput

# Config keys (of `cfg.data`) that never change the records.
_READER_ONLY = ("raw_dir", "records_dir", "image_size", "shuffle_buffer",
                "cache")

# --- the per-item encoding, shared by both engines -----------------------

def encode_record(module, cfg, item, fold):
    """One item's record features, or the reason it cannot be one.

    The one definition of what a record holds, used by the local process
    pool and by the Beam pipeline (`tfrecords_tools.beam_convert`) alike.

    Returns:
        `(features, None)` with `schema.FOLD` set, or `(None, (file,
        reason, item id))` for a bad input.
    """
    try:
        features = module.encode_item(item, cfg)
    except BadInput as e:
        return None, (e.path, e.reason, item.id)
    features[schema.FOLD] = fold
    return features, None


def stage_shard(staging, name, fold, results, skip_bad) -> dict:
    """Serializes one shard's `encode_record` results (in shard order) and
    stages the shard; returns its state.

    Raises:
        BadInput: a bad input and `skip_bad` is False.
    """
    from tfrecords_tools import encode

    records, errors, sizes, keys = [], [], set(), set()
    for features, error in results:
        if error is not None:
            if not skip_bad:
                raise BadInput(error[0], error[1], error[2])
            errors.append(list(error))
            continue
        sizes.add((int(features.get(schema.HEIGHT, 0)),
                   int(features.get(schema.WIDTH, 0)),
                   int(features.get(schema.CHANNELS, 0))))
        keys.update(features)
        records.append(encode.serialize(features))
    return staging.write(name, records, {
        "errors": errors, "sizes": sorted(sizes), "keys": sorted(keys),
        "fold": fold})


# --- planning ------------------------------------------------------------

def fold_strategy(cfg, module) -> str:
    """The fold strategy: the config's, or the plugin's for "auto"."""
    strategy = cfg.data.fold_strategy
    return module.FOLD_STRATEGY if strategy == "auto" else strategy


def input_hash(cfg, items_by_split) -> str:
    """sha256 over the raw CSVs and every item's (path, size)."""
    raw = cfg.data.raw_dir
    h = hashlib.sha256()
    h.update(cfg.task.encode())
    if os.path.isdir(raw):
        for name in sorted(os.listdir(raw)):
            path = os.path.join(raw, name)
            if name.lower().endswith(".csv") and os.path.isfile(path):
                h.update(name.encode())
                with open(path, "rb") as f:
                    h.update(hashlib.sha256(f.read()).digest())
    for split in schema.SPLITS:
        for item in items_by_split[split]:
            h.update(f"{split}\0{item.id}".encode())
            for path in item.paths:
                size = os.path.getsize(path) if os.path.exists(path) else -1
                h.update(f"\0{os.path.relpath(path, raw)}\0{size}".encode())
    return h.hexdigest()


def plan_hash(cfg, module, inputs) -> str:
    """sha256 of everything the records depend on (inputs and settings)."""
    keys = getattr(module, "CONFIG_KEYS", None)
    data = dataclasses.asdict(cfg.data)
    if keys is None:       # unknown: every key that can change a record
        data = {k: v for k, v in data.items() if k not in _READER_ONLY}
    else:
        data = {k: v for k, v in data.items()
                if k in keys or k in ("folds", "fold_strategy",
                                      "shard_size")}
    plan = {"schema": schema.SCHEMA_VERSION, "task": cfg.task,
            "seed": cfg.seed, "data": data, "inputs": inputs,
            "strategy": fold_strategy(cfg, module)}
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()
                          ).hexdigest()


def plan_shards(split, fold_ids, shard_size) -> list:
    """[(shard name, fold, item indices)]: one fold per shard, ids sorted.

    `fold_ids` is aligned with the (id-sorted) items of the split.
    """
    by_fold = collections.defaultdict(list)
    for i, fold in enumerate(fold_ids):
        by_fold[int(fold)].append(i)
    chunks = []
    for fold in sorted(by_fold):
        index = by_fold[fold]
        for start in range(0, len(index), shard_size):
            chunks.append((fold, index[start:start + shard_size]))
    return [(schema.shard_name(split, k, len(chunks)), fold, index)
            for k, (fold, index) in enumerate(chunks)]


# --- conversion ----------------------------------------------------------

def list_all(cfg, module, skip_bad, workers=1):
    """Items per split (id-sorted, checked unique) and listing errors.

    `workers` goes to plugins whose `list_items` takes it (those that read
    file headers while listing).
    """
    errors = []
    on_error = errors.append if skip_bad else None
    extra = ({"workers": workers} if "workers" in inspect.signature(
        module.list_items).parameters else {})
    items = {}
    for split in schema.SPLITS:
        listed = sorted(module.list_items(cfg, split, on_error=on_error,
                                          **extra),
                        key=lambda it: it.id)
        seen = set()
        for item in listed:
            if item.id in seen:
                raise BadInput(cfg.data.raw_dir,
                               f"duplicate {split} id {item.id!r}", item.id)
            seen.add(item.id)
        items[split] = listed
    return items, [(e.path, e.reason, e.item_id) for e in errors]


@dataclasses.dataclass
class Plan:
    """What a conversion will write, computed before any record is."""

    cfg: object
    module: object
    items: dict
    fold_ids: dict
    shards: dict
    list_errors: list
    strategy: str
    inputs: str
    plan: str
    staging: object = None


def prepare(cfg, skip_bad: bool = False, progress: bool = True,
            workers: int = 1):
    """Lists, assigns folds and plans the shards; the step both engines
    share before any record is encoded.

    Returns:
        `(manifest, None)` when `records_dir` is already up to date, else
        `(None, plan)` with the staging folder created.

    Raises:
        BadInput: an unusable input and `skip_bad` is False (also for an
            up-to-date conversion that skipped inputs).
        ValueError: too few items for the folds.
    """
    from tfrecords_tools import writer

    module = competitions.get(cfg.task)
    try:
        items, list_errors = list_all(cfg, module, skip_bad, workers)
    except BadInput as e:
        raise download.explain(cfg, e) from None
    if not items["train"]:
        raise BadInput(cfg.data.raw_dir, "no training items found")
    strategy = fold_strategy(cfg, module)
    fold_ids = {
        "train": folds_lib.assign_folds(items["train"], cfg.data.folds,
                                        strategy, cfg.seed),
        "test": [schema.TEST_FOLD] * len(items["test"]),
    }
    inputs = input_hash(cfg, items)
    plan = plan_hash(cfg, module, inputs)
    out = cfg.data.records_dir
    manifest = writer.manifest_up_to_date(out, plan)
    if manifest is not None:
        if manifest["skipped"] and not skip_bad:
            _raise_recorded_error(out)
        if progress:
            print(f"{out}: records up to date "
                  f"({manifest['splits']['train']['records']} train, "
                  f"{manifest['splits']['test']['records']} test)",
                  file=sys.stderr)
        return manifest, None
    import tensorflow as tf

    tf.io.gfile.makedirs(out)
    manifest_path = os.path.join(out, schema.MANIFEST)
    if tf.io.gfile.exists(manifest_path):
        tf.io.gfile.remove(manifest_path)
    shards = {split: plan_shards(split, fold_ids[split], cfg.data.shard_size)
              for split in schema.SPLITS}
    return None, Plan(cfg, module, items, fold_ids, shards, list_errors,
                      strategy, inputs, plan, writer.Staging(out, plan))


def pending_shards(plan, split, skip_bad):
    """({shard: state} of the staged shards, [(shard, fold, indices)] of
    those still to write) for one split.

    Raises:
        BadInput: a staged shard recorded a bad input and `skip_bad` is
            False.
    """
    states, pending = {}, []
    for name, fold, index in plan.shards[split]:
        state = plan.staging.done(name)
        if state is not None and state["errors"] and not skip_bad:
            path, reason = state["errors"][0][:2]
            raise BadInput(path, reason)
        if state is None:
            pending.append((name, fold, index))
        else:
            states[name] = state
    return states, pending


def _raise_recorded_error(out):
    """The first error of an up-to-date conversion made with --skip-bad."""
    path = os.path.join(out, schema.ERRORS_CSV)
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "r") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    first = rows[0] if rows else {"file": path, "reason": "bad inputs"}
    raise BadInput(first["file"], f"{first['reason']} ({len(rows)} bad "
                                  f"input(s) listed in {path})")


def finalize(plan, states) -> dict:
    """Moves staged shards into place; writes folds, errors, manifest.

    `states` holds the staged state of every shard of the plan (from
    `stage_shard` or `Staging.done`). Returns the manifest.
    """
    import tensorflow as tf

    from tfrecords_tools import writer

    cfg, module, staging = plan.cfg, plan.module, plan.staging
    items, fold_ids, shards = plan.items, plan.fold_ids, plan.shards
    list_errors, strategy = plan.list_errors, plan.strategy
    inputs, plan = plan.inputs, plan.plan
    out = cfg.data.records_dir
    errors = [tuple(e) for e in list_errors]
    splits, sizes, keys = {}, set(), {}
    for split in schema.SPLITS:
        names = {name for name, _, _ in shards[split]}
        for stale in writer.final_shards(out, split):
            if stale not in names:
                tf.io.gfile.remove(os.path.join(out, stale))
        skipped_ids = set()
        split_keys = set()
        entries = []
        for name, fold, _ in shards[split]:
            state = states[name]
            staging.promote(name)
            final = os.path.join(out, name)
            skipped_ids.update(e[2] for e in state["errors"])
            errors.extend(tuple(e) for e in state["errors"])
            sizes.update(tuple(s) for s in state["sizes"])
            split_keys.update(state["keys"])
            entries.append({"file": name, "records": state["records"],
                            "fold": fold,
                            "bytes": state.get("bytes") or
                            tf.io.gfile.stat(final).length,
                            "sha256": state.get("sha256") or
                            writer.file_sha256(final)})
        kept = [(it, int(f)) for it, f in zip(items[split], fold_ids[split])
                if it.id not in skipped_ids]
        splits[split] = _split_summary(module, kept, entries,
                                       len(skipped_ids))
        keys[split] = {k: schema.TYPES[k] for k in sorted(split_keys)}
        if split == "train":
            _write_folds_csv(out, kept)
    errors_path = os.path.join(out, schema.ERRORS_CSV)
    if errors:
        _write_errors_csv(errors_path, errors)
    elif tf.io.gfile.exists(errors_path):
        tf.io.gfile.remove(errors_path)
    heights = {(h, w) for h, w, _ in sizes}
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "task": cfg.task,
        "kind": module.KIND,
        "classes": list(module.CLASSES),
        "num_classes": len(module.CLASSES),
        "channels": max((c for _, _, c in sizes), default=0),
        "image_size": list(heights.pop()) if len(heights) == 1 else None,
        "features": keys,
        "folds": cfg.data.folds,
        "fold_strategy": strategy,
        "seed": cfg.seed,
        "shard_size": cfg.data.shard_size,
        "splits": splits,
        "skipped": len(errors),
        "errors_csv": schema.ERRORS_CSV if errors else None,
        "input_hash": inputs,
        "plan_hash": plan,
    }
    writer.write_json(os.path.join(out, schema.MANIFEST), manifest)
    staging.remove()
    return manifest


def _split_summary(module, kept, entries, skipped):
    per_fold = collections.Counter(str(f) for _, f in kept)
    # Examples a record expands into (e.g. the slices of an ICH series).
    examples = collections.Counter()
    for item, fold in kept:
        ids = (item.data or {}).get("ids") if isinstance(item.data, dict) \
            else None
        examples[str(fold)] += len(ids) if ids else 1
    per_class = collections.Counter()
    per_fold_class = collections.defaultdict(collections.Counter)
    empty = 0
    for item, fold in kept:
        present = [c for c, v in zip(module.CLASSES, item.labels) if v > 0]
        per_class.update(present)
        per_fold_class[str(fold)].update(present)
        empty += bool(item.labels) and not present
    return {
        "records": len(kept),
        "skipped": skipped,
        "shards": entries,
        "records_per_fold": dict(sorted(per_fold.items())),
        "examples_per_fold": dict(sorted(examples.items())),
        "records_per_class": {c: per_class[c] for c in module.CLASSES},
        "records_per_fold_class": {
            f: {c: per_fold_class[f][c] for c in module.CLASSES}
            for f in sorted(per_fold_class)},
        "records_without_labels": int(empty),
    }


def _write_csv(path, header, rows):
    from tfrecords_tools import writer

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    writer.write_bytes(path, buf.getvalue().encode("utf-8"))


def _write_folds_csv(out, kept):
    rows = sorted((item.id, fold) for item, fold in kept)
    _write_csv(os.path.join(out, schema.FOLDS_CSV), ("id", "fold"), rows)


def _write_errors_csv(path, errors):
    _write_csv(path, ("file", "reason"),
               [(f, r) for f, r, *_ in sorted(set(errors))])
