"""The shared training loop: resume gives the same weights, NaN stops, selection, cache, freeze."""
import pytest
import torch

from amodalkit.train import TrainingError, config_key, train, train_cached


def _model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


def _loss(model, step, generator):
    x = torch.randn(16, 4, generator=generator)
    target = x.sum(dim=1, keepdim=True) * torch.rand(1, generator=generator)
    return (torch.nn.functional.dropout(model(x), 0.1) - target).pow(2).mean()  # dropout draws from the global RNG


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_resume_after_interrupt_gives_identical_weights(tmp_path, interrupt):
    reference = train(_model(), _loss, steps=12, lr=1e-2, seed=5, run_device=torch.device("cpu"))
    calls = {"n": 0}

    def failing(model, step, generator):
        if step == 7 and calls["n"] == 0:
            calls["n"] += 1
            raise interrupt("stop")
        return _loss(model, step, generator)

    path = tmp_path / "run.pt"
    with pytest.raises(interrupt):
        train(_model(), failing, steps=12, lr=1e-2, seed=5, checkpoint=path, checkpoint_every=4,
              run_device=torch.device("cpu"))
    partial = path.with_name(path.name + ".partial")
    saved = torch.load(partial, weights_only=True)
    # an interrupt keeps every completed step; another error falls back to the last periodic checkpoint
    assert saved["step"] == (7 if interrupt is KeyboardInterrupt else 4)
    resumed = train(_model(), failing, steps=12, lr=1e-2, seed=5, checkpoint=path, checkpoint_every=4,
                    run_device=torch.device("cpu"))
    assert _same(resumed.model, reference.model)
    assert resumed.history["loss"] == reference.history["loss"]
    assert path.is_file() and not partial.exists()


def test_nan_loss_stops_with_a_clear_message():
    def nan_at_3(model, step, generator):
        loss = _loss(model, step, generator)
        return loss * float("nan") if step == 3 else loss

    with pytest.raises(TrainingError, match="NaN|nan") as err:
        train(_model(), nan_at_3, steps=10, lr=1e-2, seed=0)
    assert "step 3" in str(err.value) and "lr" in str(err.value)


def test_selection_returns_the_weights_with_the_lowest_validation_loss():
    values = iter([5.0, 2.0, 3.0, 4.0])
    snapshots = []

    def validate(model):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return next(values)

    result = train(_model(), _loss, steps=8, lr=1e-2, seed=0, validate=validate, validate_every=2)
    assert result.best_step == 4 and result.history["val_step"] == [2, 4, 6, 8]
    assert all(torch.equal(result.model.state_dict()[k], snapshots[1][k]) for k in snapshots[1])
    assert result.selected_val_loss == 2.0 and result.best_val_loss == 2.0
    # select="last": the final weights (the release's last checkpoint), the curve still recorded
    values = iter([5.0, 2.0, 3.0, 4.0])
    snapshots.clear()
    last = train(_model(), _loss, steps=8, lr=1e-2, seed=0, validate=validate, validate_every=2, select="last")
    assert last.best_step == 8 and last.history["val_loss"] == [5.0, 2.0, 3.0, 4.0]
    assert all(torch.equal(last.model.state_dict()[k], snapshots[3][k]) for k in snapshots[3])
    assert last.selected_val_loss == 4.0 and last.best_val_loss == 2.0


def test_validation_may_watch_scalars_beside_the_loss():
    values = iter([(3.0, 10), (1.0, 20), (2.0, 30)])

    def validate(model):
        loss, watched = next(values)
        return {"loss": loss, "active": watched}

    result = train(_model(), _loss, steps=6, lr=1e-2, seed=0, validate=validate, validate_every=2)
    assert result.history["val_loss"] == [3.0, 1.0, 2.0] and result.history["val_active"] == [10.0, 20.0, 30.0]
    assert result.best_step == 4  # selection still uses the loss alone
    with pytest.raises(ValueError, match="'loss'"):
        train(_model(), _loss, steps=2, lr=1e-2, seed=0, validate=lambda m: {"active": 1.0}, validate_every=1)


def test_what_a_validation_computes_leaves_the_training_unchanged():
    """A validation that runs the model and draws from the global RNG (as benchmarks/crw_gate_budget.py, which scores
    label propagation inside it) trains the same weights, BatchNorm statistics included, as no validation at all."""
    def busy_validation(model):
        model(torch.randn(32, 4))  # eval mode: the BatchNorm running statistics must not move
        return {"loss": float(torch.rand(())), "extra": float(torch.randn(()))}

    plain = train(_model(), _loss, steps=8, lr=1e-2, seed=5, run_device=torch.device("cpu"))
    watched = train(_model(), _loss, steps=8, lr=1e-2, seed=5, validate=busy_validation, validate_every=1,
                    select="last", run_device=torch.device("cpu"))
    assert len(watched.history["val_extra"]) == 8
    assert watched.history["loss"] == plain.history["loss"]
    assert _same(watched.model, plain.model)
    assert not _same(plain.model, _model())  # the runs did train


