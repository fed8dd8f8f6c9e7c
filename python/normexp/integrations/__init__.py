"""Backends that put normexp under other libraries' models.

Each submodule imports the library it serves only when it is imported itself, so ``import normexp`` (and
``import normexp.integrations``) never imports them: ``normexp.integrations.transformers`` needs torch and
Hugging Face transformers (``pip install "normexp[transformers]"``).
"""
