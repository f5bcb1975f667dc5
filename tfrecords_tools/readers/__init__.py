"""Raw file readers: CSV tables, image files, RLE strings, safe paths.

Each reader turns one raw file into numpy arrays or rows plus metadata and
raises `tfrecords_tools.items.BadInput` naming the file (and row) when the
input is unusable.
"""
