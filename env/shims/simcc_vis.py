"""Stand-in for ``mmpose/visualization/simcc_vis.py`` (installed by env/install.sh).

Why: it is the one mmpose module that imports torchvision (for ``ToPILImage``), and torchvision wheels need
the CUDA build of torch, which this project must not pull on CPU machines. mmpose's visualization package
imports it eagerly, so without this stand-in ``import mmpose.visualization`` (and the inferencer) fails.
"""


class SimCCVisualizer:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("SimCCVisualizer needs torchvision, which sciformer does not install (CUDA-only wheels)")
