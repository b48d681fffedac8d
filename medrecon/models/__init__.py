"""Which model segments a study, and who runs it.

``ref`` (:class:`ModelRef`, the model as named), ``resolve`` (what it names, read
into a Pipeline), ``engines`` (medrecon's own or a foreign model's runner),
``cache`` (one engine per model for a worker) and ``segment`` (one volume).
This layer sits above ``pipeline/`` and ``foreign/``, which never import it.
"""
