"""Old home of im2col and col2im, kept so that existing imports work.

The textbook window functions (:func:`im2col`, :func:`col2im`,
:func:`conv_output_size`, :func:`as_pair`) now live in
:mod:`nn_from_scratch.nodes.windows`, the one window helper of convolution
and pooling; the stride-1 wide columns (:class:`WideColumns`,
``COLUMN_BLOCK_BYTES``) in the fast engine, :mod:`nn_from_scratch.engine.convolution`.
"""
from ..engine.convolution import COLUMN_BLOCK_BYTES, WideColumns
from .windows import Pair, as_pair, col2im, conv_output_size, im2col

__all__ = ["COLUMN_BLOCK_BYTES", "Pair", "WideColumns", "as_pair", "col2im", "conv_output_size", "im2col"]
