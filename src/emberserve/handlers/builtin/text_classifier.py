"""``TextClassifier``: classify a text with an embedding-bag model (``ts.torch_handler.text_classifier``).

The request's ``data`` (else ``body``) text is cleaned (HTML tags, case, contractions, accents,
punctuation), tokenised, expanded with bigrams (``ngrams = 2``) and looked up in the vocabulary
(:class:`~emberserve.handlers.builtin.text_handler.Vocabulary`). The model is called as
``model(token_ids, offsets)`` — an ``nn.EmbeddingBag``-style text classifier whose embedding
layer is ``model.embedding`` — and the answer is ``{label: probability}`` for every class.

As in TorchServe, only the first request of a batch is processed (use ``batch_size`` 1).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional

from emberserve.handlers.builtin.explain import token_reference
from emberserve.handlers.builtin.text_handler import TextHandler, ngrams_iterator
from emberserve.handlers.utils import map_class_to_label


class TextClassifier(TextHandler):
    """Text → token ids (+ bigrams) → ``model(ids, offsets)`` → ``[{label: probability, …}]``."""

    ngrams = 2

    def preprocess(self, data: Any) -> tuple[Any, list[str]]:
        """The first row's text → ``(token id tensor, tokens)``."""
        row = data[0]
        text = (row.get("data") or row.get("body")) if isinstance(row, dict) else row
        if isinstance(text, bytes | bytearray):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"TextClassifier expects text, got {type(text).__name__}")
        text = self._remove_html_tags(text)
        text = text.lower()
        text = self._expand_contractions(text)
        text = self._remove_accented_characters(text)
        text = self._remove_punctuation(text)
        tokens = self._tokenize(text)
        vocab = self.source_vocab
        if vocab is None:
            raise RuntimeError("TextClassifier used before initialize")
        ids = vocab.lookup_indices(ngrams_iterator(tokens, self.ngrams))
        return torch.as_tensor(ids, dtype=torch.long, device=self.device), tokens

    def inference(self, data: Any, *args: Any, **kwargs: Any) -> Any:
        """``model(token_ids, offsets=[0])``: the whole text is one bag."""
        text_tensor, _ = data
        offsets = torch.as_tensor([0], device=self.device)
        return super().inference(text_tensor, offsets)

    def postprocess(self, data: Any) -> list[dict[str, Any]]:
        """Softmax over the classes, labelled through ``index_to_name.json``."""
        dim = 0 if data.dim() in (0, 1, 3) else 1  # the dim TorchServe's softmax() call implies
        return map_class_to_label(functional.softmax(data, dim=dim).tolist(), self.mapping)

    def get_insights(self, text_preprocess: Any, _: Any, target: Any = 0) -> list[dict[str, Any]]:
        """Per-token importances: ``[{"words": tokens, "importances": [...]}]``."""
        text_tensor, all_tokens = text_preprocess
        offsets = torch.tensor([0], device=self.device)
        reference = token_reference().generate_reference(text_tensor.shape[0], device=self.device).squeeze(0)
        attributions = self.lig.attribute(
            text_tensor,
            reference,
            additional_forward_args=(offsets,),
            return_convergence_delta=False,
            target=target,
        )
        importances = self.summarize_attributions(attributions)
        return [{"importances": importances.tolist(), "words": self.get_word_token(all_tokens)}]


__all__ = ["TextClassifier"]
