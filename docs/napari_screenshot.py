"""Make docs/napari.png: brain64.tif compressed 64x, opened in napari through tinc's reader.

    pip install 'tinc[napari]'
    xvfb-run -s "-screen 0 1280x1024x24" python docs/napari_screenshot.py   # or on a desktop

(Qt's offscreen platform gives vispy no OpenGL context here; a virtual X server does.) From
Python, `viewer.open(path)` needs `plugin="tinc"` or `plugin=None`: napari's own reader is the
API's default, while the command line and drag-and-drop choose among the plugins.
"""

import os
import subprocess
import sys
import tempfile

import napari

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "shared", "data", "brain64.tif")

with tempfile.TemporaryDirectory() as folder:
    path = os.path.join(folder, "brain64.tinc")
    subprocess.run([sys.executable, "-m", "tinc.cli", "compress", SOURCE, "-o", path, "--ratio", "64",
                    "--steps", "600", "--quiet"], check=True)
    viewer = napari.Viewer(show=False)
    viewer.open(path, plugin="tinc")  # what dropping the file on napari does
    viewer.dims.set_point(0, 40)
    viewer.window.resize(900, 700)
    viewer.screenshot(os.path.join(HERE, "napari.png"), canvas_only=False, flash=False)
    print(viewer.layers[0].data, viewer.layers[0].contrast_limits, viewer.dims.axis_labels)
    viewer.close()