def test_cache_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    calls = {"n": 0}

    def counting(model, step, generator):
        calls["n"] += 1
        return _loss(model, step, generator)

    first = train_cached("toy", {"seed": 1, "lr": 1e-2}, _model, counting, steps=3, lr=1e-2)
    again = train_cached("toy", {"seed": 1, "lr": 1e-2}, _model, counting, steps=3, lr=1e-2)
    assert calls["n"] == 3 and again.from_cache and not first.from_cache
    assert _same(first.model.cpu(), again.model.cpu())
    assert config_key({"seed": 1}) != config_key({"seed": 2})
    train_cached("toy", {"seed": 2, "lr": 1e-2}, _model, counting, steps=3, lr=1e-2)
    assert calls["n"] == 6


def test_trainable_subset_leaves_the_rest_bit_identical():
    model = _model()
    frozen = {k: v.clone() for k, v in model[0].state_dict().items()}
    train(model, _loss, steps=5, lr=1e-1, seed=0, trainable=lambda m: list(m[3].parameters()))
    assert all(torch.equal(model[0].state_dict()[k].cpu(), frozen[k]) for k in frozen)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="steps"):
        train(_model(), _loss, steps=0, lr=1e-2, seed=0)
    with pytest.raises(ValueError, match="lr"):
        train(_model(), _loss, steps=2, lr=0.0, seed=0)
    with pytest.raises(ValueError, match="select must be 'best' or 'last'"):
        train(_model(), _loss, steps=2, lr=1e-2, seed=0, select="first")


def test_plateau_improvement_by_hand():
    from amodalkit.train import plateau_improvement

    history = {"val_step": [2, 4, 6, 8, 10], "val_loss": [10.0, 8.0, 5.0, 4.0, 3.6]}
    # best up to step 8 (the 80% mark) is 4.0, best overall 3.6: the last 20% still bought 10%
    assert plateau_improvement(history) == pytest.approx(0.1)
    flat = {"val_step": [2, 4, 6, 8, 10], "val_loss": [10.0, 8.0, 5.0, 4.0, 4.2]}
    assert plateau_improvement(flat) == 0.0
    with pytest.raises(ValueError, match="no validation losses"):
        plateau_improvement({"val_step": [], "val_loss": []})


def test_the_runner_learns_which_models_were_trained(tmp_path, monkeypatch):
    import json

    from amodalkit.book import training_summary

    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("AMODALKIT_TRAINING_LOG", str(log))
    train_cached("toy", {"seed": 1}, _model, _loss, steps=3, lr=1e-2)
    train_cached("toy", {"seed": 1}, _model, _loss, steps=3, lr=1e-2)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["from_cache"] for e in entries] == [False, True]
    summary = training_summary(log)
    assert summary["trained"] == 1 and summary["loaded"] == 1 and summary["train_seconds"] >= 0


def test_lr_schedule_scales_every_step_and_a_zero_multiplier_freezes_the_weights():
    from amodalkit.train import exponential_decay

    frozen_after = 5
    schedule = lambda step: 1.0 if step < frozen_after else 0.0  # noqa: E731
    seen = []

    def watching(model, step, generator):
        seen.append([p.detach().clone() for p in model.parameters()])
        return _loss(model, step, generator)

    model = torch.nn.Linear(4, 1)  # no BatchNorm: buffers would move without any update
    torch.manual_seed(0)
    train(model, watching, steps=9, lr=1e-2, seed=0, lr_schedule=schedule,
          run_device=torch.device("cpu"))
    final = [p.detach() for p in model.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(seen[1], seen[frozen_after]))  # moved while the multiplier was 1
    assert all(torch.equal(a, b) for a, b in zip(seen[frozen_after + 1], final))  # frozen once it is 0
    decay = exponential_decay(100, 0.375, 0.01)
    assert decay(0) == decay(37) == 1.0 and decay(99) == pytest.approx(0.01)
    assert all(decay(s) > decay(s + 1) for s in range(38, 99))


# ---------------------------------------------------------------- checkpoints that cannot be read (issue 18, item 6)
from amodalkit.train import CheckpointError, load_weights, read_checkpoint  # noqa: E402


def _cut(path, size=1000):
    data = path.read_bytes()
    path.write_bytes(data[:size])


