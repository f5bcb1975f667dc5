"""What a competition module hands to the converter: `Item`, `BadInput`.

An `Item` is one future record: its id, the files it reads, its labels and
the keys that folds are built from. Items are plain picklable data, so they
travel to worker processes.

Example:

>>> item = Item(id="0002cc93b.jpg", paths=("train_images/0002cc93b.jpg",),
...             labels=(1, 0, 0, 0))
>>> item.stratum
'1000'
"""

import dataclasses
from typing import Any
from typing import Optional


class BadInput(ValueError):
    """An unusable input: a missing, corrupt or truncated file, a bad row.

    Args:
        path: the file at fault (the image, or the CSV for a bad row).
        reason: what is wrong, e.g. "row 12: malformed RLE".
        item_id: the record it belongs to, when known.

    Example:

    >>> str(BadInput("train.csv", "row 3: ClassId must be 1..4"))
    'train.csv: row 3: ClassId must be 1..4'
    """

    def __init__(self, path: str, reason: str,
                 item_id: Optional[str] = None):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason
        self.item_id = item_id

    def __reduce__(self):
        return (BadInput, (self.path, self.reason, self.item_id))


@dataclasses.dataclass(frozen=True)
class Item:
    """One record to write.

    Attributes:
        id: the competition's id, unique within a split.
        paths: the files `encode_item` reads (absolute or relative to
            `cfg.data.raw_dir`); they enter the input hash.
        labels: class presence / multi-hot, used for stratified folds and
            the per-class counts of the manifest. Empty for test items.
        group: patient / study id; items of a group share a fold.
        strata: stratification key; defaults to the labels as a string.
        data: task payload for `encode_item` (RLE strings, row numbers,
            DICOM tags...). Must be picklable.
    """

    id: str
    paths: tuple = ()
    labels: tuple = ()
    group: Optional[str] = None
    strata: Optional[str] = None
    data: Any = dataclasses.field(default_factory=dict)

    @property
    def stratum(self) -> str:
        """The stratification key: `strata`, else the label pattern."""
        if self.strata is not None:
            return self.strata
        return "".join(str(int(v > 0)) for v in self.labels)
