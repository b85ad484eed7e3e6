"""Stand-in for ``mmcv.ops`` (installed over mmcv-lite's module by env/install.sh).

Why: mmcv-lite ships the Python side of ``mmcv.ops`` but not its compiled ``mmcv._ext``, so importing
``mmcv.ops`` fails and takes every mmpose module that imports it down with it (the deformable-attention
heads). The full mmcv needs a CUDA build. sciformer uses mmpose's data structures and codecs, never these
ops, so each name here is a class that raises a clear error when used, not when imported.
"""


class _Unavailable:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f"{type(self).__name__} needs compiled mmcv ops (mmcv._ext), which mmcv-lite does not ship; "
            "install the full mmcv built for your torch/CUDA to use this mmpose model"
        )


class DeformConv2d(_Unavailable):
    pass


class ModulatedDeformConv2d(_Unavailable):
    pass


class MultiScaleDeformableAttention(_Unavailable):
    pass


def __getattr__(name):  # any other op: fail at use with the same explanation
    return type(name, (_Unavailable,), {})
