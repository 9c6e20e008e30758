"""nn_from_scratch.viz: every figure renders headless to a PNG, and the missing-matplotlib message is clear."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from nn_from_scratch import Linear, Sequential, SoftMax, Tanh  # noqa: E402
from nn_from_scratch.viz import plot_history, plot_images, plot_jacobian  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def render(fig, tmp_path, name="figure.png"):
    assert isinstance(fig, Figure)
    path = tmp_path / name
    fig.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 100
    return path


# -------------------------------------------------------------------- jacobian
def test_plot_jacobian_of_a_batch_is_a_centred_heatmap(tmp_path, rng):
    node = SoftMax()
    x = rng.standard_normal((2, 4))
    fig = plot_jacobian(node, x)
    render(fig, tmp_path)
    heatmap, colorbar = fig.axes
    assert len(fig.axes) == 2
    image = heatmap.get_images()[0]
    matrix = image.get_array()
    assert matrix.shape == (8, 8)
    np.testing.assert_allclose(matrix, node.jacobian(x).reshape(8, 8))
    low, high = image.get_clim()
    assert low == -high and high == pytest.approx(np.abs(matrix).max())
    assert image.get_cmap().name == "RdBu_r"
    assert "input" in heatmap.get_xlabel() and "output" in heatmap.get_ylabel()
    assert [t.get_text() for t in heatmap.get_xticklabels()][:2] == ["0,0", "0,1"]
    assert len(heatmap.texts) == 64  # small matrices are annotated
    assert node.pending is None  # the node is left as it was


def test_plot_jacobian_of_a_network_and_of_a_constant_zero_jacobian(tmp_path, rng):
    model = Sequential(Linear(30, 20, rng=0), Tanh(), Linear(20, 12, rng=1))
    fig = plot_jacobian(model, rng.standard_normal(30), title="a small MLP", annotate=False)
    render(fig, tmp_path)
    assert fig.axes[0].get_title() == "a small MLP"
    assert fig.axes[0].get_images()[0].get_array().shape == (12, 30)
    assert not fig.axes[0].texts
    zero = plot_jacobian(Linear(2, 2, init="zeros"), np.ones(2))
    assert zero.axes[0].get_images()[0].get_clim() == (-1.0, 1.0)
    render(zero, tmp_path, "zero.png")


def test_plot_jacobian_needs_a_node():
    with pytest.raises(TypeError, match="needs a Node"):
        plot_jacobian(np.tanh, np.ones(3))


# --------------------------------------------------------------------- history
HISTORY = {
    "loss": [1.2, 0.8, 0.5, 0.4],
    "accuracy": [0.6, 0.75, 0.85, 0.9],
    "val_loss": [1.1, 0.9, 0.7, 0.65],
    "val_accuracy": [0.62, 0.7, 0.8, 0.82],
}


def test_plot_history_draws_loss_and_accuracy_train_and_validation(tmp_path):
    fig = plot_history(HISTORY)
    render(fig, tmp_path)
    assert len(fig.axes) == 2
    loss_axis, accuracy_axis = fig.axes
    assert loss_axis.get_title() == "loss" and accuracy_axis.get_title() == "accuracy"
    assert [line.get_label() for line in loss_axis.get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(accuracy_axis.get_lines()[1].get_ydata(), HISTORY["val_accuracy"])
    np.testing.assert_allclose(loss_axis.get_lines()[0].get_xdata(), [1, 2, 3, 4])


def test_plot_history_of_a_regression_and_chosen_keys(tmp_path):
    fig = plot_history({"loss": [3.0, 2.0], "val_loss": [3.5, 2.5]})
    assert len(fig.axes) == 1
    render(fig, tmp_path)
    assert len(plot_history(HISTORY, keys="loss").axes) == 1
    with pytest.raises(ValueError, match="no \\['iou'\\]"):
        plot_history(HISTORY, keys=["iou"])
    with pytest.raises(ValueError, match="empty"):
        plot_history({})


# ---------------------------------------------------------------------- images
def test_plot_images_with_labels_predictions_and_boxes(tmp_path, rng):
    images = rng.random((5, 1, 16, 16))
    labels, predictions = np.array([1, 2, 3, 4, 5]), np.array([1, 2, 0, 4, 0])
    boxes = np.array([[0.25, 0.25, 0.5, 0.5]] * 5)
    pred_boxes = boxes + 0.05
    fig = plot_images(images, labels, predictions, boxes=boxes, pred_boxes=pred_boxes, ncols=3)
    render(fig, tmp_path)
    assert len(fig.axes) == 5
    first = fig.axes[0]
    assert first.get_title() == "label 1\npred 1"
    assert first.title.get_color() == "green" and fig.axes[2].title.get_color() == "red"
    rectangles = [p for p in first.patches if isinstance(p, Rectangle)]
    assert len(rectangles) == 2
    true_box, predicted_box = rectangles
    assert true_box.get_xy() == (0.25 * 16 - 0.5, 0.25 * 16 - 0.5)
    assert true_box.get_width() == 8 and true_box.get_height() == 8
    assert matplotlib.colors.same_color(predicted_box.get_edgecolor(), "red")
    geometry = first.get_subplotspec().get_geometry()
    assert geometry[:2] == (2, 3)


def test_plot_images_accepts_three_and_two_dimensional_batches(tmp_path, rng):
    fig = plot_images(rng.random((3, 8, 8)))
    assert len(fig.axes) == 3 and fig.axes[0].get_title() == ""
    render(fig, tmp_path)
    flat = plot_images(rng.random((10, 64)), labels=np.arange(10), ncols=8)
    assert len(flat.axes) == 10
    render(flat, tmp_path, "flat.png")


def test_plot_images_checks_its_arguments(rng):
    with pytest.raises(ValueError, match="labels must have shape \\(3,\\)"):
        plot_images(rng.random((3, 8, 8)), labels=[1, 2])
    with pytest.raises(ValueError, match="boxes must have shape \\(3, 4\\)"):
        plot_images(rng.random((3, 8, 8)), boxes=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="shape"):
        plot_images(rng.random((3, 2, 8, 8)))
    with pytest.raises(ValueError, match="square"):
        plot_images(rng.random((3, 10)))
    with pytest.raises(ValueError, match="ncols"):
        plot_images(rng.random((3, 8, 8)), ncols=0)
    with pytest.raises(ValueError, match="empty"):
        plot_images(np.zeros((0, 8, 8)))


# --------------------------------------------------------- without matplotlib
@pytest.mark.parametrize(
    "call",
    [
        lambda: plot_jacobian(SoftMax(), np.ones(3)),
        lambda: plot_history(HISTORY),
        lambda: plot_images(np.zeros((1, 4, 4))),
    ],
)
def test_missing_matplotlib_gives_the_install_hint(monkeypatch, call):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'needs matplotlib.*pip install matplotlib \(or pip install "\.\[plot\]" from a checkout'):
        call()


def test_importing_viz_does_not_import_matplotlib():
    code = "import sys, nn_from_scratch.viz; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_save_figure_writes_into_the_named_folder_or_one_temporary_folder(tmp_path, monkeypatch):
    from nn_from_scratch import viz

    assert viz.available()
    target = tmp_path / "made" / "here"
    monkeypatch.setenv("NN_FROM_SCRATCH_FIGURES", str(target))
    path = viz.save_figure(plot_history({"loss": [1.0, 0.5]}), "curves.png")
    assert path == target / "curves.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    monkeypatch.delenv("NN_FROM_SCRATCH_FIGURES")
    first, second = viz.figures_directory(), viz.figures_directory()
    assert first == second and first.is_dir() and first != target
    explicit = viz.save_figure(plot_history({"loss": [1.0]}), "one.png", directory=tmp_path)
    assert explicit == tmp_path / "one.png" and explicit.is_file()


def test_save_figure_returns_the_path_it_wrote(tmp_path):
    """A name without a suffix is written as a PNG; the path returned is that file, not the bare name."""
    from nn_from_scratch import viz

    path = viz.save_figure(plot_history({"loss": [1.0, 0.5]}), "curves", tmp_path)
    assert path == tmp_path / "curves.png" and path.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]
    svg = viz.save_figure(plot_history({"loss": [1.0, 0.5]}), "curves.svg", tmp_path)
    assert svg == tmp_path / "curves.svg" and b"<svg" in svg.read_bytes()[:1000]
    with pytest.raises(ValueError, match="'.v2' is no image format"):
        viz.save_figure(plot_history({"loss": [1.0]}), "curves.v2", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "curves.svg"]


# ------------------------------------------------- figures a reader can read
def integer_ticks_shown(axis):
    low, high = axis.get_xlim()
    ticks = [t for t in axis.get_xticks() if low <= t <= high]
    return ticks, all(float(t).is_integer() for t in ticks)


def test_a_one_epoch_history_has_integer_epoch_ticks(tmp_path):
    fig = plot_history({"loss": [1.0], "val_loss": [1.1], "accuracy": [0.5], "val_accuracy": [0.6]})
    render(fig, tmp_path)
    for axis in fig.axes:
        ticks, integers = integer_ticks_shown(axis)
        assert ticks == [1] and integers
        assert axis.get_xlim()[0] < 1 < axis.get_xlim()[1]
    fig = plot_history({"loss": list(np.linspace(2, 1, 7))})
    ticks, integers = integer_ticks_shown(fig.axes[0])
    assert integers and 1 in ticks and 7 in ticks


def test_a_flat_curve_looks_flat(tmp_path):
    history = {"accuracy": [0.1003, 0.1015, 0.1009], "val_accuracy": [0.1003, 0.1003, 0.1003],
               "loss": [2.302, 2.295, 2.288]}
    fig = plot_history(history)
    render(fig, tmp_path)
    loss_axis, accuracy_axis = fig.axes
    low, high = accuracy_axis.get_ylim()
    assert high - low >= 0.1 and 0.0 <= low <= 0.1003 and 0.1015 <= high <= 1.0
    low, high = loss_axis.get_ylim()
    assert high - low >= 0.05 * 2.302 * (1 - 1e-12) and low <= 2.288 and high >= 2.302  # up to rounding
    # a curve that does move keeps its own range
    moving = plot_history({"accuracy": [0.2, 0.6, 0.9]}).axes[0].get_ylim()
    assert moving[0] <= 0.2 and 0.9 <= moving[1] <= 1.0 and moving[1] - moving[0] < 0.9


def test_plot_history_names_its_axes_the_run_and_the_held_out_split(tmp_path):
    fig = plot_history(HISTORY, title="an MLP on the digits", validation_label="test")
    render(fig, tmp_path)
    assert fig._suptitle is not None and fig._suptitle.get_text() == "an MLP on the digits"
    loss_axis, accuracy_axis = fig.axes
    assert loss_axis.get_ylabel() == "loss" and accuracy_axis.get_ylabel() == "accuracy"
    assert [t.get_text() for t in loss_axis.get_legend().get_texts()] == ["train", "test"]
    assert [line.get_label() for line in plot_history(HISTORY).axes[0].get_lines()] == ["train", "validation"]


def test_a_curve_that_spans_orders_of_magnitude_gets_a_log_axis_that_says_so(tmp_path):
    """A diverging validation loss beside a training loss of about 2: on a linear axis the latter lies flat on 0."""
    from nn_from_scratch.viz import LOG_SCALE_RATIO

    diverging = {"loss": [2.3, 2.1, 2.0], "val_loss": [2.2, 40.0, 9.0e3], "accuracy": [0.1, 0.2, 0.2]}
    loss_axis, accuracy_axis = plot_history(diverging).axes
    render(loss_axis.figure, tmp_path)
    assert loss_axis.get_yscale() == "log" and loss_axis.get_ylabel() == "loss (log scale)"
    low, high = loss_axis.get_ylim()
    assert low <= 2.0 and high >= 9.0e3
    assert accuracy_axis.get_yscale() == "linear" and accuracy_axis.get_ylabel() == "accuracy"
    # below the ratio, and with a value a log axis cannot show, the axis stays linear
    assert plot_history(HISTORY).axes[0].get_yscale() == "linear"
    just_below = {"loss": [1.0, LOG_SCALE_RATIO * 0.99]}
    assert plot_history(just_below).axes[0].get_yscale() == "linear"
    assert plot_history({"loss": [0.0, 1.0, 1e4]}).axes[0].get_yscale() == "linear"
    assert plot_history({"loss": [1.0, LOG_SCALE_RATIO]}).axes[0].get_yscale() == "log"


def test_axis_labels_say_what_a_metric_is(tmp_path):
    fig = plot_history(HISTORY, axis_labels={"loss": "loss: cross-entropy with label smoothing 0.1"})
    render(fig, tmp_path)
    loss_axis, accuracy_axis = fig.axes
    assert loss_axis.get_ylabel() == "loss: cross-entropy with label smoothing 0.1"
    assert accuracy_axis.get_ylabel() == "accuracy" and loss_axis.get_title() == "loss"
    with pytest.raises(ValueError, match="axis_labels names \\['iou'\\], which are not plotted"):
        plot_history(HISTORY, axis_labels={"iou": "mean IoU"})


def test_plot_images_title_shared_colour_scale_and_colorbar(tmp_path, rng):
    kernels = rng.standard_normal((16, 3, 3))
    limit = float(np.abs(kernels).max())
    fig = plot_images(kernels, ncols=8, cmap="RdBu_r", title="first-layer kernels", colorbar=True,
                      vmin=-limit, vmax=limit)
    render(fig, tmp_path)
    assert fig._suptitle.get_text() == "first-layer kernels"
    images = [axis for axis in fig.axes if axis.get_images()]
    assert len(images) == 16 and len(fig.axes) == 17  # and the colorbar's axes
    assert all(axis.get_images()[0].get_clim() == (-limit, limit) for axis in images)
    shared = plot_images(kernels, colorbar=True)  # without limits: one scale over all images
    clims = {axis.get_images()[0].get_clim() for axis in shared.axes if axis.get_images()}
    assert clims == {(float(kernels.min()), float(kernels.max()))}
    assert len(plot_images(kernels).axes) == 16 and plot_images(kernels)._suptitle is None


def test_plot_images_with_boxes_has_a_legend_for_the_colours(tmp_path, rng):
    boxes = np.array([[0.25, 0.25, 0.5, 0.5]] * 3)
    fig = plot_images(rng.random((3, 16, 16)), boxes=boxes, pred_boxes=boxes + 0.05)
    render(fig, tmp_path)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["true box (green)", "predicted box (red)"]
    handles = legend.legend_handles if hasattr(legend, "legend_handles") else legend.legendHandles
    assert matplotlib.colors.same_color(handles[0].get_edgecolor(), "lime")
    assert matplotlib.colors.same_color(handles[1].get_edgecolor(), "red")
    assert [t.get_text() for t in plot_images(rng.random((3, 16, 16)), boxes=boxes).legends[0].get_texts()] == \
        ["true box (green)"]
    assert not plot_images(rng.random((3, 16, 16))).legends
