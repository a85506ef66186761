"""Character tokens: Animate-A-Story's TimeInv table and the hook that feeds it to the text encoder.

A character is a made-up token such as "<teddy>" whose text embedding is learned from a few images:

* TimeInv table: V ∈ R^{B×d}, one row per bucket of diffusion timesteps (B = number of training
  timesteps by default, so one row per timestep as in the paper). At timestep t the token's input
  embedding is V[bucket(t)]. Mode "ti" (classic textual inversion, the baseline) is the same table
  with B = 1. Mode "lora" (the LoRA-alone ablation) keeps that one row at the init word's embedding
  and learns only the LoRA.
* Training may tie the rows to a few learned anchors (`AnchoredTimeInvTable`, rows interpolated
  between them) so every step's gradient reaches the neighbouring timesteps too; the pack still
  stores all B rows, and generation reads them the same way either way.

The token never enters the text encoder's vocabulary (its weights stay untouched): it is added to
the tokenizer, and a forward hook on the text encoder's input-embedding layer swaps in the table row
wherever the token appears. Many characters can be active at once, each with its own token.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from storyreel.core.errors import UserError

MODES = ("timeinv", "ti", "lora")


class TimeInvTable(nn.Module):
    """Token embedding per timestep bucket: row `bucket(t)` is the token's embedding at timestep t."""

    def __init__(self, init_embedding: torch.Tensor, num_buckets: int, num_train_timesteps: int):
        super().__init__()
        self._check_buckets(num_buckets, num_train_timesteps)
        self.num_train_timesteps = num_train_timesteps
        self.rows = nn.Parameter(init_embedding.detach().float().reshape(1, -1).repeat(num_buckets, 1).clone())

    @staticmethod
    def _check_buckets(num_buckets: int, num_train_timesteps: int) -> None:
        if not 1 <= num_buckets <= num_train_timesteps:
            raise UserError(f"--buckets must be between 1 and {num_train_timesteps}, got {num_buckets}")

    @property
    def num_buckets(self) -> int:
        return self.rows.shape[0]

    def bucket(self, timestep: int) -> int:
        """Equal-width buckets over [0, T): with B = T, bucket(t) = t."""
        t = min(max(int(timestep), 0), self.num_train_timesteps - 1)
        return t * self.num_buckets // self.num_train_timesteps

    def forward(self, timestep: int) -> torch.Tensor:
        return self.rows[self.bucket(timestep)]


def anchor_weights(num_buckets: int, num_anchors: int) -> torch.Tensor:
    """(B, K) linear-interpolation weights: row b sits at x = b·(K−1)/(B−1) between anchors ⌊x⌋ and ⌊x⌋+1.

    Anchors are evenly spaced over the buckets (with B = T = 1000 and K = 50, at the timesteps of
    DDIM-50's "linspace" schedule, rounded). Computed in integers, so a weight is exactly 0 where a
    row does not depend on an anchor (update counts rely on that).
    """
    weights = torch.zeros(num_buckets, num_anchors, dtype=torch.float64)
    for b in range(num_buckets):
        i, rest = divmod(b * (num_anchors - 1), num_buckets - 1)
        weights[b, i] = 1.0 - rest / (num_buckets - 1)
        if rest:
            weights[b, i + 1] = rest / (num_buckets - 1)
    return weights.float()


class AnchoredTimeInvTable(TimeInvTable):
    """A TimeInv table whose B rows are linear interpolations of K < B learned anchors (training only).

    Why: with one free row per timestep and one sampled timestep per step, 1,000 steps give each row
    about one update and leave ~37% of rows (~18 of the 50 that DDIM-50 reads) at the init word.
    Interpolating shares every step's gradient with the neighbouring timesteps, so with K = 50 each
    row is reached by ~40+ of 1,000 uniformly sampled steps, whatever step count inference uses
    (DDIM-25's timesteps are not a subset of DDIM-50's). `rows` is the full (B, d) table: packs keep
    the paper's per-timestep representation, and `bucket`/`forward` read it as they read a free table.
    """

    def __init__(self, init_embedding: torch.Tensor, num_buckets: int, num_train_timesteps: int, num_anchors: int):
        nn.Module.__init__(self)  # no free `rows` parameter: the rows are derived from the anchors
        self._check_buckets(num_buckets, num_train_timesteps)
        if not 2 <= num_anchors < num_buckets:
            raise ValueError(f"anchors must be between 2 and {num_buckets - 1}, got {num_anchors}")
        self.num_train_timesteps = num_train_timesteps
        self.anchors = nn.Parameter(init_embedding.detach().float().reshape(1, -1).repeat(num_anchors, 1).clone())
        self.register_buffer("weights", anchor_weights(num_buckets, num_anchors), persistent=False)

    @property
    def num_buckets(self) -> int:
        return self.weights.shape[0]

    @property
    def rows(self) -> torch.Tensor:
        return self.weights @ self.anchors

    def forward(self, timestep: int) -> torch.Tensor:
        return self.weights[self.bucket(timestep)] @ self.anchors

    def rows_reached(self, anchor_grad: torch.Tensor) -> torch.Tensor:
        """Bool (B,): rows that depend on an anchor with non-zero gradient (what one step updates)."""
        return (self.weights[:, anchor_grad.abs().sum(1) > 0] > 0).any(1)


