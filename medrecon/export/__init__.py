"""Writers for the files users open: colour tables (more come with `medrecon run`)."""
