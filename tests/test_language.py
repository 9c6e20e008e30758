"""The character-level language task: the shipped corpus and its fixed split, the windows, ``train --task language``
(a small run end to end, the refusals) and ``sample``."""
from __future__ import annotations

import math

import numpy as np
import pytest

from nn_from_scratch.cli import main
from nn_from_scratch.cli.language import generate, language_model, validate_language_config
from nn_from_scratch.datasets import decode, encode, load_words, sequence_windows

SMALL = ["--epochs", "1", "--context", "8", "--embed", "8", "--heads", "2", "--layers", "1", "--batch-size", "64",
         "--no-progress"]


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


@pytest.mark.parametrize("argv, message", [
    (["--model", "lstm"], "recurrent layers"), (["--model", "gru"], "recurrent layers"),
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


def test_the_benchmarks_torch_twin_carries_our_weights_and_computes_our_logits(torch):
    """benchmarks/transformer.py: the torch model the language comparison and the benchmark row train."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    from transformer import benchmark_config, torch_twin

    config = {**benchmark_config(vocabulary=7, embed=8, heads=2, context=5, layers=2), "dtype": "float64"}
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
