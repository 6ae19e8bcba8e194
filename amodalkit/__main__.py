"""Command line of amodalkit.

``book run|build|status|vendor`` (the book), ``models`` (trained models and where they come from), ``claims diff A B``
(verdicts of two result folders), ``evaluate`` (a results
folder on a DAVIS folder, the official toolkit's numbers and CSVs), ``propagate`` (CRW-style label propagation on a
DAVIS-layout sequence) and ``train`` (a method's model under a profile, on one process or under torchrun).
"""
from __future__ import annotations

import argparse
import sys


def _parse_value(text: str):
    """A -p value as YAML: 3 -> int, 0.1 -> float, true -> bool, [8, 16] -> list, else the string."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _command(action, usage_errors: tuple, interrupted: str, failures: tuple = ()) -> int:
    """Run ``action()`` and map what it raises to an exit code: 2 for ``usage_errors`` (bad input, named in the
    message), 1 for ``failures``, 130 on Ctrl-C (printing ``interrupted``), 0 otherwise."""
    try:
        action()
    except usage_errors as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except failures as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: {interrupted}", file=sys.stderr)
        return 130
    return 0


def _leave_process_group() -> None:
    """End a torchrun process group cleanly (NCCL warns otherwise)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    from . import book, profiles

    parser = argparse.ArgumentParser(prog="python -m amodalkit", description="Run and build the amodalkit book.")
    commands = parser.add_subparsers(dest="area", required=True)
    book_parser = commands.add_parser("book", help="notebooks and the Jupyter Book")
    actions = book_parser.add_subparsers(dest="action", required=True)

    run_p = actions.add_parser("run", help="execute notebooks with papermill under a profile")
    run_p.add_argument("--profile", default="quick", choices=profiles.profile_names())
    run_p.add_argument("--only", nargs="+", metavar="NAME", help="run only these notebooks")
    run_p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                       help="override a parameter (YAML value, e.g. -p seeds 5 -p chain_lengths '[8, 16]'); "
                            "results then go to <profile>-custom")
    run_p.add_argument("--force", action="store_true", help="re-run even notebooks that are up to date")
    run_p.add_argument("--record-times", action="store_true",
                       help="write the wall time of every chapter that ran into results/book_wall_times.json")
    run_p.add_argument("--jobs", type=int, help="parallel processes that train the chapters' models first (gpu profile "
                       "default: one per CPU core up to 16 on CUDA, 2 on the CPU; other profiles: none unless given)")
    run_p.add_argument("--replica", action="store_true",
                       help="the same run with ATEN_CPU_CAPABILITY=default and a model cache of its own, into "
                            "results/<profile>-kernel-default (the claims page marks verdicts that differ)")

    status_p = actions.add_parser("status", help="which chapters are fresh, stale (and what changed) or not run")
    status_p.add_argument("--profile", default="quick", choices=profiles.profile_names())

    build_p = actions.add_parser("build", help="build the HTML book from the executed notebooks")
    build_p.add_argument("--profile", default="quick", help="which executed notebooks and results to build from")

    actions.add_parser("vendor", help="fetch the pinned widget JavaScript (npm pack)")

    readme_p = actions.add_parser("readme", help="write the README's measured block from the committed results")
    readme_p.add_argument("--check", action="store_true", help="exit 1 when the block is not what the results give")

    claims_parser = commands.add_parser("claims", help="verdicts computed from result folders")
    claims_actions = claims_parser.add_subparsers(dest="action", required=True)
    diff_p = claims_actions.add_parser("diff", help="list the claims whose verdict differs between two result folders")
    diff_p.add_argument("results_a", metavar="RESULTS_A", help="a results folder, e.g. results/quick")
    diff_p.add_argument("results_b", metavar="RESULTS_B", help="another, e.g. results/quick-kernel-default")

    eval_p = commands.add_parser("evaluate", help="DAVIS-2017 J and F of a results folder, as the official toolkit")
    eval_p.add_argument("--davis", required=True, metavar="ROOT", help="DAVIS folder (JPEGImages, Annotations, ImageSets)")
    eval_p.add_argument("--results", required=True, metavar="DIR", help="<DIR>/<sequence>/<frame>.png indexed masks; "
                        "the CSVs are written here")
    eval_p.add_argument("--set", default="val", help="ImageSets/2017/<set>.txt lists the sequences (default val; "
                        "ImageSets/2019 for the unsupervised test-dev and test-challenge sets, as the toolkit)")
    eval_p.add_argument("--task", default="semi-supervised", choices=("semi-supervised", "unsupervised"))

    prop_p = commands.add_parser("propagate", help="propagate the first frame's objects through a DAVIS-layout video")
    prop_p.add_argument("--davis", required=True, metavar="ROOT", help="folder with JPEGImages/480p/<NAME> and "
                        "Annotations/480p/<NAME>/<first frame>.png")
    prop_p.add_argument("--sequence", required=True, metavar="NAME")
    prop_p.add_argument("--out", required=True, metavar="DIR", help="masks go to <DIR>/<NAME>/<frame>.png")
    prop_p.add_argument("--checkpoint", metavar="FILE", help="a CRW model (from `train crw`, or the book's cache)")
    prop_p.add_argument("--features", default=None, choices=("crw", "untrained", "pixels"),
                        help="crw (needs --checkpoint; the default when one is given), untrained (random ResNet-18) or "
                             "pixels (the default without a checkpoint)")
    prop_p.add_argument("--layer", default="res3", choices=("res3", "res4"))
    prop_p.add_argument("--context", type=int, default=20, help="preceding frames used as sources (release: 20)")
    prop_p.add_argument("--topk", type=int, default=10, help="sources kept per query (release: 10)")
    prop_p.add_argument("--radius", type=float, default=12.0, help="source radius on the stride-8 grid (release: 12)")
    prop_p.add_argument("--temperature", type=float, default=0.05, help="softmax temperature (release command: 0.05)")

    from .train_cli import METHODS

    train_p = commands.add_parser("train", help="train one model with its chapter's recipe and data under a profile",
                                  description="Methods: " + "; ".join(f"{k}: {m.summary}" for k, m in METHODS.items()))
    train_p.add_argument("method", choices=list(METHODS), metavar="METHOD", help=", ".join(METHODS))
    train_p.add_argument("--profile", default="quick", choices=profiles.profile_names())
    train_p.add_argument("--out", required=True, metavar="DIR", help="checkpoint.pt, checkpoint.pt.partial and log.json go here")
    train_p.add_argument("--seed", type=int, default=0)
    train_p.add_argument("--steps", type=int, help="training steps (default: the profile's)")
    train_p.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                         help="override a chapter parameter, or set a method's own (savos: world, variant; stemseg: "
                              "world, mixing; maskvos-a: learner; maskvos-b: learner, arm)")
    train_p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train_p.add_argument("--frames", metavar="ROOT", help="crw, maskvos-a, maskvos-b: train on your unlabelled videos in "
                         "ROOT/JPEGImages/480p/<video>/*.jpg")

    models_p = commands.add_parser("models", help="list trained models: the model cache and any run folders given")
    models_p.add_argument("dirs", nargs="*", metavar="DIR", help="run folders of `train --out` (or any folder of "
                          "checkpoints) to list beside the model cache")
    models_p.add_argument("--method", help="only models of this method (savos, crw, amodal_vae, stemseg, maskvos, ...)")
    models_p.add_argument("--no-cache", action="store_true", help="leave the model cache out")

    args = parser.parse_args(argv)
    if args.area == "models":
        from .train import list_models, models_table

        def show_models():
            print(models_table(list_models(args.dirs, method=args.method, cache=not args.no_cache)))

        return _command(show_models, (FileNotFoundError, NotADirectoryError), "nothing was written")
    if args.area == "train":
        from .train import CheckpointError, TrainingError
        from .train_cli import TrainCommandError, train_command

        def train_and_leave():
            train_command(args.method, args.profile, args.out, seed=args.seed, steps=args.steps,
                          overrides={key: _parse_value(value) for key, value in args.param}, resume=args.resume,
                          frames=args.frames)
            _leave_process_group()

        return _command(train_and_leave, (TrainCommandError, profiles.ParameterError, CheckpointError),
                        f"every completed step is kept in {args.out}/checkpoint.pt.partial; run the same command with "
                        f"--resume to continue", failures=(TrainingError,))
    if args.area == "evaluate":
        from .davis_toolkit import EvaluationError, run

        return _command(lambda: run(args.davis, args.results, args.set, args.task), (EvaluationError, OSError),
                        "no CSV was written (they are written at the end, atomically)")
    if args.area == "propagate":
        from .train import CheckpointError
        from .video import VideoError, propagate_sequence

        features = args.features or ("crw" if args.checkpoint else "pixels")
        return _command(lambda: propagate_sequence(args.davis, args.sequence, args.out, features=features,
                                                   checkpoint=args.checkpoint, layer=args.layer, context=args.context,
                                                   topk=args.topk, radius=args.radius, temperature=args.temperature),
                        (VideoError, CheckpointError, ValueError),
                        "the masks written so far are complete files (each is written atomically)")
    if args.area == "claims":
        from .claims_page import diff_report

        try:
            print(diff_report(args.results_a, args.results_b))
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    def book_action():
        if args.action == "run":
            book.run(args.profile, args.only, {key: _parse_value(value) for key, value in args.param}, args.force,
                     record_times=args.record_times, replica=args.replica, jobs=args.jobs)
        elif args.action == "status":
            for chapter in book.status(args.profile):
                print(f"{chapter.name:22} {chapter.state}" + (": " + "; ".join(chapter.changes) if chapter.changes else ""))
        elif args.action == "build":
            book.build(args.profile)
        elif args.action == "vendor":
            book.vendor_widgets()
        elif args.action == "readme":
            if not book.write_readme(check=args.check):
                raise book.BookError("README.md's measured block differs from the committed results: run "
                                     "`python -m amodalkit book readme`")

    return _command(book_action, (profiles.ParameterError,),
                    "nothing half-written was kept (results and executed copies are written atomically)",
                    failures=(book.BookError,))


if __name__ == "__main__":
    sys.exit(main())
