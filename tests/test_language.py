"""The character-level language task: the shipped corpus and its fixed split, the windows, ``train --task language``
(a small run end to end for the transformer, the LSTM and the GRU, the refusals) and ``sample``."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nn_from_scratch.cli import main
from nn_from_scratch.cli.language import FirstOutput, generate, language_model, validate_language_config
from nn_from_scratch.datasets import decode, encode, load_words, sequence_windows
from nn_from_scratch.files import load_layout
from nn_from_scratch.files import save_model as save_weights
from nn_from_scratch.registry import ARCHITECTURE_KEY, load_model

SMALL = ["--epochs", "1", "--context", "8", "--embed", "8", "--heads", "2", "--layers", "1", "--batch-size", "64",
         "--no-progress"]
SMALL_RECURRENT = [option for option in SMALL if option not in ("--heads", "2")]


def test_the_corpus_and_its_fixed_split():
    corpus = load_words()
    assert corpus.vocabulary == "\n" + "abcdefghijklmnopqrstuvwxyz"
    assert 100_000 < len(corpus.train) < 200_000 and 10_000 < len(corpus.validation) < 20_000
    assert decode(corpus.validation[:1], corpus.vocabulary) != "" and corpus.train[-1] == 0  # ends a word
    again = load_words()
    np.testing.assert_array_equal(again.train, corpus.train)
    np.testing.assert_array_equal(again.validation, corpus.validation)


def test_windows_and_codes():
    codes = np.arange(10)
    X, Y = sequence_windows(codes, 3)
    np.testing.assert_array_equal(X, [[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    np.testing.assert_array_equal(Y, X + 1)
    assert sequence_windows(codes, 3, step=1)[0].shape == (7, 3)
    assert decode(encode("ab\n", "\nab"), "\nab") == "ab\n"
    with pytest.raises(ValueError, match="not in the vocabulary"):
        encode("abc", "\nab")
    with pytest.raises(ValueError):
        sequence_windows(codes, 0)


def test_the_model_and_its_configuration():
    config = {"kind": "transformer_lm", "vocabulary": "\nab", "context": 4, "embed": 8, "heads": 2, "layers": 1,
              "dtype": "float64"}
    model = language_model(config, rng=0)
    assert model.forward(np.array([[0, 1, 2, 1]])).shape == (1, 3, 4)  # (N, classes, T)
    text = generate(model, "\nab", 4, 10, 0.8, seed=0)
    assert len(text) == 10 and set(text) <= set("\nab") and text == generate(model, "\nab", 4, 10, 0.8, seed=0)
    for bad in ({**config, "heads": 3}, {**config, "extra": 1}, {**config, "vocabulary": "aa"},
                {**config, "layers": True}, {**config, "dtype": "int8"}, [1, 2]):
        with pytest.raises(ValueError):
            validate_language_config(bad)


def test_train_reports_nats_per_character_saves_and_samples(tmp_path, capsys):
    out = tmp_path / "lm.npz"
    assert main(["train", "--task", "language", "--out", str(out), *SMALL]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith("validation loss"))
    nats = float(line.split()[2])
    assert 1.0 < nats < math.log(27) + 0.5 and "nats per character" in line and "sample" in printed
    assert main(["sample", "--weights", str(out), "--length", "50", "--temperature", "0.8", "--seed", "0"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", "--weights", str(out), "--length", "50", "--seed", "0"]) == 0
    assert capsys.readouterr().out == first and len(first.rstrip("\n")) <= 50
    _assert_saved_with_its_architecture(out, "TransformerDecoderBlock")
    # a file of the weights alone (as this command wrote them before) is read into the configuration's model
    metadata = {k: v for k, v in load_layout(out)[1].items() if k != ARCHITECTURE_KEY}
    weights_only = save_weights(tmp_path / "weights-only.npz", load_model(out), metadata)
    assert main(["sample", "--weights", str(weights_only), "--length", "50", "--seed", "0"]) == 0
    assert capsys.readouterr().out == first


def _assert_saved_with_its_architecture(out, layer):
    """The file rebuilds the model by itself (load_model(path)): the same logits as the configuration's model."""
    metadata = load_layout(out)[1]
    assert ARCHITECTURE_KEY in metadata and layer in json.dumps(metadata[ARCHITECTURE_KEY])
    model = load_model(out)
    twin = language_model(metadata["model"], rng=1)
    load_model(out, twin)
    codes = np.array([[0, 1, 2, 3, 1]])
    model.eval(), twin.eval()
    np.testing.assert_array_equal(model.evaluate(codes), twin.evaluate(codes))


