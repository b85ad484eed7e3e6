"""Atom-level SMILES tokenizer (Schwaller et al. 2019 regex, as used by MoLFormer).

The regex splits a SMILES string into chemically meaningful tokens: bracket
atoms (``[nH]``, ``[C@@H]``, ``[N+]``), two-letter halogens (``Br``, ``Cl``),
organic-subset atoms, bonds, branches and ring-closure digits (``%10``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# Identical to the Molecular Transformer / MoLFormer pattern. Written as a raw
# string, so `\\` matches one literal backslash (the cis/trans bond symbol).
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$"
    r"|\%[0-9]{2}|[0-9])"
)
_PATTERN = re.compile(SMILES_REGEX)

PAD, UNK, CLS, EOS, MASK = "<pad>", "<unk>", "<cls>", "<eos>", "<mask>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, EOS, MASK)


def tokenize(smiles: str) -> list[str]:
    """Split ``smiles`` into atom-level tokens.

    ``re.findall`` silently skips characters that the pattern cannot match
    (e.g. ``Z`` or a stray space), which would corrupt the molecule. We therefore
    insist that the tokens concatenate back to the input and raise otherwise.
    """
    tokens = _PATTERN.findall(smiles)
    if "".join(tokens) != smiles:
        raise ValueError(f"SMILES cannot be tokenized losslessly: {smiles!r}")
    return tokens


class SmilesTokenizer:
    """Vocabulary over regex tokens with fixed ids for the special tokens."""

    def __init__(self, vocab: Iterable[str]) -> None:
        tokens = list(vocab)
        # Special tokens always occupy ids 0..4 so models can hard-code pad=0 etc.
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            tokens = list(SPECIAL_TOKENS) + [t for t in tokens if t not in SPECIAL_TOKENS]
        if len(set(tokens)) != len(tokens):
            raise ValueError("vocabulary contains duplicate tokens")
        self.id_to_token: list[str] = tokens
        self.token_to_id: dict[str, int] = {t: i for i, t in enumerate(tokens)}

    # ----------------------------------------------------------------- ids
    @property
    def pad_id(self) -> int:
        return self.token_to_id[PAD]

    @property
    def unk_id(self) -> int:
        return self.token_to_id[UNK]

    @property
    def cls_id(self) -> int:
        return self.token_to_id[CLS]

    @property
    def eos_id(self) -> int:
        return self.token_to_id[EOS]

    @property
    def mask_id(self) -> int:
        return self.token_to_id[MASK]

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.token_to_id[t] for t in SPECIAL_TOKENS)

    def __len__(self) -> int:
        return len(self.id_to_token)

    # --------------------------------------------------------------- build
    @classmethod
    def build(cls, smiles_iterable: Iterable[str], min_freq: int = 1) -> SmilesTokenizer:
        """Build a vocabulary from a corpus.

        Order is by frequency (descending) with ties broken by the token string,
        so the same corpus always yields the same ids regardless of set/dict
        iteration order.
        """
        counts: Counter[str] = Counter()
        for smi in smiles_iterable:
            counts.update(tokenize(smi))
        kept = [(tok, n) for tok, n in counts.items() if n >= min_freq and tok not in SPECIAL_TOKENS]
        kept.sort(key=lambda item: (-item[1], item[0]))
        return cls(list(SPECIAL_TOKENS) + [tok for tok, _ in kept])

    # ------------------------------------------------------ encode / decode
    def encode(self, smiles: str, max_len: int | None = None) -> list[int]:
        """Return ``[cls] + token ids + [eos]``.

        With ``max_len`` the body is truncated (keeping its beginning) so that the
        total length including cls/eos is at most ``max_len``; cls and eos are
        always kept so a model can rely on them being present.
        """
        unk = self.unk_id
        body = [self.token_to_id.get(tok, unk) for tok in tokenize(smiles)]
        if max_len is not None:
            if max_len < 2:
                raise ValueError("max_len must be >= 2 to hold <cls> and <eos>")
            body = body[: max_len - 2]
        return [self.cls_id, *body, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Inverse of ``encode``; special tokens (incl. ``<unk>``) are dropped."""
        specials = self.special_ids
        return "".join(self.id_to_token[int(i)] for i in ids if int(i) not in specials)

    # ------------------------------------------------------- serialization
    def to_dict(self) -> dict:
        return {"type": "SmilesTokenizer", "regex": SMILES_REGEX, "vocab": list(self.id_to_token)}

    @classmethod
    def from_dict(cls, data: dict) -> SmilesTokenizer:
        # A vocabulary built with a different regex would give silently wrong ids.
        regex = data.get("regex", SMILES_REGEX)
        if regex != SMILES_REGEX:
            raise ValueError("tokenizer was saved with a different SMILES regex")
        return cls(data["vocab"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SmilesTokenizer:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        return f"SmilesTokenizer(vocab_size={len(self)})"
