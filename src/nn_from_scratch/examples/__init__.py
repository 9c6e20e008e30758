"""The course's example models: :mod:`~nn_from_scratch.examples.simple_nn` (``NeuralNetwork``)."""
