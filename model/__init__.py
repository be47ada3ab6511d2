"""Export-friendly Shunted Transformer: ``create_model(name, ...)``, ``list_models()``."""
from common.digest import file_sha256

from .checkpoint import CheckpointError, read_checkpoint, save_checkpoint, save_with_meta
from .factory import ModelError, check_memory, create_model, list_models, make_meta
from .shunted import VARIANTS, ShuntedConfig, ShuntedTransformer, check_input_size

__all__ = ["CheckpointError", "ShuntedConfig", "ShuntedTransformer", "VARIANTS", "check_input_size", "check_memory",
           "create_model", "file_sha256", "list_models", "make_meta", "ModelError", "read_checkpoint", "save_checkpoint", "save_with_meta"]
