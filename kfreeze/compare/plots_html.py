"""An HTML template for ``dvc plots show|diff --html-template`` that renders offline.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so ``dvc plots`` output is
blank without network. DVC fills ``{scripts}`` with those CDN tags; this template has no
``{scripts}`` and carries the libraries inline instead. They come from the installed
``vl-convert-python`` package (BSD-3-Clause), whose ``javascript_bundle()`` returns vega-embed,
vega-lite and vega as one script that sets ``window.vegaEmbed``: generated at use time, nothing
vendored in the repository.

    python -m kfreeze.compare.plots_html .dvc/plots_offline.html
    dvc config --local plots.html_template plots_offline.html   # relative to .dvc/
"""

from __future__ import annotations

import sys
from pathlib import Path

from kfreeze.errors import KfreezeError

# DVC's plot templates declare the vega-lite v5 schema; compile them with a v5 compiler.
VEGA_LITE_VERSION = "5.21"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
    <!-- vega-embed @EMBED@, vega-lite @LITE@, vega @VEGA@: inlined from vl-convert-python @VLC@ -->
    <script type="text/javascript">
@BUNDLE@
    </script>
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template() -> str:
    try:
        import vl_convert
    except ImportError:
        raise KfreezeError("vl-convert-python", "not installed (it ships the vega libraries inlined in the page)",
                           "run pip install 'kfreeze[viz]' in the project's venv ('make install' does)") from None
    from importlib.metadata import version

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE_VERSION)
    # DVC fills the page by str.replace of its placeholders, and "</script" would end the tag early:
    # neither occurs in the bundles of vl-convert 1.x; refuse a bundle where they do.
    for token in ("{scripts}", "{plot_divs}", "{refresh_tag}", "</script"):
        if token in bundle:
            raise KfreezeError(f"vl-convert-python {version('vl-convert-python')}", f"its bundle contains '{token}'",
                               "install vl-convert-python<2, whose bundle inlines cleanly")
    return (PAGE.replace("@EMBED@", vl_convert.get_vega_embed_version())
                .replace("@LITE@", VEGA_LITE_VERSION)
                .replace("@VEGA@", vl_convert.get_vega_version())
                .replace("@VLC@", version("vl-convert-python"))
                .replace("@BUNDLE@", bundle))


def write_template(out: Path) -> Path:
    from kfreeze import atomic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, offline_template())
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else ".dvc/plots_offline.html")
    print(f"wrote {write_template(target)}")
