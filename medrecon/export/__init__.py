"""Writers for the files users open: colour tables, seg.nrrd, meshes, scene, DICOM SEG,
statistics, preview. Importing the package itself is cheap (the CLI reads
:data:`MESH_FORMATS` at start-up); each writer imports its libraries itself."""

#: Surface mesh formats ``medrecon run --mesh-format`` writes.
MESH_FORMATS = ("stl", "obj", "ply", "vtp")