@pytest.mark.parametrize("damage", ["truncated", "other_shapes", "wrong_keys"])
def test_an_unusable_cached_model_is_set_aside_with_a_warning_and_retrained(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("AMODALKIT_CACHE", str(tmp_path))
    first = train_cached("toy", {"seed": 1}, _model, _loss, steps=4, lr=1e-2, run_device=torch.device("cpu"))
    [path] = (tmp_path / "models").glob("toy-*.pt")
    if damage == "truncated":
        _cut(path)
    else:
        saved = torch.load(path, weights_only=True)
        if damage == "other_shapes":
            saved["model"]["0.weight"] = torch.zeros(3, 4)
        else:
            saved = {"weights": saved["model"]}
        torch.save(saved, path)
    with pytest.warns(UserWarning, match=rf"{path.name}.*(truncated|do not fit|expected an amodalkit).*training again"):
        again = train_cached("toy", {"seed": 1}, _model, _loss, steps=4, lr=1e-2, run_device=torch.device("cpu"))
    assert not again.from_cache and _same(first.model, again.model)  # retrained to the same weights
    assert len(list((tmp_path / "models").glob(f"{path.name}.unreadable-*"))) == 1  # kept for inspection
    assert train_cached("toy", {"seed": 1}, _model, _loss, steps=4, lr=1e-2).from_cache  # the new entry loads


def test_a_truncated_partial_checkpoint_restarts_the_run(tmp_path):
    reference = train(_model(), _loss, steps=8, lr=1e-2, seed=5, run_device=torch.device("cpu"))
    path = tmp_path / "run.pt"
    partial = path.with_name(path.name + ".partial")

    def stop_at_6(model, step, generator):
        if step == 6:
            raise KeyboardInterrupt
        return _loss(model, step, generator)

    with pytest.raises(KeyboardInterrupt):
        train(_model(), stop_at_6, steps=8, lr=1e-2, seed=5, checkpoint=path, run_device=torch.device("cpu"))
    _cut(partial, 500)
    with pytest.warns(UserWarning, match="run.pt.partial"):
        resumed = train(_model(), _loss, steps=8, lr=1e-2, seed=5, checkpoint=path, run_device=torch.device("cpu"))
    assert _same(resumed.model, reference.model) and len(resumed.history["loss"]) == 8


def test_a_checkpoint_given_by_hand_gets_an_error_naming_the_file_and_what_was_expected(tmp_path):
    model = _model()
    path = tmp_path / "given.pt"
    torch.save({"model": model.state_dict(), "method": "savos"}, path)
    with pytest.raises(CheckpointError, match=r"given.pt: holds a 'savos' model, expected 'crw'"):
        read_checkpoint(path, method="crw")
    _cut(path, 100)
    with pytest.raises(CheckpointError, match=r"given.pt: cannot be read as a PyTorch checkpoint \(100 bytes"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.pt")
    other = torch.nn.Sequential(torch.nn.Linear(4, 6))
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(CheckpointError, match=r"given.pt: its weights do not fit the toy: .*missing.*other shapes "
                                              r"\(0.weight: file \(6, 4\), the toy \(8, 4\)"):
        load_weights(model, other.state_dict(), path, "the toy")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # refused: the model is untouched


def test_ctrl_c_during_the_optimiser_step_keeps_the_step_whole(tmp_path, monkeypatch):
    """SIGINT arriving while Adam updates the weights takes effect after the step is applied and counted, so the
    checkpoint resumes to the uninterrupted weights (without the deferral, the step was applied but not counted)."""
    import os
    import signal

    reference = train(_model(), _loss, steps=6, lr=1e-2, seed=5, run_device=torch.device("cpu"))
    real_step = torch.optim.Adam.step
    calls = {"n": 0}

    def step_then_signal(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # delivered at once: inside the step's bookkeeping
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_signal)
    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_model(), _loss, steps=6, lr=1e-2, seed=5, checkpoint=path, run_device=torch.device("cpu"))
    assert torch.load(path.with_name("run.pt.partial"), weights_only=True)["step"] == 3
    monkeypatch.setattr(torch.optim.Adam, "step", real_step)
    resumed = train(_model(), _loss, steps=6, lr=1e-2, seed=5, checkpoint=path, run_device=torch.device("cpu"))
    assert _same(resumed.model, reference.model)


def test_validation_draws_from_the_same_global_rng_state_in_a_resumed_run(tmp_path):
    """A validation interrupted and made up on resume sees the global RNG it would have seen (seeded by its step)."""
    def noisy_validation(model):
        return float(torch.rand(()))  # draws from the global RNG

    reference = train(_model(), _loss, steps=6, lr=1e-2, seed=5, validate=noisy_validation, validate_every=2,
                      run_device=torch.device("cpu"))
    calls = {"n": 0}

    def interrupted_validation(model):
        calls["n"] += 1
        if calls["n"] == 2:  # the validation after step 4
            raise KeyboardInterrupt
        return noisy_validation(model)

    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_model(), _loss, steps=6, lr=1e-2, seed=5, validate=interrupted_validation, validate_every=2,
              checkpoint=path, run_device=torch.device("cpu"))
    resumed = train(_model(), _loss, steps=6, lr=1e-2, seed=5, validate=noisy_validation, validate_every=2,
                    checkpoint=path, run_device=torch.device("cpu"))
    assert resumed.history == reference.history
    assert _same(resumed.model, reference.model)
