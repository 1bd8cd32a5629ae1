"""``TextHandler``: text clean-up, tokenising and vocabulary (``ts.torch_handler.text_handler``).

TorchServe's text handlers were written for torchtext: ``source_vocab.pt`` is a pickled
torchtext ``Vocab`` and tokenising is torchtext's ``basic_english``. Ember has no torchtext and
never unpickles objects from an archive, so the vocabulary contract is plain data:

* the file is MANIFEST ``model.sourceVocab`` if set, else ``source_vocab.pt``, else ``vocab.json``
  (relative to the model directory);
* ``.pt`` is read with ``torch.load(weights_only=True)`` and ``.json`` with ``json``; either holds
  a ``{token: index}`` dict or a list of tokens (index = position);
* a token missing from the vocabulary gets the index of ``"<unk>"`` if the vocabulary has one,
  else 0 (torchtext's legacy default).

The clean-up helpers (``_remove_html_tags``, ``_expand_contractions``, …) keep TorchServe's
names. Contractions are expanded by rules (``n't`` → ``not``, ``'re`` → ``are``, ``can't`` →
``cannot``, ``it's`` → ``it is``…) rather than TorchServe's 120-entry table; the common cases
give the same words, rare forms (``how'd``, ``y'all'd've``) may differ.

This module also provides TorchServe's ``ts.handler_utils.text_utils`` functions
(:func:`get_tokenizer`, :func:`ngrams_iterator`).

Explanations use Captum's ``LayerIntegratedGradients`` on ``model.embedding`` (built on the
first explanation; see :mod:`emberserve.handlers.builtin.explain`).

Example::

    >>> list(ngrams_iterator(["here", "we", "are"], 2))
    ['here', 'we', 'are', 'here we', 'we are']
    >>> get_tokenizer("basic_english")("You can't (really) say: it's fine!")
    ['you', 'can', "'", 't', '(', 'really', ')', 'say', 'it', "'", 's', 'fine', '!']
"""

from __future__ import annotations

import abc
import json
import logging
import os
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional

from emberserve.handlers.base_handler import BaseHandler
from emberserve.handlers.builtin.explain import layer_integrated_gradients
from emberserve.handlers.context import Context
from emberserve.handlers.utils import CLEANUP_REGEX

logger = logging.getLogger(__name__)

#: Vocabulary files tried in the model directory, in order, when the MANIFEST names none.
VOCAB_FILES = ("source_vocab.pt", "vocab.json")
UNKNOWN_TOKEN = "<unk>"  # noqa: S105 - a vocabulary entry, not a secret

# -- tokenising (TorchServe's ts.handler_utils.text_utils) ----------------------------------------

# basic_english: these characters become tokens of their own, these are dropped / become spaces.
_SPLIT_OFF = "'.,()!?"
_BASIC_ENGLISH_TABLE = str.maketrans({**{c: f" {c} " for c in _SPLIT_OFF}, '"': "", ";": " ", ":": " "})


def _basic_english(line: str) -> list[str]:
    """torchtext's ``basic_english``: lower-case, split off ``' . , ( ) ! ?``, drop ``" ; :``."""
    return line.lower().replace("<br />", " ").translate(_BASIC_ENGLISH_TABLE).split()


def _split(line: str) -> list[str]:
    return line.split()


def get_tokenizer(
    tokenizer: str | Callable[[str], list[str]] | None, language: str = "en"
) -> Callable[[str], list[str]]:
    """A tokeniser: ``None`` → whitespace split, ``"basic_english"``, or a callable returned as is."""
    if tokenizer is None:
        return _split
    if callable(tokenizer):
        return tokenizer
    if tokenizer == "basic_english":
        if language != "en":
            raise ValueError("Basic normalization is only available for English (en)")
        return _basic_english
    raise ValueError(f"Unknown tokenizer {tokenizer!r}: only None, 'basic_english' or a callable")


def ngrams_iterator(token_list: Sequence[str], ngrams: int) -> Iterator[str]:
    """The tokens, then every run of 2 … ``ngrams`` consecutive tokens joined by a space."""
    yield from token_list
    for n in range(2, ngrams + 1):
        for start in range(len(token_list) - n + 1):
            yield " ".join(token_list[start : start + n])


# -- contractions -----------------------------------------------------------------------------

_IRREGULAR = {
    "can't": "cannot",
    "won't": "will not",
    "shan't": "shall not",
    "ain't": "is not",
    "let's": "let us",
    "y'all": "you all",
    "'cause": "because",
    "o'clock": "of the clock",
    "ma'am": "madam",
}
_SUFFIXES = {"n't": "not", "'re": "are", "'ve": "have", "'ll": "will", "'d": "would", "'m": "am"}
#: Words whose ``'s`` is "is" (elsewhere ``'s`` is a possessive and stays).
_IS_BEFORE = frozenset(
    {"he", "she", "it", "that", "there", "what", "where", "who", "how", "here", "when", "why"}
)
_CONTRACTION = re.compile(r"'cause\b|\b[A-Za-z]+(?:'[A-Za-z]+)+", re.IGNORECASE)


def _expand_word(word: str) -> str:
    lower = word.lower()
    if lower in _IRREGULAR:
        return _IRREGULAR[lower]
    for suffix, expansion in _SUFFIXES.items():
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return f"{_expand_word(lower[: -len(suffix)])} {expansion}"
    if lower.endswith("'s") and lower[:-2] in _IS_BEFORE:
        return f"{lower[:-2]} is"
    return lower