def make_timeinv_table(init_embedding: torch.Tensor, num_buckets: int, num_train_timesteps: int,
                       num_anchors: int | None) -> TimeInvTable:
    """Anchored table when 2 ≤ anchors < buckets; else one free row per bucket (the paper's literal table)."""
    if num_anchors is not None and 2 <= num_anchors < num_buckets:
        return AnchoredTimeInvTable(init_embedding, num_buckets, num_train_timesteps, num_anchors)
    return TimeInvTable(init_embedding, num_buckets, num_train_timesteps)


def single_token_id(tokenizer, word: str) -> int:
    """Id of `word` if the tokenizer encodes it as exactly one token; a UserError otherwise."""
    ids = tokenizer(word, add_special_tokens=False).input_ids
    if len(ids) != 1:
        raise UserError(
            f"--init-word {word!r} is {len(ids)} tokens for this tokenizer; pick a word that is a single "
            f"token (a plain common noun such as 'bear' or 'cat')"
        )
    return ids[0]


# Printable ASCII without spaces: CLIP's tokenizer normalizes other text (an emoji, accents) so the
# token would not come back as itself, and adapter names (lora.adapter_name_for) are built from it.
_TOKEN = re.compile(r"[!-~]{1,64}")


def check_token(token, where: str = "--token") -> str:
    """A one-line UserError unless `token` is 1-64 printable ASCII characters without spaces ('<rex>')."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise UserError(f"{where} {token!r}: a character token is 1-64 ASCII letters, digits or punctuation "
                        "without spaces, e.g. '<rex>'")
    return token


def check_new_token(tokenizer, token: str) -> None:
    """A character token must not already mean something to the tokenizer."""
    ids = tokenizer(token, add_special_tokens=False).input_ids
    if token in tokenizer.get_vocab() or (len(ids) == 1 and ids[0] != tokenizer.unk_token_id):
        raise UserError(
            f"--token {token!r} is already in the tokenizer's vocabulary; "
            f"choose a new made-up token such as '<{token.strip('<>')}1>'"
        )


class CharacterTokens:
    """Placeholder tokens in the prompt, each resolved per timestep to its TimeInv table row.

    `encode(prompts, timestep)` returns the text encoder's last hidden state with every character
    token's input embedding replaced by its table row for that timestep. Without gradient the result
    is cached per combination of buckets, so a 50-step generation with B = 1000 still runs the text
    encoder only once per distinct bucket.
    """

    def __init__(self, tokenizer, text_encoder):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.tables: dict[int, TimeInvTable] = {}  # added token id -> table
        self.tokens: dict[str, int] = {}  # token text -> added token id
        self.adapters: dict[str, str] = {}  # token text -> its UNet LoRA adapter (packs without LoRA have none)
        self._stand_in_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
        self._swap: tuple[torch.Tensor, torch.Tensor] | None = None  # (mask, rows) for the running call
        self._cache: dict[tuple, torch.Tensor] = {}
        text_encoder.get_input_embeddings().register_forward_hook(self._swap_in_rows)

    def add(self, token: str, table: TimeInvTable) -> None:
        check_new_token(self.tokenizer, token)
        self.tokenizer.add_tokens([token])
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        self.tokens[token] = token_id
        self.tables[token_id] = table
        self._cache.clear()

    def buckets(self, timestep: int) -> tuple[int, ...]:
        return tuple(table.bucket(timestep) for table in self.tables.values())

    def encode(self, prompts: list[str], timestep: int) -> torch.Tensor:
        key = (tuple(prompts), self.buckets(timestep))
        if not torch.is_grad_enabled() and key in self._cache:
            return self._cache[key]
        ids = self.tokenizer(
            prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.text_encoder.device)
        embedding = self.text_encoder.get_input_embeddings()
        mask = torch.zeros(ids.shape, dtype=torch.bool, device=ids.device)
        rows = torch.zeros(*ids.shape, embedding.embedding_dim, device=ids.device)
        for token_id, table in self.tables.items():
            here = ids == token_id
            if here.any():
                mask |= here
                rows = torch.where(here[..., None], table(timestep).to(rows.device), rows)
        # Added ids are past the embedding table; any valid id works as a stand-in since its row is replaced.
        ids = torch.where(mask, torch.full_like(ids, self._stand_in_id), ids)
        self._swap = (mask, rows)
        try:
            hidden = self.text_encoder(ids)[0]
        finally:
            self._swap = None
        if not torch.is_grad_enabled():
            self._cache[key] = hidden
        return hidden

    def _swap_in_rows(self, module, inputs, output):
        if self._swap is None or not self._swap[0].any():
            return output
        mask, rows = self._swap
        return torch.where(mask[..., None], rows.to(output.dtype), output)


class CharacterConditioning:
    """The pipeline's per-step text hook (`text_conditioning`) for a prompt with character tokens.

    Returns rows [negative, positive] at each step, with every token's embedding taken from its
    table row for that step's timestep; cached per bucket, so the text encoder runs only when a
    bucket changes.
    """

    def __init__(self, tokens: CharacterTokens, prompt: str, negative_prompt: str, unet):
        self.tokens, self.prompts, self.unet = tokens, [negative_prompt, prompt], unet

    def __call__(self, step_index: int, timestep: int) -> torch.Tensor:
        with torch.no_grad():
            return self.tokens.encode(self.prompts, timestep).to(self.unet.device, self.unet.dtype)
