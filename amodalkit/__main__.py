"""Command line: ``python -m amodalkit book run|build|vendor`` and ``python -m amodalkit claims diff A B``."""
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

    build_p = actions.add_parser("build", help="build the HTML book from the executed notebooks")
    build_p.add_argument("--profile", default="quick", help="which executed notebooks and results to build from")

    actions.add_parser("vendor", help="fetch the pinned widget JavaScript (npm pack)")

    claims_parser = commands.add_parser("claims", help="verdicts computed from result folders")
    claims_actions = claims_parser.add_subparsers(dest="action", required=True)
    diff_p = claims_actions.add_parser("diff", help="list the claims whose verdict differs between two result folders")
    diff_p.add_argument("results_a", metavar="RESULTS_A", help="a results folder, e.g. results/quick")
    diff_p.add_argument("results_b", metavar="RESULTS_B", help="another, e.g. results/quick-kernel-default")

    args = parser.parse_args(argv)
    if args.area == "claims":
        from .claims_page import diff_report

        try:
            print(diff_report(args.results_a, args.results_b))
        except (FileNotFoundError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    try:
        if args.action == "run":
            overrides = {key: _parse_value(value) for key, value in args.param}
            book.run(args.profile, args.only, overrides, args.force)
        elif args.action == "build":
            book.build(args.profile)
        elif args.action == "vendor":
            book.vendor_widgets()
    except (book.BookError, profiles.ParameterError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, profiles.ParameterError) else 1
    except KeyboardInterrupt:
        print("interrupted: nothing half-written was kept (results and executed copies are written atomically)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
