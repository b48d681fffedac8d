"""Training and evaluation of medrecon models on a labelled cohort."""
