"""One study in, every output out: ``run_study`` and the stages around it.

``runner`` reads the study, chooses the series (``selection``) and the model,
segments, and writes every output (``outputs``, as ``output_options`` asks) into
a staging folder that becomes OUTDIR only when ``run.json`` (``record``) is
written; ``output_folder`` says which folders ``--overwrite`` may replace.
"""
