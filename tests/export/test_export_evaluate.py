"""`vireid evaluate` on exported artifacts: the same protocol through the runtime backend gives the
checkpoint's numbers (FP32) or close to them (FP16), in both directions, with deltas and parity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vireid.cli.main import main
from vireid.training.evaluate import evaluate_any


def test_onnx_scores_like_its_checkpoint_in_both_directions(
    tiny_checkpoint: Path, tiny_onnx: Path, tiny_sysu: Path
) -> None:
    for reverse in (False, True):
        torch_result = evaluate_any(
            tiny_checkpoint, tiny_sysu, "sysu-all", trials=2, device="cpu", reverse=reverse
        )
        onnx_result = evaluate_any(tiny_onnx, tiny_sysu, "sysu-all", trials=2, device="cpu", reverse=reverse)
        assert onnx_result.direction == torch_result.direction
        assert onnx_result.mean() == pytest.approx(torch_result.mean(), abs=1e-3)
    forward = evaluate_any(tiny_onnx, tiny_sysu, "sysu-all", trials=2, device="cpu")
    backward = evaluate_any(tiny_onnx, tiny_sysu, "sysu-all", trials=2, device="cpu", reverse=True)
    assert (forward.direction, backward.direction) == ("infrared→visible", "visible→infrared")
    # reversed: the visible gallery images of a trial are the queries, the infrared query set the gallery
    assert backward.trials[0].num_query == forward.trials[0].num_gallery
    assert backward.trials[0].num_gallery == forward.trials[0].num_query


def _recording(kind: type, embedded: list[tuple[Path, int]]):
    original = kind.__call__

    def call(self, paths, modality):
        embedded.extend((p, int(modality)) for p in paths)
        return original(self, paths, modality)

    return call


def test_both_directions_share_one_model_load_and_embed_each_image_once(
    tiny_checkpoint: Path, tiny_onnx: Path, tiny_sysu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vireid.training import evaluate as evaluation

    loads: list[str] = []
    load_model, open_artifact = evaluation.load_model, evaluation.ArtifactEmbedder.__init__

    def counted_load(*args, **kwargs):
        loads.append("checkpoint")
        return load_model(*args, **kwargs)

    def counted_open(self, *args, **kwargs):
        loads.append("artifact")
        open_artifact(self, *args, **kwargs)

    monkeypatch.setattr(evaluation, "load_model", counted_load)
    monkeypatch.setattr(evaluation.ArtifactEmbedder, "__init__", counted_open)
    for model, kind in (
        (tiny_onnx, evaluation.ArtifactEmbedder),
        (tiny_checkpoint, evaluation.TorchEmbedder),
    ):
        embedded: list[tuple[Path, int]] = []
        monkeypatch.setattr(kind, "__call__", _recording(kind, embedded))
        loads.clear()
        both = evaluation.evaluate_directions(model, tiny_sysu, "sysu-all", trials=2, device="cpu")
        assert len(loads) == 1  # one model load serves both directions
        assert embedded and len(embedded) == len(set(embedded))  # nothing embedded twice
        for reverse in (False, True):
            alone = evaluate_any(model, tiny_sysu, "sysu-all", trials=2, device="cpu", reverse=reverse)
            assert both[reverse].direction == alone.direction and both[reverse].mean() == alone.mean()


def test_evaluate_cli_compares_an_fp16_artifact_with_its_checkpoint(
    tiny_checkpoint: Path,
    tiny_fp16: Path,
    tiny_sysu: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "eval.json"
    argv = ["evaluate", str(tiny_fp16), "--data", str(tiny_sysu), "--trials", "2", "--device", "cpu"]
    argv += ["--reference", str(tiny_checkpoint), "--both-directions", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "delta: tiny.fp16.onnx minus tiny.safetensors" in text
    assert "infrared→visible" in text and "visible→infrared" in text and "result" in text  # parity report
    report = json.loads(out.read_text())
    assert set(report["delta"]) == {"infrared→visible", "visible→infrared"}
    for row in report["delta"].values():
        assert set(row) == {"R1", "mAP", "mINP"} and all(abs(v) < 5.0 for v in row.values())
    assert report["parity"]["passed"] is True


def test_evaluate_cli_errors_name_the_file(tiny_sysu: Path, tmp_path: Path, capsys) -> None:
    assert main(["evaluate", str(tmp_path / "nope.onnx"), "--data", str(tiny_sysu)]) == 1
    assert "nope.onnx: no such file" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tiny_sysu)]) == 1
    assert "pass the model once" in capsys.readouterr().err


def test_evaluate_cli_refuses_a_wrong_layout_before_loading_the_model(
    tiny_sysu: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from vireid.training import evaluate

    loaded = []
    monkeypatch.setattr(evaluate, "evaluate_directions", lambda *a, **k: loaded.append(a))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read: the dataset is refused first")
    assert main(["evaluate", str(model), "--data", str(tiny_sysu), "--protocol", "regdb-v2t"]) == 1
    assert (
        "folders missing: Visible, Thermal, idx; this looks like a SYSU-MM01 folder"
        in capsys.readouterr().err
    )
    assert loaded == []


def test_evaluating_an_onnx_artifact_never_imports_torch(tiny_onnx: Path, tiny_sysu: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from vireid.training.evaluate import evaluate_any\n"
        f"r = evaluate_any({str(tiny_onnx)!r}, {str(tiny_sysu)!r}, 'sysu-all', trials=1, device='cpu')\n"
        "print(round(r.mean()['R1'], 6), 'torch' in sys.modules, 'onnx' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[1:] == ["False", "False"], out


def test_flip_makes_an_embedding_mirror_invariant(tiny_checkpoint: Path, tiny_onnx: Path) -> None:
    import numpy as np

    from vireid.training.evaluate import ArtifactEmbedder, TorchEmbedder, load_model

    net, size = load_model(tiny_checkpoint)
    images = np.random.default_rng(0).integers(0, 256, (3, *size, 3), dtype=np.uint8)
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    artifact = ArtifactEmbedder(tiny_onnx, "cpu")
    for plain, flipped in (
        (TorchEmbedder(net, size), TorchEmbedder(net, size, flip=True)),
        (artifact, ArtifactEmbedder(tiny_onnx, "cpu", flip=True)),
    ):
        assert not np.allclose(plain.embed_arrays(images, 0), plain.embed_arrays(mirrored, 0), atol=1e-4)
        both = flipped.embed_arrays(images, 0)
        np.testing.assert_allclose(both, flipped.embed_arrays(mirrored, 0), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)


def test_evaluate_cli_test_time_options_are_applied_and_named(
    tiny_onnx: Path, tiny_sysu: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", str(tiny_onnx), "--data", str(tiny_sysu), "--trials", "2", "--device", "cpu"]
    plain = evaluate_any(tiny_onnx, tiny_sysu, "sysu-all", trials=2, device="cpu")
    assert main([*argv, "--flip", "--rerank", "5,2,0.5", "--json", str(tmp_path / "r.json")]) == 0
    title = "mirror-averaged embeddings, k-reciprocal re-ranking (k1 5, k2 2, λ 0.5)"
    assert title in capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["flip"] is True and report["rerank"] == {"k1": 5, "k2": 2, "weight": 0.5}
    assert report["mean"] != plain.mean()
    assert plain.to_dict()["flip"] is False and plain.to_dict()["rerank"] is None
    assert main([*argv, "--rerank", "5,2"]) == 1
    assert "K1,K2,WEIGHT such as 20,6,0.3; got '5,2'" in capsys.readouterr().err
