"""Models out of and into other formats: ONNX export (``to_onnx``) and import (``from_onnx``).

``onnx`` (and ``onnxruntime``, which the tests check the exports with) is
the optional extra ``onnx``: imported on first use.
"""
from .onnx_export import DEFAULT_OPSET, to_onnx, to_onnx_model
from .onnx_import import from_onnx

__all__ = ["DEFAULT_OPSET", "from_onnx", "to_onnx", "to_onnx_model"]
