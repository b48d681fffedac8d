"""Pipeline files shipped with medrecon, installed as ``medrecon._pipelines``.

This file only makes the folder importable as package data; the pipelines are
the YAML files beside it (and the weights they name).
"""
