"""Resolving ids from CSVs into paths that cannot leave the data root."""

import os

from tfrecords_tools.items import BadInput


def safe_join(root: str, *parts: str, source: str = None,
              row: int = None) -> str:
    """`root/parts...`, refusing ids that escape `root` (`../`, absolute).

    Args:
        root: the competition folder.
        *parts: path components taken from a CSV or a listing.
        source: the file the parts came from (named in the error).
        row: the line number in `source` (named in the error).

    Returns:
        The joined, normalized path.

    Raises:
        BadInput: the path leaves `root`.

    Example:

    >>> safe_join("/data", "train_images", "a.jpg")
    '/data/train_images/a.jpg'
    """
    joined = os.path.normpath(os.path.join(root, *parts))
    base = os.path.normpath(root)
    inside = os.path.commonpath([os.path.abspath(base),
                                 os.path.abspath(joined)])
    if inside != os.path.abspath(base) or any(
            os.path.isabs(p) for p in parts):
        where = f"row {row}: " if row is not None else ""
        raise BadInput(source or joined,
                       f"{where}path {os.path.join(*parts)!r} escapes the "
                       f"data folder {root}")
    return joined
