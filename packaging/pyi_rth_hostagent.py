# PyInstaller runtime hook, run before hostagent's code in the single file. The single file's stub
# (packaging/stub/runstub.c) runs the unpacked program and names itself in HOSTAGENT_EXECUTABLE;
# staticx names itself in STATICX_PROG_PATH. sys.executable becomes that file, which is what the unit
# must call (hostagent.render.unit.launcher_command); the variable leaves the environment, so the agent and
# other children never see it.
import os
import sys

_self = os.environ.pop("HOSTAGENT_EXECUTABLE", None) or os.environ.pop("STATICX_PROG_PATH", None)
if _self:
    sys.executable = _self
del _self
