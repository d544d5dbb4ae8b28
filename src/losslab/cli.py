"""The ``losslab`` command line."""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
from collections.abc import Sequence

from . import __version__
from .registry import names_table, normalize


def _matches(row: dict, query: str) -> bool:
    q = normalize(query)
    return any(q in normalize(str(row[k])) for k in ("canonical", "name", "source", "input"))


def _query_suggestions(query: str, n: int = 3) -> list[str]:
    """Words and names of the table that resemble a query that matched nothing ("focl" -> "focal")."""
    words: set[str] = set()
    for row in names_table():
        for key in ("canonical", "name"):
            words.add(row[key])
            words.update(w for w in re.split(r"[^A-Za-z0-9]+", row[key]) if len(w) > 2)
    by_key: dict[str, str] = {}
    for w in sorted(words, key=lambda w: (len(w), w != w.lower(), w)):  # the lower-case spelling first
        by_key.setdefault(normalize(w), w)
    close = difflib.get_close_matches(normalize(query), list(by_key), n=n, cutoff=0.6)
    return [by_key[c] for c in close]


def _presets(row: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in row["defaults"].items())


def format_text(rows: list[dict]) -> str:
    out: list[str] = []
    canonicals = list(dict.fromkeys(r["canonical"] for r in rows))
    name_width = max([len(r["lookup"]) for r in rows] + [4]) + 2
    source_width = max([len(r["source"]) for r in rows] + [6]) + 2
    for canonical in canonicals:
        group = [r for r in rows if r["canonical"] == canonical]
        out.append(f"{canonical}")
        out.append(f"    {group[0]['formula']}")
        out.append(f"    {'name':<{name_width}}{'source':<{source_width}}{'input':<19}presets / note")
        for r in group:
            extra = "; ".join(p for p in (_presets(r), r["note"]) if p)
            out.append(f"    {r['lookup']:<{name_width}}{r['source']:<{source_width}}{r['input']:<19}{extra}".rstrip())
        out.append("")
    out.append("Lookup ignores case, spaces, hyphens and underscores; a framework prefix (keras., torch.nn.,")
    out.append("kornia. ...) picks that framework's meaning. Arguments are always (input, target).")
    return "\n".join(out)


def format_markdown(rows: list[dict]) -> str:
    out = ["| canonical | name | source | input | presets / note | formula |", "|---|---|---|---|---|---|"]
    for r in rows:
        extra = "; ".join(p for p in (_presets(r), r["note"]) if p)
        cells = [r["canonical"], r["lookup"], r["source"], r["input"], extra, f"`{r['formula']}`"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")  # a pipe inside a cell is escaped
    return "\n".join(out)


def cmd_names(args: argparse.Namespace) -> int:
    rows = names_table()
    if args.query:
        keep = {r["canonical"] for r in rows if _matches(r, args.query)}
        rows = [r for r in rows if r["canonical"] in keep]
        if not rows:
            hint = _query_suggestions(args.query)
            print(f"losslab names: no loss matches {args.query!r}"
                  + (f"; did you mean {', '.join(map(repr, hint))}?" if hint else ""), file=sys.stderr)
            return 2
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    elif args.format == "markdown":
        print(format_markdown(rows))
    else:
        print(format_text(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="losslab", description="Losses for imbalanced data, and a lab to study them.")
    parser.add_argument("--version", action="version", version=f"losslab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = sub.add_parser("names", help="list every loss: canonical name, aliases, sources, input, formula",
                           description="List every registered loss with its aliases, where each comes from, "
                                       "the input it expects and its formula.")
    names.add_argument("query", nargs="?", help="show only losses with a name, source or input containing this")
    names.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    names.set_defaults(handler=cmd_names)
    bench = sub.add_parser("bench", help="time losslab's fused, eager and composite paths against their peers",
                           description="Forward + backward time, peak memory and compile cost of losslab's paths "
                                       "and of torch, torchvision-style formulas, kornia and MONAI, in one run.")
    from . import bench as bench_command
    from .lab import _commands as lab

    bench_command.add_arguments(bench)
    bench.set_defaults(handler=bench_command.command)
    for name, summary, description, add_arguments, handler in (
        ("ablate", "train a small model with every loss of a grid on long-tailed data, and rank them",
         lab.ABLATE_DESCRIPTION, lab.add_ablate_arguments, lab.ablate_command),
        ("contributions", "where a batch's loss comes from, class by class, before and after alpha",
         lab.CONTRIBUTIONS_DESCRIPTION, lab.add_contributions_arguments, lab.contributions_command),
        ("plot", "plot loss, modulating factor and gradient against the true class's probability",
         lab.PLOT_DESCRIPTION, lab.add_plot_arguments, lab.plot_command),
    ):
        command = sub.add_parser(name, help=summary, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def _quiet_stdout() -> None:
    """Point stdout at devnull, so that the interpreter's final flush into a closed pipe stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # a stdout without a file descriptor (captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit code: 0 success, 1 a closed pipe, 2 an error, 130 Ctrl-C.

    ``losslab names QUERY`` that matches nothing is an error (2), with suggestions.

    A failing command prints one line, ``losslab COMMAND: what went wrong``, on
    stderr, never a traceback (set LOSSLAB_TRACEBACK=1 to see one). Output into
    a pipe that closes early (``losslab names | head``) ends quietly, as
    Python's documentation on SIGPIPE recommends.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler below, not at exit
        return code
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except KeyboardInterrupt:
        print(f"losslab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, never a traceback
        if os.environ.get("LOSSLAB_TRACEBACK"):
            raise
        message = " ".join(str(error).split()) or "(no message)"
        print(f"losslab {args.command}: {type(error).__name__}: {message} (LOSSLAB_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 2
