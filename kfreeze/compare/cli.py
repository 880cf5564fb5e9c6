"""``kfreeze diff`` and ``kfreeze show``: typer commands, registered in kfreeze/cli.py.

``diff`` exits like diff(1): 0 when the graphs are equivalent, 1 when they differ, 2 on an
error (one line on stderr; the traceback with --debug).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kfreeze.cli_common import DebugOpt, cli_errors
from kfreeze.errors import KfreezeError

EXIT_ERROR = 2


_errors = cli_errors(exit_code=EXIT_ERROR)


@_errors
def diff(rev_a: str = typer.Argument(..., help="The first revision (commit, branch, tag, HEAD~1, ...)."),
         rev_b: Optional[str] = typer.Argument(None, help="The second revision; omitted: the workspace."),
         model: Optional[str] = typer.Option(None, "--model", "-m", help="Compare only this model."),
         json_: bool = typer.Option(False, "--json", help="Machine-readable JSON."),
         md: bool = typer.Option(False, "--md", help="Markdown, for a pull request comment."),
         svg: Optional[Path] = typer.Option(None, "--svg", help="Also write DIR/<model>.svg for each model "
                                            "that differs: added nodes green, removed red, changed orange."),
         no_drift: bool = typer.Option(False, "--no-drift", help="Skip running the graphs (output drift)."),
         debug: bool = DebugOpt):
    """Compare two revisions' optimized graphs: signature, op counts, nodes, weights, output drift.

    The artifacts are read through DVC, without checking anything out: the local cache
    (.dvc/cache) first, then the default remote, so a project without a remote works.
    Exit status: 0 equivalent, 1 different, 2 error.
    """
    from kfreeze.compare import report
    from kfreeze.compare.diff import diff_revisions
    from kfreeze.compare.revisions import load_model, open_revision, repo_root

    if json_ and md:
        raise KfreezeError("kfreeze diff", "--json and --md exclude each other", "choose one")
    root = repo_root(Path.cwd())
    result = diff_revisions(root, rev_a, rev_b, model, drift=not no_drift)
    if json_:
        typer.echo(report.as_json(result))
    elif md:
        typer.echo(report.as_markdown(result))
    else:
        typer.echo(report.as_text(result))
    if svg is not None:
        from kfreeze.compare.show import write_picture
        a, b = open_revision(root, rev_a), open_revision(root, rev_b)
        for entry in result["models"]:
            if entry["status"] == "changed":
                old, _ = load_model(a, entry["model"])
                new, _ = load_model(b, entry["model"])
                path = write_picture(new, svg / f"{entry['model']}.svg", against=old,
                                     title=f"{entry['model']}: {result['a']} -> {result['b']}")
                typer.echo(f"wrote {path}", err=True)
    raise typer.Exit(0 if result["equivalent"] else 1)


@_errors
def show(graph: Path = typer.Argument(..., help="A .pb, .pbtxt or .meta graph."),
         out: Path = typer.Option(..., "--out", "-o", help="The picture to write: .svg, .png or .dot."),
         diff_against: Optional[Path] = typer.Option(None, "--diff-against", help="An older graph: colour "
                                                     "added nodes green, removed red, changed orange."),
         title: str = typer.Option("", "--title", help="A caption above the graph."),
         debug: bool = DebugOpt):
    """Draw a graph (weights folded into the nodes that read them) as SVG or PNG."""
    from kfreeze import graphio
    from kfreeze.compare.show import write_picture

    g = graphio.read_graph(graph)
    other = graphio.read_graph(diff_against) if diff_against is not None else None
    path = write_picture(g, out, other, title)
    typer.echo(f"wrote {path} ({len(g.node)} nodes)")
