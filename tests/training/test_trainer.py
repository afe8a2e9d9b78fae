"""The trainer end to end on a small synthetic SYSU-style folder: checkpoints, logs, exact resume,
DistributedDataParallel on gloo with two processes, the train/evaluate CLI.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]

from vireid.cli.main import main as cli  # noqa: E402
from vireid.errors import ArtifactError, ConfigError, DeviceError, TrainingError  # noqa: E402
from vireid.training.checkpoint import load_checkpoint  # noqa: E402
from vireid.training.config import TrainConfig  # noqa: E402
from vireid.training.data.synth import SysuConfig, generate_sysu  # noqa: E402
from vireid.training.evaluate import evaluate_checkpoint  # noqa: E402
from vireid.training.trainer import MAX_NONFINITE_STEPS, Trainer, resolve_device, train  # noqa: E402

TINY = {
    "model": {
        "name": "mspac",
        "backbone": "resnet_tiny",
        "width": 8,
        "input_size": [64, 32],
        "parts": [2, 1],
    },
    "sampler": {"num_ids": 3, "num_instances": 2, "iters_per_epoch": 2},
    "optim": {"lr": 0.05, "epochs": 2, "warmup_epochs": 1, "milestones": [2]},
    "run": {"device": "cpu", "eval_every": 1, "log_every": 1, "eval_batch": 32, "progress": False},
}


def _config(**overrides: object) -> TrainConfig:
    return TrainConfig.from_dict(TINY).with_overrides(overrides)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def test_training_writes_checkpoints_logs_and_the_data_fingerprint(sysu: Path, tmp_path: Path) -> None:
    result = train(_config(), sysu, tmp_path / "run")
    assert result.epochs_run == 2
    assert result.last.is_file() and result.best is not None and result.best.is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if r["event"] == "epoch"]
    steps = [r for r in records if r["event"] == "step"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert len(steps) == 4 and all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in steps)
    assert {"val_R1", "val_mAP", "images_per_s", "mecen", "gid", "pid"} <= set(epochs[-1])
    meta = json.loads(result.last.with_suffix(".json").read_text())
    assert meta["epoch"] == 2 and meta["step"] == 4
    assert meta["data"]["dataset"] == "sysu" and len(meta["data"]["sha256"]) == 64
    assert meta["data"]["identities"] == 8  # 12 ids - 4 test (val ids train too, as in the reference)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["backbone"] == "resnet_tiny"


def test_val_split_holds_the_val_identities_out_of_training(sysu: Path, tmp_path: Path) -> None:
    result = train(_config(**{"data.val_split": "val", "optim.epochs": 1}), sysu, tmp_path / "run")
    meta = json.loads(result.best.with_suffix(".json").read_text())
    assert meta["data"]["identities"] == 7  # 12 ids - 4 test - 1 val
    assert meta["metrics"]["best"]["split"] == "val"


def test_a_run_that_is_all_warm_up_says_so(sysu: Path, tmp_path: Path, caplog) -> None:
    config = _config(**{"optim.epochs": 1, "optim.warmup_epochs": 4, "run.eval_every": 0})
    with caplog.at_level(logging.WARNING, logger="vireid.train"):
        train(config, sysu, tmp_path / "run")
    (message,) = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert "optim.warmup_epochs (4) >= optim.epochs (1)" in message and "ends at 25%" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vireid.train"):
        train(_config(**{"run.eval_every": 0}), sysu, tmp_path / "run2")  # 1 warm-up epoch of 2
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]


def test_data_fingerprint_ignores_where_the_folder_lives(sysu: Path, tmp_path: Path) -> None:
    import shutil

    from vireid.training.data.sysu import SysuMM01
    from vireid.training.factory import data_fingerprint

    copy = tmp_path / "copy"
    shutil.copytree(sysu, copy)
    first = data_fingerprint("sysu", sysu, SysuMM01(sysu).train_set())
    second = data_fingerprint("sysu", copy, SysuMM01(copy).train_set())
    assert first["sha256"] == second["sha256"] and first["root"] != second["root"]
    victim = next((copy / "cam1").rglob("*.jpg"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    if int(victim.parent.name) in SysuMM01(copy).ids("train"):
        assert data_fingerprint("sysu", copy, SysuMM01(copy).train_set())["sha256"] != first["sha256"]


def test_resume_continues_exactly_where_the_run_stopped(sysu: Path, tmp_path: Path) -> None:
    straight = train(_config(), sysu, tmp_path / "straight")
    train(_config(**{"optim.epochs": 1}), sysu, tmp_path / "split")
    resumed = train(_config(), sysu, tmp_path / "split", resume=True)
    assert resumed.epochs_run == 1
    a, b = _state(straight.last), _state(resumed.last)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
        if '"step"' in line and '"event": "step"' in line
    ]
    assert steps == [1, 2, 3, 4]


def test_resume_takes_the_configs_optimizer_settings(sysu: Path, tmp_path: Path) -> None:
    """The loaded optimizer state used to bring back the old run's learning rate and weight decay,
    whatever `--resume --set optim.lr=...` said; a changed optimizer crashed with a KeyError."""
    train(_config(**{"optim.epochs": 1}), sysu, tmp_path / "run")
    trainer = Trainer(
        _config(**{"optim.lr": 0.0123, "optim.weight_decay": 0.02}), sysu, tmp_path / "run", resume=True
    )
    assert trainer.optimizer.param_groups[0]["base_lr"] == 0.0123
    decays = {g["name"]: g["weight_decay"] for g in trainer.optimizer.param_groups}
    assert decays == {"head": 0.02, "gem": 0.0}  # the GeM exponents never decay (see _optimizer)
    other = "adamw" if TINY["optim"].get("name", "sgd") == "sgd" else "sgd"
    with pytest.raises(ConfigError, match=r"trained with optim.name=.*--set optim.name="):
        Trainer(_config(**{"optim.name": other}), sysu, tmp_path / "run", resume=True)


def test_resume_after_a_crash_logs_each_step_once_and_refuses_nothing_to_do(
    sysu: Path, tmp_path: Path
) -> None:
    train(_config(**{"optim.epochs": 1}), sysu, tmp_path / "run")
    log = tmp_path / "run" / "metrics.jsonl"
    crashed = '{"event": "step", "epoch": 2, "step": 3, "loss": 9.9}\n'  # logged, then the process died
    log.write_text(log.read_text() + crashed)
    train(_config(), sysu, tmp_path / "run", resume=True)
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines() if '"event": "step"' in line]
    assert steps == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match=r"has trained 2 epochs.*optim.epochs=1; nothing to do"):
        Trainer(_config(**{"optim.epochs": 1}), sysu, tmp_path / "run", resume=True)


def test_resume_without_a_checkpoint_says_so(sysu: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint"):
        Trainer(_config(), sysu, tmp_path / "empty", resume=True)


def test_explicit_cuda_without_a_gpu_is_refused() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(DeviceError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize(
    "overrides",
    [[], ["--set", "loss.pid=0"]],
    ids=["every-parameter-used", "part-heads-unused"],  # loss.pid=0 leaves the part heads without gradients
)
def test_distributed_data_parallel_on_gloo_with_two_processes(
    sysu: Path, tmp_path: Path, overrides: list[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))  # JSON is YAML
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "vireid.cli.main",
        "train",
        "--config",
        str(config),
        "--data",
        str(sysu),
        "--out",
        str(tmp_path / "ddp"),
        "--set",
        "run.threads=1",
        *overrides,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((tmp_path / "ddp" / "last.json").read_text())
    assert meta["epoch"] == 2 and meta["step"] == 4
    state = _state(tmp_path / "ddp" / "last.safetensors")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_the_process_group_follows_the_training_device_not_the_machine() -> None:
    """`run.device: cpu` on a CUDA machine used to get NCCL, which cannot reduce CPU tensors."""
    from vireid.training.trainer import process_group_backend

    assert process_group_backend(torch.device("cpu")) == "gloo"
    assert process_group_backend(torch.device("cuda", 1)) == "nccl"


DDP_SCRIPT = """
import sys, numpy as np
from vireid.training.config import TrainConfig
from vireid.training.trainer import Trainer
cfg = TrainConfig.from_yaml(sys.argv[1]).with_overrides({"run.threads": 1, "run.eval_every": 0})
trainer = Trainer(cfg, sys.argv[2], sys.argv[3])
trainer.fit()
state = {k: v.detach().cpu().numpy() for k, v in trainer.criterion.state_dict().items()}
np.savez(f"{sys.argv[3]}/criterion-rank{trainer.rank}.npz", **state)
"""


def test_ddp_processes_keep_the_same_mecen_centres(sysu: Path, tmp_path: Path) -> None:
    """The loss's own parameters (MeCen's centres) are not in the DDP-wrapped model: without averaging
    their gradients, each process moved its centres towards its own batches (0.028 apart after 4 steps)."""
    config, script = tmp_path / "tiny.yaml", tmp_path / "ddp_train.py"
    config.write_text(json.dumps(TINY))
    script.write_text(DDP_SCRIPT)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    port = str(29500 + (os.getpid() + 500) % 1000)
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    out = tmp_path / "ddp"
    done = subprocess.run(
        [*command, str(script), str(config), str(sysu), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [np.load(out / f"criterion-rank{r}.npz") for r in (0, 1)]
    assert ranks[0].files and ranks[0].files == ranks[1].files
    for key in ranks[0].files:
        np.testing.assert_allclose(ranks[0][key], ranks[1][key], atol=1e-6, err_msg=key)


def test_train_and_evaluate_cli(sysu: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    run = tmp_path / "cli"
    code = cli(["train", "--config", str(config), "--data", str(sysu), "--out", str(run), "--epochs", "1"])
    assert code == 0
    assert "last checkpoint" in capsys.readouterr().out
    report, plot = tmp_path / "eval.json", tmp_path / "cmc.png"
    args = ["evaluate", "--checkpoint", str(run / "last.safetensors"), "--data", str(sysu)]
    code = cli([*args, "--trials", "2", "--device", "cpu", "--json", str(report), "--plot", str(plot)])
    assert code == 0
    table = capsys.readouterr().out
    assert "R1" in table and "mAP" in table
    data = json.loads(report.read_text())
    assert data["protocol"] == "sysu-all" and len(data["trials"]) == 2
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    direct = evaluate_checkpoint(run / "last.json", sysu, "sysu-all", trials=2, device="cpu")
    assert direct.mean()["R1"] == pytest.approx(data["mean"]["R1"])


def test_train_cli_reports_a_bad_override(
    sysu: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps(TINY))
    code = cli(["train", "--config", str(config), "--data", str(sysu), "--set", "optim.lr=-1"])
    assert code == 1
    assert "optim.lr" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["demo_cpu.yaml", "mspac_sysu.yaml", "mspac_regdb.yaml"])
def test_shipped_configs_load(name: str) -> None:
    config = TrainConfig.from_yaml(REPO / "configs" / name)
    from vireid.training.models.config import ModelConfig

    assert ModelConfig.from_dict(config.model).name == "mspac"


@pytest.mark.slow
def test_paper_scale_config_trains_one_step_and_evaluates(tmp_path: Path) -> None:
    data = tmp_path / "sysu"
    generate_sysu(data, SysuConfig(ids=40, seed=5, images_per_camera=4, test_ids=8, val_ids=2), workers=2)
    config = TrainConfig.from_yaml(REPO / "configs" / "mspac_sysu.yaml").with_overrides(
        {"sampler.iters_per_epoch": 1, "optim.epochs": 1, "run.eval_every": 0, "run.device": "cpu"}
    )
    result = train(config, data, tmp_path / "run")
    meta = json.loads(result.last.with_suffix(".json").read_text())
    assert meta["step"] == 1 and meta["model_config"]["backbone"] == "resnet50"
    table = evaluate_checkpoint(result.last, data, "sysu-all", trials=1, batch_size=32, device="cpu")
    assert 0.0 <= table.mean()["R1"] <= 1.0 and len(table.trials) == 1


def test_each_torchrun_process_takes_its_local_rank_gpu_with_cuda_set_device_faked(monkeypatch) -> None:
    """Device placement logic only: torch.cuda.set_device is replaced (no GPU here)."""
    import torch

    from vireid.training.trainer import _rank_device

    chosen: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert _rank_device(torch.device("cuda"), world=2) == torch.device("cuda", 1)
    assert _rank_device(torch.device("cuda", 0), world=2) == torch.device("cuda", 1)
    assert chosen == [torch.device("cuda", 1)] * 2
    assert _rank_device(torch.device("cuda"), world=1) == torch.device("cuda")  # single process: as asked
    assert _rank_device(torch.device("cpu"), world=2) == torch.device("cpu")


def test_non_finite_gradient_norms_are_counted_not_logged_as_infinity(caplog) -> None:
    from types import SimpleNamespace

    from vireid.training.trainer import Trainer

    amp = SimpleNamespace(_amp=True, step=3, _nonfinite_run=0)
    plain = SimpleNamespace(_amp=False, step=4, _nonfinite_run=0, out_dir=Path("runs/x"))
    assert Trainer._grad_record(amp, 2.5) == {"grad_norm": 2.5}
    assert Trainer._grad_record(amp, float("inf")) == {"amp_skipped_steps": 1.0}  # GradScaler skips it
    assert Trainer._grad_record(plain, float("nan")) == {"nonfinite_grad_steps": 1.0}
    assert "step 4: gradient norm is nan: step skipped" in caplog.text
    assert Trainer._grad_record(plain, 1.0) == {"grad_norm": 1.0} and plain._nonfinite_run == 0
    for _ in range(MAX_NONFINITE_STEPS - 1):
        Trainer._grad_record(plain, float("inf"))
    with pytest.raises(TrainingError, match=r"runs/x: the last 20 steps all had NaN/inf gradients"):
        Trainer._grad_record(plain, float("inf"))


def test_a_step_with_non_finite_gradients_is_skipped_without_amp(
    sysu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without AMP nothing else skips such a step: it used to be applied. The gradient norm is faked
    as NaN (the trainer's clip call, patched); the weights must end as they started."""
    import vireid.training.trainer as trainer_module

    trainer = Trainer(_config(**{"optim.epochs": 1, "run.eval_every": 0}), sysu, tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    monkeypatch.setattr(
        trainer_module.torch.nn.utils, "clip_grad_norm_", lambda *a, **k: torch.tensor(float("nan"))
    )
    trainer.fit()
    after = trainer.model.state_dict()
    trained = [k for k, v in before.items() if v.is_floating_point() and "running" not in k]
    assert trained and all(torch.equal(before[k], after[k]) for k in trained)


def test_a_diverging_run_stops_with_an_error_and_saves_no_nan_checkpoint(sysu: Path, tmp_path: Path) -> None:
    config = _config(**{"optim.lr": 1e38, "run.eval_every": 0})  # the first step overflows the weights
    with pytest.raises(TrainingError, match="training diverged"):
        train(config, sysu, tmp_path / "run")
    assert not (tmp_path / "run" / "last.safetensors").exists()
    text = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text  # the log stays valid JSON


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"model": {"backbone": "resnet51"}},
            ConfigError,
            "unknown backbone 'resnet51'; available backbones",
        ),
        ({"model": {"name": "mspacx"}}, ConfigError, "unknown model 'mspacx'; available models"),
        ({"model": {"pretrained": "/nowhere/r50.pth"}}, ArtifactError, "pretrained weights file not found"),
        ({"loss": {"mutual_mean": 1.0}}, ConfigError, "loss.mutual_mean needs modality logits"),
    ],
    ids=["backbone", "model", "weights", "loss"],
)
def test_a_config_that_cannot_build_fails_before_the_data_is_read(
    tmp_path: Path, change: dict, error: type, message: str
) -> None:
    """The data folder does not exist either: had the images been listed first, that error would come."""
    model = {"name": "mspac", "backbone": "resnet_tiny", **change.get("model", {})}
    config = TrainConfig.from_dict({"model": model, "loss": change.get("loss", {})})
    with pytest.raises(error, match=message):
        Trainer(config, tmp_path / "no-data", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_amp_scaler_state_is_saved_and_restored_with_a_fake_scaler(
    sysu: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our plumbing around torch's GradScaler (a stand-in here: AMP needs CUDA): a resumed AMP run
    continues at the scale it stopped at instead of 65536."""

    class FakeScaler:
        def __init__(self) -> None:
            self.state = {"scale": 1024.0, "_growth_tracker": 7}

        def state_dict(self) -> dict:
            return dict(self.state)

        def load_state_dict(self, state: dict) -> None:
            self.state = dict(state)

    monkeypatch.setattr(Trainer, "_amp", property(lambda self: True))
    monkeypatch.setattr(torch.amp, "GradScaler", lambda *a, **k: FakeScaler())
    trainer = Trainer(_config(**{"optim.epochs": 1}), sysu, tmp_path / "run")
    trainer.scaler.state["scale"] = 256.0
    trainer._save("last", 1)
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").amp_scaler == {
        "scale": 256.0,
        "_growth_tracker": 7,
    }
    resumed = Trainer(_config(), sysu, tmp_path / "run", resume=True)
    assert resumed.scaler.state == {"scale": 256.0, "_growth_tracker": 7}


def test_resume_needs_no_pretrained_file(sysu: Path, tmp_path: Path) -> None:
    """Every weight of a resumed run comes from its checkpoint: the ImageNet file it started from may be
    gone (it used to be required, and dropping it from the config crashed on the optimizer groups)."""
    from test_models import fake_torchvision_state

    weights = tmp_path / "resnet.pth"
    torch.save(fake_torchvision_state(width=TINY["model"]["width"]), weights)
    config = _config(**{"model.pretrained": str(weights)})
    train(config.with_overrides({"optim.epochs": 1}), sysu, tmp_path / "run")
    weights.unlink()
    assert train(config, sysu, tmp_path / "run", resume=True).epochs_run == 1


def test_a_failed_validation_keeps_the_epochs_training_simulated_failure(
    sysu: Path, tmp_path: Path, monkeypatch, caplog
) -> None:
    """The epoch's weights reach `last` before its validation's failure (SIMULATED here by an evaluation
    that raises) propagates; `--resume` then continues with the next epoch."""
    from vireid.training import trainer as trainer_module

    def failing_evaluation(*args, **kwargs):
        raise MemoryError("simulated: evaluation ran out of memory")

    monkeypatch.setattr(trainer_module, "evaluate_model", failing_evaluation)
    with caplog.at_level(logging.ERROR), pytest.raises(MemoryError, match="simulated"):
        train(_config(), sysu, tmp_path / "run")
    assert "validation after epoch 1 failed" in caplog.text and "--resume" in caplog.text
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").epoch == 1
    monkeypatch.undo()
    assert train(_config(), sysu, tmp_path / "run", resume=True).epochs_run == 1


def test_gem_exponents_take_no_weight_decay_and_clipping_covers_the_centres(
    sysu: Path, tmp_path: Path, monkeypatch
) -> None:
    """Under SGD the decay outweighed the GeM exponents' gradients and drove them below 1 (average
    pooling, gradient zero from there); the centres took unclipped steps with `optim.grad_clip` set."""
    from vireid.training.models.heads import GeM

    trainer = Trainer(_config(**{"optim.name": "sgd", "optim.grad_clip": 1.0}), sysu, tmp_path / "run")
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    exponents = {id(m.p) for m in trainer.model.modules() if isinstance(m, GeM)}
    assert {id(p) for p in groups["gem"]["params"]} == exponents and len(exponents) == 3  # global + 2 parts
    assert groups["gem"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] > 0
    clipped: list[set[int]] = []
    original = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        clipped.append({id(p) for p in params})
        return original(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    trainer.fit()
    centres = {id(p) for p in trainer.criterion.parameters() if p.requires_grad}
    assert centres and clipped and all(centres <= ids for ids in clipped)


def test_resuming_a_run_saved_before_the_gem_group_restarts_the_momentum_only(
    sysu: Path, tmp_path: Path, caplog
) -> None:
    """Checkpoints of earlier vireid versions hold [head] or [head, backbone] optimizer groups, without
    names; loading them into [head, gem] failed every resume."""
    train(_config(**{"optim.epochs": 1}), sysu, tmp_path / "run")
    description = tmp_path / "run" / "last.json"
    meta = json.loads(description.read_text())
    head, gem = meta["optimizer_param_groups"]
    del head["name"]
    head["params"] = head["params"] + gem["params"]  # the old layout: one group of everything
    meta["optimizer_param_groups"] = [head]
    description.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        resumed = train(_config(), sysu, tmp_path / "run", resume=True)
    assert resumed.epochs_run == 1 and "optimizer state of an older vireid" in caplog.text


def _conv_output_dtypes(trainer: Trainer) -> set[torch.dtype]:
    """Records the dtype of the first convolution's output in every forward pass of `trainer`'s model."""
    seen: set[torch.dtype] = set()
    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    return seen


@pytest.mark.parametrize(
    ("precision", "computes"),
    [("fp32", {torch.float32}), ("bf16", {torch.bfloat16, torch.float32})],
)
def test_cpu_precision_sets_what_the_training_steps_compute_in(
    sysu: Path, tmp_path: Path, precision: str, computes: set[torch.dtype]
) -> None:
    """bfloat16 autocast on the CPU (emulated where the CPU lacks AMX, so this runs anywhere): the steps
    compute in it; validation (float32), the weights, the losses and the checkpoint stay float32."""
    trainer = Trainer(_config(**{"run.cpu_precision": precision, "optim.epochs": 1}), sysu, tmp_path / "run")
    seen = _conv_output_dtypes(trainer)
    result = trainer.fit()
    assert seen == computes
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in records if r["event"] == "step")
    state = _state(result.last)
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    meta = json.loads(result.last.with_suffix(".json").read_text())
    assert (
        meta["computed_in"]
        == result.computed_in
        == {"fp32": "float32", "bf16": "bfloat16 autocast"}[precision]
    )


def test_cpu_precision_is_validated_and_names_the_yaml_boolean_trap(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run.cpu_precision must be one of fp32, bf16, auto, got 'half'"):
        _config(**{"run.cpu_precision": "half"})
    config = tmp_path / "off.yaml"
    config.write_text("run:\n  cpu_precision: off\n")
    with pytest.raises(ConfigError, match=r"run.cpu_precision must be str, got False .*quote the word"):
        TrainConfig.from_yaml(config)


@pytest.mark.parametrize(
    ("device", "amp", "precision", "amx", "expected"),
    [
        ("cpu", True, "fp32", True, None),
        ("cpu", True, "auto", True, torch.bfloat16),
        ("cpu", True, "auto", False, None),
        ("cpu", True, "bf16", False, torch.bfloat16),  # asked for: kept, with a warning
        ("cuda", True, "auto", True, torch.float16),  # run.amp decides on CUDA
        ("cuda", False, "bf16", True, None),
    ],
)
def test_autocast_type_by_device_and_cpu_features_with_the_amx_probe_faked(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    device: str,
    amp: bool,
    precision: str,
    amx: bool,
    expected: torch.dtype | None,
) -> None:
    from vireid.training import precision as module

    monkeypatch.setattr(module, "cpu_has_amx", lambda: amx)
    with caplog.at_level(logging.INFO, logger="vireid.train"):
        assert module.autocast_dtype(torch.device(device), amp, precision) == expected
    if precision == "bf16" and not amx and device == "cpu":
        assert "no AMX" in caplog.text and "slower than float32" in caplog.text


def test_the_amx_probe_answers_on_this_torch() -> None:
    from vireid.training.precision import cpu_has_amx

    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("needs Linux's /proc/cpuinfo to know the answer")
    flags = Path("/proc/cpuinfo").read_text().split()
    assert cpu_has_amx() is ("amx_tile" in flags)


def test_a_resume_in_another_precision_says_so_and_records_both(
    sysu: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`run.cpu_precision: auto` resolves per machine: a run moved between a CPU with AMX and one
    without would silently mix float32 and bfloat16 epochs and record only the last."""
    train(_config(**{"optim.epochs": 1, "run.eval_every": 0}), sysu, tmp_path / "run")
    with caplog.at_level(logging.WARNING, logger="vireid.train"):
        result = train(_config(**{"run.cpu_precision": "bf16"}), sysu, tmp_path / "run", resume=True)
    assert "trained its epochs 1-1 in float32, this run goes on in bfloat16 autocast" in caplog.text
    assert "--set run.cpu_precision=fp32" in caplog.text
    assert result.computed_in == "float32 to epoch 1, then bfloat16 autocast"
    assert load_checkpoint(result.last).computed_in == result.computed_in
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vireid.train"):  # resumed again in bfloat16: quiet
        again = _config(**{"run.cpu_precision": "bf16", "optim.epochs": 3})
        result = train(again, sysu, tmp_path / "run", resume=True)
    assert "this run goes on in" not in caplog.text
    assert result.computed_in == "float32 to epoch 1, then bfloat16 autocast"