@pytest.mark.parametrize("model", ["lstm", "gru"])
def test_a_recurrent_model_trains_saves_and_samples(tmp_path, capsys, model):
    out = tmp_path / f"{model}.npz"
    assert main(["train", "--task", "language", "--model", model, "--out", str(out), *SMALL_RECURRENT]) == 0
    printed = capsys.readouterr().out
    assert f"training a{'n' if model == 'lstm' else ''} {model.upper()} (1 layer," in printed
    line = next(line for line in printed.splitlines() if line.startswith("validation loss"))
    assert 1.0 < float(line.split()[2]) < math.log(27) + 0.5 and "sample" in printed
    assert main(["sample", "--weights", str(out), "--length", "50", "--seed", "0"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", "--weights", str(out), "--length", "50", "--seed", "0"]) == 0
    assert capsys.readouterr().out == first and 0 < len(first.rstrip("\n")) <= 50
    with pytest.raises(SystemExit):
        main(["sample", "--weights", str(out), "--attention", str(tmp_path / "maps.png")])
    assert "recurrent" in capsys.readouterr().err
    _assert_saved_with_its_architecture(out, model.upper())


@pytest.mark.parametrize("kind, layer", [("lstm_lm", "LSTM"), ("gru_lm", "GRU")])
def test_the_recurrent_models_and_their_configuration(kind, layer):
    config = {"kind": kind, "vocabulary": "\nab", "context": 4, "embed": 6, "layers": 2, "dtype": "float64"}
    model = language_model(config, rng=0)
    assert type(model[1]).__name__ == layer and model[1].num_layers == 2 and model[1].batch_first
    codes = np.array([[0, 1, 2, 1], [2, 2, 1, 0]])
    assert model.forward(codes).shape == (2, 3, 4)
    assert model.forward(codes[:, :2]).shape == (2, 3, 2)  # shorter windows, as sampling starts
    text = generate(model, "\nab", 4, 10, 0.8, seed=0)
    assert len(text) == 10 and text == generate(model, "\nab", 4, 10, 0.8, seed=0)
    for bad in ({**config, "heads": 2}, {**config, "layers": 0}, {**config, "kind": "rnn_lm"}):
        with pytest.raises(ValueError):
            validate_language_config(bad)


def test_first_output_keeps_the_sequence_and_gives_the_states_no_gradient():
    node = FirstOutput(3)
    x, h, c = np.ones((2, 3)), np.zeros((1, 3)), np.zeros((1, 3))
    np.testing.assert_array_equal(node.forward(x, h, c), x)
    gx, gh, gc = node.backward(np.full((2, 3), 2.0))
    np.testing.assert_array_equal(gx, np.full((2, 3), 2.0))
    assert gh is None and gc is None
    assert node.jacobian(x, h, c)[0].shape == (2, 3, 2, 3) and repr(node) == "FirstOutput(num_inputs=3)"
    with pytest.raises(ValueError):
        FirstOutput(0)


@pytest.mark.parametrize("argv, message", [
    (["--model", "lstm", "--heads", "2"], "--heads is for --model transformer"),
    (["--model", "gru", "--heads", "4"], "no attention heads"),
    (["--model", "cnn"], "is for --task classify"), (["--dataset", "mnist"], "word corpus"),
    (["--embed", "10", "--heads", "4"], "divisible")], ids=str)
def test_train_refusals(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--task", "language", "--out", str(tmp_path / "x.npz"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_language_options_are_refused_by_the_other_tasks(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--context", "16", "--heads", "2"])
    assert "--context, --heads only apply to --task language" in capsys.readouterr().err


def test_sample_refuses_weights_of_another_task(tmp_path, capsys):
    out = tmp_path / "mlp.npz"
    assert main(["train", "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["sample", "--weights", str(out)])
    assert "not a language model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample", "--weights", str(tmp_path / "missing.npz")])


@pytest.mark.parametrize("kind", ["transformer_lm", "lstm_lm", "gru_lm"])
def test_the_benchmarks_torch_twin_carries_our_weights_and_computes_our_logits(torch, kind):
    """benchmarks/transformer.py: the torch model the language comparison and the benchmark row train."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from transformer import benchmark_config, torch_twin

    config = {**benchmark_config(vocabulary=7, embed=8, heads=2, context=5, layers=2), "dtype": "float64",
              "kind": kind}
    if kind != "transformer_lm":
        del config["heads"]
    model = language_model(config, rng=0)
    twin = torch_twin(torch, config, model)
    codes = np.random.default_rng(1).integers(0, 7, (3, 5))
    with torch.no_grad():
        expected = twin(torch.from_numpy(codes)).numpy()
    np.testing.assert_allclose(model.forward(codes), expected, rtol=1e-10, atol=1e-12)


def test_sample_saves_the_attention_maps(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from nn_from_scratch import viz
    from nn_from_scratch.cli.language import attention_maps

    out = tmp_path / "lm.npz"
    assert main(["train", "--task", "language", "--out", str(out), *SMALL]) == 0
    picture = tmp_path / "maps.png"
    assert main(["sample", "--weights", str(out), "--length", "20", "--attention", str(picture)]) == 0
    assert picture.stat().st_size > 0 and "attention maps saved" in capsys.readouterr().err
    model = language_model({"kind": "transformer_lm", "vocabulary": "\nab", "context": 4, "embed": 8, "heads": 2,
                            "layers": 2, "dtype": "float64"}, rng=0)
    maps = attention_maps(model, np.array([1, 2, 0]))
    assert maps.shape == (2, 2, 3, 3) and np.all(np.triu(maps, 1) == 0)
    figure = viz.plot_attention(maps, ["a", "b", "\n"], title="maps")
    assert len(figure.axes) == 5  # four maps and the colour bar
    with pytest.raises(ValueError):
        viz.plot_attention(np.zeros((2, 3)), ["a"])
