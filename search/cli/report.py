"""``hwnas report``: a shared study's Pareto plot and summary from the study alone
(registered with ``hwnas search``, whose ``--storage`` studies it reads)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import run_verb


def add_report_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``hwnas report``'s parser."""
    r = subparsers.add_parser(
        "report",
        help="the Pareto plot and summary of a shared study, from the study alone",
        description="Write pareto.png, pareto.json and summary.md for the study NAME in "
        "--storage, from its trials (every worker's measurements are trial attributes).",
    )
    r.add_argument("--storage", required=True, metavar="URL", help="postgresql://user@host/db")
    r.add_argument("--study", required=True, metavar="NAME", help="required")
    r.add_argument("--out", required=True, type=Path, metavar="DIR", help="required")
    r.set_defaults(func=report)


@run_verb()
def report(args: argparse.Namespace) -> int:
    """``hwnas report --storage URL --study NAME --out DIR``."""
    from ..loop.report import final_line, report_study
    from ..loop.shared import check_storage_url, shown

    url = check_storage_url(args.storage)
    result = report_study(url, args.study, args.out)
    print(f"Study {args.study} in {shown(url)}: {args.out} (pareto.png, pareto.json, summary.md)")
    print(final_line(result))
    return 0
