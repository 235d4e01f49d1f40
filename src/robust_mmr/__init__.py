"""robust-mmr: Robust Multi-Modal Masked Reconstruction for medical vision-and-language models.

Package layout follows the pipeline: ``data`` → ``perturbations`` → ``model`` → ``objectives``
→ ``tasks`` → ``evaluation`` → ``cli``.
"""

__version__ = "0.1.0"
