"""CREST (Yang, Kang, Mirzasoleiman, ICML 2023): mini-batch coresets per quadratic region.

A batch plan (``plan.CrestPlan``) plus a callback (``callback.CrestCallback``) of the one
training loop; ``recipe.CREST`` is `effray run crest`.
"""
