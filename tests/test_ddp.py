"""Training under torchrun (issue 18, item 2): 2 CPU processes (gloo) equal one process averaging their gradients.

Each rank draws its batch with the generator of (seed, step, rank). With GroupNorm (SaVos) the ranks' forwards are
independent of each other, so two processes with batch B/2 each are one process averaging the two half-batch
gradients. With BatchNorm on the CPU (CRW) each rank normalises with its own batch statistics and DDP keeps rank 0's
running statistics (broadcast at every forward): the test holds that too, buffers included. (On CUDA, SyncBatchNorm
normalises over every rank's samples instead; not testable on this machine.)
"""
import copy
import os

import pytest
import torch
import torch.multiprocessing as mp

from amodalkit.profiles import resolve
from amodalkit.train import TrainingCaptured, redirect_training, step_generator, step_seed, train

STEPS, SEED = 3, 4


def _problem(method: str):
    """The target's make_model, loss_fn and training arguments from the chapter's smoke recipe, per-rank batch 1."""
    from amodalkit.train_cli import METHODS, per_rank_batches

    spec = METHODS[method]
    params = resolve(spec.notebook, "smoke", {"batch": 2})
    params.update({name: p.default for name, p in spec.extra.items()})
    params = per_rank_batches(method, params, 2)
    try:
        with redirect_training(lambda name, config: spec.target(params, name, config), None):
            spec.run(params, SEED, {}, None)
    except TrainingCaptured as captured:
        return captured
    raise AssertionError("the recipe trained no target")


def _worker(rank: int, world: int, init_file: str, method: str, out: str, interrupt_at: int = -1) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        captured = _problem(method)

        def loss_fn(model, step, generator):
            if step == interrupt_at:  # Ctrl-C reaches every process of a torchrun job
                raise KeyboardInterrupt
            return captured.loss_fn(model, step, generator)

        train(captured.make_model(), loss_fn, steps=STEPS, lr=captured.train_kwargs["lr"], seed=SEED,
              run_device=torch.device("cpu"), checkpoint=out, checkpoint_every=2)
    except KeyboardInterrupt:
        pass
    finally:
        dist.destroy_process_group()


def _averaged_reference(captured, world: int = 2):
    """One process: every rank's loss on its own copy of the model, gradients averaged, one Adam step; rank 0's
    buffers kept (what DDP broadcasts)."""
    models = [captured.make_model() for _ in range(world)]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    for m in models:
        m.train()
    optimizer = torch.optim.Adam([p for p in models[0].parameters() if p.requires_grad], lr=captured.train_kwargs["lr"])
    for step in range(STEPS):
        grads = []
        for rank, m in enumerate(models):
            m.zero_grad(set_to_none=True)
            torch.manual_seed(step_seed(SEED, step, rank))
            captured.loss_fn(m, step, step_generator(SEED, step, rank)).backward()
            grads.append([p.grad for p in m.parameters()])
        for p, *per_rank in zip(models[0].parameters(), *grads):
            present = [g for g in per_rank if g is not None]
            p.grad = None if not present else sum(present) / world
        optimizer.step()
        for m in models[1:]:
            m.load_state_dict(models[0].state_dict())  # parameters as all-reduced, buffers as rank 0 broadcasts
    return models[0].state_dict()


@pytest.mark.parametrize("method", ["savos", "crw"])
def test_two_cpu_processes_equal_one_process_averaging_their_gradients(tmp_path, method):
    # one thread here as in the workers: the same kernels and summation orders. (With 2 threads here, the last bias
    # of SaVos's mask decoder, whose gradient is near zero, ended 4e-4 apart after 3 steps: Adam's first steps move
    # a parameter by about lr whatever its gradient's size, so rounding in the convolutions decides the sign.)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = _averaged_reference(_problem(method))  # also fills the world cache the workers read
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), method, str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)["model"]
    assert ddp.keys() == reference.keys()
    worst = max((ddp[k].float() - reference[k].float()).abs().max().item() for k in ddp)
    assert worst <= 1e-5, f"largest difference {worst:.2e}"
    # and it is not trivially equal: rank 1's batch matters (rank 0 alone gives other weights)
    captured = _problem(method)
    alone = train(captured.make_model(), captured.loss_fn, steps=STEPS, lr=captured.train_kwargs["lr"], seed=SEED,
                  run_device=torch.device("cpu")).model.state_dict()
    assert max((alone[k].float() - reference[k].float()).abs().max().item() for k in alone) > 1e-4


def test_an_interrupted_distributed_run_resumes_to_the_same_weights(tmp_path):
    _problem("crw")  # the world cache
    whole, cut = tmp_path / "whole.pt", tmp_path / "cut.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init1"), "crw", str(whole)), nprocs=2, join=True)
    mp.spawn(_worker, args=(2, str(tmp_path / "init2"), "crw", str(cut), 2), nprocs=2, join=True)
    partial = tmp_path / "cut.pt.partial"
    assert not cut.exists() and torch.load(partial, weights_only=True)["step"] == 2  # rank 0 kept steps 0-1
    mp.spawn(_worker, args=(2, str(tmp_path / "init3"), "crw", str(cut)), nprocs=2, join=True)
    a, b = torch.load(whole, weights_only=True), torch.load(cut, weights_only=True)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["history"]["loss"] == b["history"]["loss"] and not partial.exists()
