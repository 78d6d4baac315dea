"""Training: the LightningModules (age, pairs), callbacks (atomic checkpoints, exact resume, best-model export),
the LightningCLI behind ``faceage fit|validate|test``, optimisers, distillation, k-fold and the Ray Tune search.

May import: ``faceage.data``, ``faceage.models``, ``faceage.inference``, ``faceage.evaluation``.
"""
