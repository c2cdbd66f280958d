"""The copy task: can a model read its inputs? FourM as built, FourM at GPT-2's 0.02 scales, and torch.nn.Transformer.

Two modalities of random ids (`--vocab`, `--length`), every input token visible, the targets the same ids
in the second modality at the same positions; batch 16, AdamW at lr 2e-3, the tiny size (dim 128, 2 + 2
layers, head_dim 32). Every `--every` steps each model's token accuracy on a fresh batch of 512 samples is
printed, and at the end the first step at which each reached 99%.

- `fourm`: `FourM` as the project builds it;
- `fourm-gpt2`: the same model with every embedding and linear layer re-initialised as before the fix
  (normal(0, 0.02), residual projections 0.02 / sqrt(2 x depth), tied heads unscaled): the reproduction;
- `reference`: `torch.nn.Transformer` of the same width and depth (post-norm, ReLU, its own initialisation)
  with learned token and position embeddings (`nn.Embedding`'s default N(0, 1)), a learned query plus the
  target position, and a linear head.

    .venv/bin/python benchmarks/copy_task.py [--steps 600] [--vocab 16] [--length 8] [--seed 0]

The last line reads `fourm_steps_to_99=<n> gpt2_steps_to_99=<n|never> reference_steps_to_99=<n|never>`.
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from motionlab.models import FourM, FourMConfig

DIM, DEPTH, HEAD_DIM, BATCH, LR = 128, 2, 32, 16, 2e-3
EVAL_BATCH = 512
GPT2_STD = 0.02


def copy_batch(batch: int, length: int, vocab: int, g: torch.Generator) -> dict[str, Tensor]:
    """Modality 0 holds random ids (B, L), all visible; modality 1 asks for the same ids at the same positions."""
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    pos = torch.arange(length).expand(batch, length)
    zeros = torch.zeros(batch, length, dtype=torch.long)
    no_pad = torch.zeros(batch, length, dtype=torch.bool)
    return {"enc_tokens": ids, "enc_mod": zeros, "enc_pos": pos, "enc_pad": no_pad,
            "dec_tokens": ids, "dec_mod": zeros + 1, "dec_pos": pos, "dec_pad": no_pad}


def fourm(vocab: int, length: int, **knobs: object) -> FourM:
    return FourM(FourMConfig(modalities=("a", "b"), vocab_sizes=(vocab, vocab), max_seq_lens=(length, length),
                             dim=DIM, enc_depth=DEPTH, dec_depth=DEPTH, head_dim=HEAD_DIM, **knobs))


def gpt2_scales(model: FourM) -> FourM:
    """Every weight at normal(0, 0.02) as before the fix (residual projections / sqrt(2 x depth)), tied logits
    unscaled (std 0.02 tables make them 0.02 x sqrt(D) x |h|, as the old tied head did)."""
    for name, p in model.named_parameters():
        if p.dim() < 2 and "mask_token" not in name:
            continue
        std = GPT2_STD / math.sqrt(2 * DEPTH) if name.endswith("proj.weight") and "context" not in name else GPT2_STD
        nn.init.normal_(p, std=std)
    model.tok_emb.logit_scale = 1.0  # untied heads ignore it; kept for a tied layout
    return model


class Reference(nn.Module):
    """torch.nn.Transformer with learned token and position embeddings and a learned query."""

    def __init__(self, vocab: int, length: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, DIM)
        self.enc_pos, self.dec_pos = nn.Embedding(length, DIM), nn.Embedding(length, DIM)
        self.query = nn.Parameter(torch.zeros(DIM))
        self.transformer = nn.Transformer(DIM, DIM // HEAD_DIM, DEPTH, DEPTH, 4 * DIM, dropout=0.0, batch_first=True)
        self.head = nn.Linear(DIM, vocab)

    def forward(self, b: dict[str, Tensor]) -> Tensor:
        x = self.tok(b["enc_tokens"]) + self.enc_pos(b["enc_pos"])  # (B, L, D)
        y = self.query + self.dec_pos(b["dec_pos"])  # (B, L, D)
        return self.head(self.transformer(x, y))  # (B, L, V)

    def compute_loss(self, b: dict[str, Tensor]) -> tuple[Tensor, dict, dict[str, Tensor]]:
        logits = self(b)
        loss = F.cross_entropy(logits.flatten(0, 1), b["dec_tokens"].flatten())
        return loss, {}, {"b": (logits.argmax(-1) == b["dec_tokens"]).float().mean()}


def train(model: nn.Module, args: argparse.Namespace) -> list[float]:
    """Token accuracy on a fresh batch every `args.every` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(args.seed)
    held_out = torch.Generator().manual_seed(args.seed + 1)
    accuracies = []
    for step in range(1, args.steps + 1):
        loss, _, _ = model.compute_loss(copy_batch(BATCH, args.length, args.vocab, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            model.eval()
            with torch.no_grad():
                _, _, acc = model.compute_loss(copy_batch(EVAL_BATCH, args.length, args.vocab, held_out))
            model.train()
            accuracies.append(float(acc["b"]))
    return accuracies


def steps_to(accuracies: list[float], every: int, level: float = 0.99) -> str:
    hit = next((i for i, a in enumerate(accuracies) if a >= level), None)
    return "never" if hit is None else str((hit + 1) * every)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--vocab", type=int, default=16)
    parser.add_argument("--length", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    for label, build in (("fourm", lambda: fourm(args.vocab, args.length)),
                         # as before: learned positions, one table per modality, no aligned bias
                         ("fourm-gpt2", lambda: gpt2_scales(fourm(args.vocab, args.length, posemb="learned",
                                                                  share_embeddings="modality", aligned_bias=0.0))),
                         ("reference", lambda: Reference(args.vocab, args.length))):
        torch.manual_seed(args.seed)
        results[label] = train(build(), args)
        print(f"{label:<11}" + " ".join(f"{a:.2f}" for a in results[label]) + f"  (every {args.every} steps)",
              flush=True)
    print(f"copy task: vocab {args.vocab}, length {args.length}, batch {BATCH}, AdamW lr {LR}, dim {DIM}, "
          f"{DEPTH}+{DEPTH} layers, head_dim {HEAD_DIM}, {args.steps} steps, seed {args.seed}")
    print(f"fourm_steps_to_99={steps_to(results['fourm'], args.every)} "
          f"gpt2_steps_to_99={steps_to(results['fourm-gpt2'], args.every)} "
          f"reference_steps_to_99={steps_to(results['reference'], args.every)}")


if __name__ == "__main__":
    main()
