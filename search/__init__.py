"""The architecture search (search space, strategies, training, compression).

Not built yet: this package is a placeholder so the project layout is complete. It will add
its `hwnas search` and `hwnas compress` verbs through the `hwnas_add_commands` hook.
"""