def expand_contractions(text: str) -> str:
    """``"Don't we'll"`` → ``"Do not we will"``; apostrophes are then removed, as TorchServe does."""

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        expanded = _expand_word(found)
        return found[0] + expanded[1:]  # keep the case of the first letter

    return _CONTRACTION.sub(replace, text).replace("'", "")


# -- vocabulary ----------------------------------------------------------------------------------


class Vocabulary(Mapping[str, int]):
    """Token → index, with an index for unknown tokens: ``vocab["word"]``, ``len(vocab)``.

    >>> vocab = Vocabulary({"<unk>": 0, "hello": 1})
    >>> vocab["hello"], vocab["unseen"], vocab.lookup_indices(["hello", "x"])
    (1, 0, [1, 0])
    """

    def __init__(self, token_to_index: Mapping[str, int] | Sequence[str]) -> None:
        if isinstance(token_to_index, Mapping):
            table = {str(token): int(index) for token, index in token_to_index.items()}
        else:
            table = {str(token): index for index, token in enumerate(token_to_index)}
        self._table = table
        self.default_index = table.get(UNKNOWN_TOKEN, 0)

    def __getitem__(self, token: str) -> int:
        return self._table.get(token, self.default_index)

    def __contains__(self, token: object) -> bool:
        return token in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def lookup_indices(self, tokens: Iterable[str]) -> list[int]:
        """The index of each token (unknown ones → :attr:`default_index`)."""
        return [self[token] for token in tokens]

    def get_stoi(self) -> dict[str, int]:
        """The token → index table (torchtext's name)."""
        return dict(self._table)

    @classmethod
    def load(cls, path: str) -> Vocabulary:
        """Read ``path`` (``.json``, or a ``torch.save`` file read with ``weights_only=True``)."""
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                content: Any = json.load(file)
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(content, Mapping | list | tuple):
            raise ValueError(
                f"{os.path.basename(path)} must hold a {{token: index}} dict or a list of tokens, "
                f"not {type(content).__name__}"
            )
        return cls(content)


# -- the handler ----------------------------------------------------------------------------------


class TextHandler(BaseHandler, abc.ABC):
    """Base of text handlers: loads the vocabulary, offers TorchServe's clean-up helpers."""

    def __init__(self) -> None:
        super().__init__()
        self.source_vocab: Vocabulary | None = None
        self.tokenizer = get_tokenizer("basic_english")
        self.input_text: Any = None
        self.initialized = False

    def initialize(self, context: Context) -> None:
        """Load the model, then the vocabulary (see the module docstring for the files tried)."""
        super().initialize(context)
        self.initialized = False
        manifest_vocab = ((self.manifest or {}).get("model") or {}).get("sourceVocab")
        model_dir = str(context.system_properties.get("model_dir") or ".")
        path = (
            os.path.join(model_dir, manifest_vocab) if manifest_vocab else self.get_source_vocab_path(context)
        )
        self.source_vocab = Vocabulary.load(path)
        self.initialized = True

    def get_source_vocab_path(self, ctx: Context) -> str:
        """The first of :data:`VOCAB_FILES` present in the model directory."""
        model_dir = str(ctx.system_properties.get("model_dir") or ".")
        for name in VOCAB_FILES:
            path = os.path.join(model_dir, name)
            if os.path.isfile(path):
                return path
        raise RuntimeError(
            "Missing the source_vocab file: the text handlers need source_vocab.pt or vocab.json "
            "({token: index} or a list of tokens) in the model archive"
        )

    # Built on the first explanation (Captum is optional and slow to import).
    @property
    def lig(self) -> Any:
        """Captum ``LayerIntegratedGradients`` over ``self.model.embedding``."""
        explainer = self.__dict__.get("_lig")
        if explainer is None:
            explainer = layer_integrated_gradients(self.model, self.model.embedding)
            self.__dict__["_lig"] = explainer
        return explainer

    @lig.setter
    def lig(self, explainer: Any) -> None:
        self.__dict__["_lig"] = explainer

    def _expand_contractions(self, text: str) -> str:
        return expand_contractions(text)

    def _remove_accented_characters(self, text: str) -> str:
        """``"café"`` → ``"cafe"`` (characters without an ASCII base letter are dropped)."""
        return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")

    def _remove_html_tags(self, text: str) -> str:
        return CLEANUP_REGEX.sub("", text)

    def _remove_punctuation(self, text: str) -> str:
        return text.translate(str.maketrans("", "", string.punctuation))

    def _remove_puncutation(self, *args: Any, **kwargs: Any) -> str:
        """TorchServe's original (misspelt) name, kept for handlers that call it."""
        return self._remove_punctuation(*args, **kwargs)

    def _tokenize(self, text: str) -> list[str]:
        return self.tokenizer(text)

    def get_word_token(self, input_tokens: Iterable[str]) -> list[str]:
        """Tokens without the BPE space marker ``Ġ``."""
        return [token.replace("Ġ", "") for token in input_tokens]

    def summarize_attributions(self, attributions: Any) -> Any:
        """Softmax the attributions, then scale by the norm of their per-token sums."""
        # TorchServe calls softmax without dim (deprecated); this is the dim torch picks then.
        dim = 0 if attributions.dim() in (0, 1, 3) else 1
        attributions = functional.softmax(attributions, dim=dim)
        return attributions / torch.norm(attributions.sum(dim=-1))


__all__ = [
    "UNKNOWN_TOKEN",
    "VOCAB_FILES",
    "TextHandler",
    "Vocabulary",
    "expand_contractions",
    "get_tokenizer",
    "ngrams_iterator",
]
