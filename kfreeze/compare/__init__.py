"""Compare optimized graphs across revisions (``kfreeze diff``) and draw them (``kfreeze show``).

``diff`` holds the pure GraphDef comparisons and the loading of a revision's artifacts through
DVC; ``report`` turns a comparison into a table, Markdown or JSON; ``show`` renders a graph
(optionally coloured against another) to SVG or PNG; ``cli`` has the typer commands.
"""
