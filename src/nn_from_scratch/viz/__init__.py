r"""Pictures of what the library computes: Jacobians, training curves, images with boxes.

Every function returns a :class:`matplotlib.figure.Figure` built directly
(no ``pyplot``, so no global state and no window): save it with
``fig.savefig("out.png")`` or show it in a notebook by leaving it as the last
expression of a cell.  Works headless.

* :func:`plot_jacobian` -- the Jacobian :math:`\partial y_i/\partial x_j` of a
  node as a heatmap, blue negative, red positive, white zero: backpropagation
  made visible (the block diagonal of a row-wise node, the dense block of a
  ``Linear``, the rank-one correction of a softmax).
* :func:`plot_history` -- loss and accuracy per epoch, train and validation,
  from the history :meth:`~nn_from_scratch.NeuralNetwork.fit` returns (a
  log axis where a curve spans orders of magnitude).
* :func:`plot_images` -- a grid of images with labels, predictions and
  bounding boxes (true in green, predicted in red).
* :func:`plot_confusion_matrix` -- counts of (true, predicted) classes, with
  each row's share (:func:`confusion_matrix` computes it without matplotlib).
* :func:`plot_worst_mistakes` -- the wrong predictions made with the highest
  confidence, with their true and predicted class names
  (:func:`worst_mistakes` picks them).
* :func:`plot_attention` -- the attention probabilities of a transformer on
  a sequence, one heatmap per layer and head (query rows, key columns).
* :func:`available` and :func:`save_figure` -- for scripts that draw only
  when matplotlib is installed, into the folder named by the
  ``NN_FROM_SCRATCH_FIGURES`` environment variable (else a new temporary one);
  ``save_figure`` returns the path it wrote (``.png`` added to a bare name).

* :func:`bptt_jacobians` and :func:`plot_bptt` -- backpropagation through
  time made visible: the explicit step Jacobians
  :math:`\partial s_t/\partial s_{t-1}` of an RNN, LSTM or GRU along one
  sequence, :math:`\lVert \partial h_T/\partial h_t \rVert` and the singular
  values of their products, plotted against :math:`t` (the vanishing or
  exploding gradient, measured).

The functions live in ``viz.plots``, ``viz.classification``, ``viz.sequences``,
``viz.attention`` and ``viz.figures``; import them from ``nn_from_scratch.viz``.

Needs matplotlib, an optional extra: ``pip install matplotlib`` (or ``pip install ".[plot]"`` from a checkout).
"""
from .classification import confusion_matrix, plot_confusion_matrix, plot_worst_mistakes, worst_mistakes
from .figures import available, figures_directory, save_figure
from .plots import LOG_SCALE_RATIO, MIN_RELATIVE_SPAN, MIN_SHARE_SPAN, plot_history, plot_images, plot_jacobian
# backpropagation through time
from .sequences import BPTTJacobians, bptt_jacobians, plot_bptt
# attention maps
from .attention import plot_attention

__all__ = ["LOG_SCALE_RATIO", "MIN_RELATIVE_SPAN", "MIN_SHARE_SPAN", "available", "confusion_matrix",
           "figures_directory", "plot_confusion_matrix", "plot_history", "plot_images", "plot_jacobian",
           "plot_worst_mistakes", "save_figure", "worst_mistakes",
           # backpropagation through time
           "BPTTJacobians", "bptt_jacobians", "plot_bptt",
           # attention maps
           "plot_attention"]
