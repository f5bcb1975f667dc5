"""Configs: JSON recipes validated against a typed schema.

`load(path, overrides=[...])` reads a recipe, follows `extends`, applies
`--set a.b=value` overrides (JSON-typed) and validates every key.
"""

from kaggle_tf.config.load import ConfigError
from kaggle_tf.config.load import ConfigKeyDeprecationWarning
from kaggle_tf.config.load import from_dict
from kaggle_tf.config.load import load
from kaggle_tf.config.load import load_or_exit
from kaggle_tf.config.load import members
from kaggle_tf.config.load import parse_folds
from kaggle_tf.config.load import save
from kaggle_tf.config.schema import Config

__all__ = ["Config", "ConfigError", "ConfigKeyDeprecationWarning",
           "from_dict", "load", "load_or_exit", "members", "parse_folds",
           "save"]
