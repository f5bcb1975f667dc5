"""CSV tables with line numbers, so every error names the file and row."""

import csv
import os

from tfrecords_tools.items import BadInput


def read_rows(path: str, required: tuple = ()) -> list:
    """Reads a CSV into dicts of stripped strings, each with its line number.

    Header names are stripped (SIIM's stage-1 header is
    `ImageId, EncodedPixels`), as are values.

    Args:
        path: the CSV file.
        required: column names that must be present.

    Returns:
        A list of `(line_number, row_dict)`; the header is line 1.

    Raises:
        BadInput: the file is missing or unreadable, or lacks a column.

    Example:

    >>> rows = read_rows("train.csv", ("ImageId",))  # doctest: +SKIP
    >>> rows[0]                                       # doctest: +SKIP
    (2, {'ImageId': '0002cc93b.jpg', 'ClassId': '1', ...})
    """
    if not os.path.isfile(path):
        raise BadInput(path, "file not found")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise BadInput(path, "empty file") from None
            missing = [c for c in required if c not in header]
            if missing:
                raise BadInput(path, f"missing column {missing[0]!r}; "
                                     f"header: {','.join(header)}")
            rows = []
            for values in reader:
                line = reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise BadInput(path, f"row {line}: {len(values)} "
                                         f"fields, header has "
                                         f"{len(header)}")
                rows.append((line, {h: v.strip()
                                    for h, v in zip(header, values)}))
    except (UnicodeDecodeError, csv.Error) as e:
        raise BadInput(path, f"unreadable CSV: {e}") from None
    return rows
