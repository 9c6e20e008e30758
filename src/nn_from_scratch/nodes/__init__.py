"""All layers of the library, each a :class:`~nn_from_scratch.node.Node`."""
from ..context import Context
from ..node import Node
from ..node_shortcuts import ElementwiseNode, RowwiseNode
from .arithmetic import Add, Divide, Identity, Multiply, Scale, Subtract
from .activations import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh
from .combine import Chunk, Concat, Split, Stack
from .convolution import Conv2d
from .linear import Linear
from .matmul import MatMul
from .adaptive_pooling import AdaptiveAvgPool2d, GlobalAvgPool2d
from .pooling import AvgPool2d, MaxPool2d
from .reduction import Mean, Sum
from .regularization import BatchNorm1d, BatchNorm2d, Dropout
from .shape import Flatten, Reshape, Vectorization
from .softmax import LogSoftMax, NormalizedSoftMax, SoftMax
# tensor plumbing
from .indexing import Gather, IndexSelect
from .masking import MaskedFill, Where
from .permute import Permute, Transpose
from .shape import Squeeze, Unsqueeze
# the course's API: its two losses by the names it imported them under; criteria, not layers, so they stay out
# of __all__ (and of `from nn_from_scratch import *`); the library's own are nn_from_scratch.losses
from .course import MSELoss, SoftMaxLoss
# normalisation, activations, embedding and bilinear
from .activations_more import SELU, Hardswish, Hardtanh, LogSigmoid, Mish, PReLU, ReLU6, SiLU
from .bilinear import Bilinear
from .embedding import Embedding
from .group_norm import GroupNorm, InstanceNorm2d
from .layer_norm import LayerNorm, RMSNorm
from .softmin import Softmin
# convolution family
from .convolution1d import Conv1d
from .padding import ReflectionPad2d, ZeroPad2d
from .transposed_convolution import ConvTranspose2d
from .adaptive_pooling import AdaptiveMaxPool2d
from .pooling1d import AvgPool1d, MaxPool1d
from .resampling import Upsample
from .channel_dropout import Dropout2d
# recurrent layers
from .recurrent import GRU, LSTM, RNN, FirstOutput
from .recurrent_cells import GRUCell, LSTMCell, RNNCell
# attention and the transformer
from .attention import ScaledDotProductAttention, scaled_dot_product_attention
from .multihead_attention import MultiheadAttention
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from .transformer import TransformerDecoderBlock, TransformerEncoderLayer

__all__ = [
    "Add",
    "Chunk",
    "Concat",
    "Divide",
    "Identity",
    "MatMul",
    "Mean",
    "Multiply",
    "Scale",
    "Split",
    "Stack",
    "Subtract",
    "Sum",
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Context",
    "Dropout",
    "ELU",
    "ElementwiseNode",
    "Flatten",
    "GELU",
    "GlobalAvgPool2d",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "LogSoftMax",
    "Node",
    "NormalizedSoftMax",
    "ReLU",
    "Reshape",
    "RowwiseNode",
    "Sigmoid",
    "SoftMax",
    "Softplus",
    "Tanh",
    "Vectorization",
    # tensor plumbing
    "Gather",
    "IndexSelect",
    "MaskedFill",
    "Permute",
    "Squeeze",
    "Transpose",
    "Unsqueeze",
    "Where",
    # normalisation, activations, embedding and bilinear
    "Bilinear",
    "Embedding",
    "GroupNorm",
    "Hardswish",
    "Hardtanh",
    "InstanceNorm2d",
    "LayerNorm",
    "LogSigmoid",
    "Mish",
    "PReLU",
    "RMSNorm",
    "ReLU6",
    "SELU",
    "SiLU",
    "Softmin",
    # convolution family
    "Conv1d",
    "ConvTranspose2d",
    "AdaptiveMaxPool2d",
    "AvgPool1d",
    "MaxPool1d",
    "Upsample",
    "Dropout2d",
    "ReflectionPad2d",
    "ZeroPad2d",
    # recurrent layers
    "GRU",
    "GRUCell",
    "LSTM",
    "LSTMCell",
    "RNN",
    "RNNCell",
    "FirstOutput",
    # attention and the transformer
    "LearnedPositionalEmbedding",
    "MultiheadAttention",
    "ScaledDotProductAttention",
    "SinusoidalPositionalEncoding",
    "TransformerDecoderBlock",
    "TransformerEncoderLayer",
    "scaled_dot_product_attention",
]
