#!/usr/bin/env bash
# Create the virtual environment that tests/slicer/check_outputs.py runs in:
# PyPI slicer-core (3D Slicer's MRML, storage nodes and module logics without Qt)
# with the VTK it pins. It is kept apart from medrecon's environment because
# slicer-core requires its own exact VTK version.
#
#   bash tests/slicer/setup_venv.sh VENV
#   export MEDRECON_SLICER_PYTHON=VENV/bin/python
set -euo pipefail
if [ "$#" -ne 1 ]; then
    echo "usage: $0 VENV" >&2
    exit 2
fi
venv="$1"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# numpy for the check script; slicer-core pulls vtk==9.6.2 itself.
"$venv/bin/python" -m pip install -q "slicer-core>=5.8" numpy
"$venv/bin/python" -c "import slicer; slicer.vtkMRMLScene(); slicer.vtkSlicerSegmentationsModuleLogic()"
echo "slicer-core ready: MEDRECON_SLICER_PYTHON=$venv/bin/python"
