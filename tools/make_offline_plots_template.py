"""Write .dvc/plots/offline.html: DVC's plots page with Vega, Vega-Lite and Vega-Embed inline.

`dvc plots show/diff` pages load these scripts from a CDN by default and stay blank without
network. This template (set in .dvc/config as plots.html_template) carries them inline, at
the versions dvc-render asks for. Needs npm and the npm registry; run it only to change the
versions:

    python tools/make_offline_plots_template.py
"""

from __future__ import annotations

import subprocess
import tarfile
import tempfile
from pathlib import Path

PACKAGES = {
    "vega@5.20.2": "vega.min.js",
    "vega-lite@5.2.0": "vega-lite.min.js",
    "vega-embed@6.18.2": "vega-embed.min.js",
}
TARGET = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <title>DVC Plot</title>
    <!-- {names}: BSD-3-Clause, (c) University of Washington Interactive Data Lab.
         Inlined so that the page renders without network. -->
{scripts}
    <style>
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def main() -> None:
    scripts = []
    with tempfile.TemporaryDirectory() as tmp:
        for package, build in PACKAGES.items():
            archive = (
                subprocess.run(
                    ["npm", "pack", "--silent", package], cwd=tmp, check=True, capture_output=True, text=True
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            with tarfile.open(Path(tmp) / archive) as tar:
                code = tar.extractfile(f"package/build/{build}").read().decode("utf-8")
            if "</script" in code:
                raise ValueError(f"{package}: its code contains '</script' and cannot be inlined as is")
            scripts.append(f"    <script>/* {package} */\n{code}\n    </script>")
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_text(PAGE.format(names=", ".join(PACKAGES), scripts="\n".join(scripts)), encoding="utf-8")
    print(f"wrote {TARGET} ({TARGET.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
