"""The embedded model's tokenizer: byte-level BPE with every digit its own token.

Splitting digits keeps arithmetic learnable for a tiny model (each digit of a result is one
prediction) and makes per-digit confidence visible in the token view. The tokenizer is a
`PreTrainedTokenizerFast`, saved with `save_pretrained`, so `AutoTokenizer.from_pretrained`
loads it exactly as it loads a user's model's tokenizer.

Not here: which text it is trained on (train.py decides that).
"""

from __future__ import annotations

from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def build_tokenizer(texts: Iterable[str], vocab_size: int = 768) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS,
                                   pad_token=EOS, unk_token=None,
                                   clean_up_tokenization_spaces=False)
