"""Competition plugins: one module per task turns raw files into records.

`get(task)` imports `tfrecords_tools.competitions.<task>` and checks that it
follows the contract below; `names()` lists the tasks. The converter, the
sample CLI and inspect only ever talk to a task through this contract.

Contract of a module `tfrecords_tools/competitions/<task>.py`
-------------------------------------------------------------

Constants:

- `CLASSES`: tuple of class names; `len(CLASSES)` is the label width K.
- `KIND`: "segmentation" (mask per class), "classification" (multi-hot
  labels) or "sequence" (per-slice labels of a series).
- `FOLD_STRATEGY`: what `cfg.data.fold_strategy == "auto"` means here:
  "stratified" (by `Item.stratum`), "grouped" (by `Item.group`,
  stratified when labels exist), "multilabel" (iterative stratification of
  `Item.labels`) or "random". See `tfrecords_tools.folds`.
- `KAGGLE_SLUG`: the competition's slug on Kaggle (`kaggle competitions
  download -c KAGGLE_SLUG`), named when the raw data is missing.
- `DEFAULT_SIZE`: `(height, width)` of the real images (for samples).
- `TEST_ITEMS`, `KERNEL_LIMIT_HOURS`, `TEST_UNIT` (optional): the
  competition's test count, its kernel's run-time limit (None: none) and
  what the count counts (default "image"; one example of the task's
  `decode`, a row group of the submission), for the budget line of
  `python -m kaggle_tf.kernel`.
- `CONFIG_KEYS` (optional): the `cfg.data` keys `encode_item` reads
  (e.g. `("windows",)`); a change to one of them makes the converter write
  the records again. Without it, every `cfg.data` key except `raw_dir`,
  `records_dir`, `image_size`, `shuffle_buffer` and `cache` counts. List
  `image_size` here if records are resized at conversion.

Functions (no TensorFlow import at module level: workers stay light):

- `make_sample(out_dir, n=None, size=None, seed=0) -> None`
  Writes a small dataset in the competition's exact Kaggle layout: CSVs
  with the real headers, images (or DICOMs) in the real folders, a sample
  submission. `n` = training samples (None: the module's default), `size`
  = `(height, width)` (None: `DEFAULT_SIZE`). The same seed gives the same
  bytes. Targets must be learnable from a few examples (strong contrast).
- `list_items(cfg, split="train", on_error=None) -> list[Item]`
  Reads and validates the CSVs of `cfg.data.raw_dir` and lists one
  `tfrecords_tools.items.Item` per future record, sorted by id. `split` is
  "train" or "test" (test items carry no labels). Bad rows (a missing file,
  an unknown class, malformed RLE, an id escaping the root via `../`) raise
  `BadInput(csv_path, "row N: ...")`; when `on_error` is given, call
  `on_error(bad_input)` instead and leave the item out. Use
  `readers.csv_table.read_rows` (line numbers) and `readers.paths.safe_join`.
  A plugin that reads file headers while listing may take a `workers=1`
  keyword (the converter's `--workers`) and read them with
  `readers.dicom.read_headers` (parallel, cached in `records_dir/.cache/`).
- `encode_item(item, cfg) -> dict`
  Reads the item's files and returns the record's features, keyed by
  `tfrecords_tools.schema` constants: `schema.ID` (str), `schema.IMAGE`
  (list of encoded image bytes, kept as stored when possible),
  `schema.IMAGE_FORMAT`, `schema.HEIGHT`, `schema.WIDTH`,
  `schema.CHANNELS`, and for train items the targets: `schema.MASK`
  (`encode.pack_mask(masks)`) and/or `schema.LABELS` (floats). Optional:
  `schema.GROUP`, `schema.SERIES`, `schema.POSITION`. Do not set
  `schema.FOLD`: the converter adds it. A bad file raises `BadInput(path,
  reason, item.id)`. Runs in worker processes: pure function of its args.
- `draw(features) -> np.ndarray` (optional)
  A `(height, width, 3)` uint8 picture of one record for `inspect`;
  `features` maps each schema key to its value(s) as parsed from the
  record (bytes / ints / floats, lists for list features). Without it,
  inspect shows the first image with the mask overlaid
  (`tfrecords_tools.draw.default_draw`).

The training side lives in `kaggle_tf/tasks/<task>.py` (parse spec and
decode for tf.data) and shares the keys of `tfrecords_tools.schema`.

Example:

>>> from tfrecords_tools import competitions
>>> steel = competitions.get("steel")
>>> steel.CLASSES
('1', '2', '3', '4')
>>> steel.make_sample("/tmp/steel", n=8, size=(64, 400))  # doctest: +SKIP
"""

import importlib
import os
import pkgutil

# The one list of tasks: every module of this package is a competition.
# The config schema, the training-side plugins (`kaggle_tf.tasks`) and the
# CLIs all read it from here.
TASKS = tuple(sorted(
    m.name for m in pkgutil.iter_modules([os.path.dirname(__file__)])
    if not m.name.startswith("_")))
KINDS = ("segmentation", "classification", "sequence")
REQUIRED = ("CLASSES", "KIND", "FOLD_STRATEGY", "make_sample",
            "list_items", "encode_item")


def names() -> tuple:
    """The task names accepted by `get`."""
    return TASKS


def get(task: str):
    """Imports the plugin module of `task` and checks its contract.

    Raises:
        ValueError: an unknown task (the message lists the choices), or a
            module missing part of the contract.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choices: "
                         f"{', '.join(TASKS)}")
    module = importlib.import_module(f"tfrecords_tools.competitions.{task}")
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        raise ValueError(f"tfrecords_tools.competitions.{task} lacks "
                         f"{', '.join(missing)} (see the contract in "
                         "tfrecords_tools.competitions)")
    if module.KIND not in KINDS:
        raise ValueError(f"tfrecords_tools.competitions.{task}.KIND must be "
                         f"one of {KINDS}. Received: {module.KIND!r}")
    return module
