"""The search's ``hwnas`` verbs (``search``, ``compress``, ``deploy``), one module each."""
