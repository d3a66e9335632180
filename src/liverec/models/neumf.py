"""Neural Collaborative Filtering (He et al., WWW 2017): GMF, MLP and their fusion NeuMF.

    GMF:    φ_gmf = p_u ⊙ q_i                                  (B, M, k)
    MLP:    φ_mlp = tower([p'_u, q'_i])  (Linear + ReLU)*       (B, M, layers[-1])
    NeuMF:  ŷ = h · [φ_gmf, φ_mlp] + b                          (B, M)

Scores are logits (the paper's sigmoid lives in the loss). GMF and MLP have separate embeddings.
Pretraining (paper Sec. 3.4.1): train a "gmf" and an "mlp" model, then start NeuMF from their
weights with the output layer h = [α·h_gmf, (1 − α)·h_mlp]; `prepare()` does this when the config
names the two run directories.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from liverec.errors import DataNotFoundError, LiverecError
from liverec.models.base import Recommender

VARIANTS = ("neumf", "gmf", "mlp")
_SCORE_ALL_BUDGET = 1 << 24  # activations per score_all chunk (B × items × width), ~64 MB float32


@dataclass
class NeuMFConfig:
    variant: str = "neumf"  # "gmf", "mlp", or "neumf" (both branches fused by one output layer)
    embedding_dim: int = 8  # k: predictive factors of GMF (size of its p_u, q_i)
    # tower widths: [0] = size of the [p'_u, q'_i] concat (each half), [-1] = MLP predictive factors
    mlp_layers: tuple[int, ...] = (64, 32, 16, 8)
    dropout: float = 0.0  # dropout after each ReLU of the tower (the paper uses none)
    pretrained_gmf: str | None = None  # run directory (with model.safetensors) of a trained "gmf"
    pretrained_mlp: str | None = None  # run directory of a trained "mlp"; both or neither
    alpha: float = 0.5  # weight of the GMF half of the output layer after pretrained init
    # GMF only: keep h at ones, which makes GMF exactly MF without biases (paper Sec. 3.2). A learned
    # h lets training scale h up and p, q down, so an L2 term on the embeddings stops regularising.
    fixed_h: bool = False

    def __post_init__(self) -> None:
        self.mlp_layers = tuple(int(w) for w in self.mlp_layers)  # TOML gives lists
        if self.variant not in VARIANTS:
            raise LiverecError(
                f"neumf: variant must be one of {list(VARIANTS)}, got {self.variant!r}"
            )
        if self.embedding_dim < 1:
            raise LiverecError(f"neumf: embedding_dim must be >= 1, got {self.embedding_dim}")
        if not self.mlp_layers or min(self.mlp_layers) < 1 or self.mlp_layers[0] % 2:
            raise LiverecError(
                f"neumf: mlp_layers must be positive widths with an even first entry (it is the "
                f"concat of the user and item vectors), got {list(self.mlp_layers)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise LiverecError(f"neumf: dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.alpha <= 1.0:
            raise LiverecError(f"neumf: alpha must be in [0, 1], got {self.alpha}")
        pretrained = (self.pretrained_gmf is not None, self.pretrained_mlp is not None)
        if self.fixed_h and self.variant != "gmf":
            raise LiverecError("neumf: fixed_h applies to variant='gmf' only")
        if any(pretrained) and (self.variant != "neumf" or not all(pretrained)):
            raise LiverecError(
                "neumf: pretrained_gmf and pretrained_mlp go together and only with variant='neumf'"
            )


def load_pretrained_state(run_dir: str | Path) -> dict[str, torch.Tensor]:
    """The state dict saved in `run_dir/model.safetensors` (safetensors: tensors only, no pickle)."""
    path = Path(run_dir) / "model.safetensors"
    if not path.is_file():
        raise DataNotFoundError(
            f"no model.safetensors in {str(run_dir)!r}; train the gmf/mlp variant first and pass "
            f"its run directory"
        )
    return load_file(str(path))


class NeuMF(Recommender):
    """GMF, MLP or NeuMF, chosen by `config.variant`."""

    Config = NeuMFConfig

    def __init__(self, config: NeuMFConfig, num_users: int, num_items: int) -> None:
        super().__init__(config, num_users, num_items)
        self.use_gmf = config.variant in ("gmf", "neumf")
        self.use_mlp = config.variant in ("mlp", "neumf")
        width = 0
        if self.use_gmf:
            self.gmf_user = nn.Embedding(num_users, config.embedding_dim)  # p: (U, k)
            self.gmf_item = nn.Embedding(num_items, config.embedding_dim)  # q: (I, k)
            width += config.embedding_dim
        if self.use_mlp:
            half = config.mlp_layers[0] // 2
            self.mlp_user = nn.Embedding(num_users, half)  # p': (U, layers[0] / 2)
            self.mlp_item = nn.Embedding(num_items, half)  # q': (I, layers[0] / 2)
            tower: list[nn.Module] = []
            for w_in, w_out in zip(config.mlp_layers[:-1], config.mlp_layers[1:], strict=True):
                # Dropout is always a module (even p = 0) so state-dict keys do not depend on it
                tower += [nn.Linear(w_in, w_out), nn.ReLU(), nn.Dropout(config.dropout)]
            self.mlp = nn.Sequential(*tower)
            width += config.mlp_layers[-1]
        self.output = nn.Linear(width, 1)  # h and b
        self.output.weight.requires_grad_(not config.fixed_h)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Embeddings N(0, 0.01²) as in the paper; Xavier for the tower, LeCun for the output.

        The paper draws every weight from N(0, 0.01²); re-implementations use Xavier / LeCun for the
        linear layers because such tiny weights starve a deep tower of signal.
        """
        for module in self.modules():
            if isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.01, generator=generator)
            elif isinstance(module, nn.Linear):
                if module is self.output:  # feeds a sigmoid, not a ReLU: gain 1
                    nn.init.kaiming_uniform_(
                        module.weight, nonlinearity="sigmoid", generator=generator
                    )
                else:
                    nn.init.xavier_uniform_(module.weight, generator=generator)
                nn.init.zeros_(module.bias)
        if self.config.fixed_h:
            nn.init.ones_(self.output.weight)

    def prepare(self) -> None:
        """Start from the pretrained GMF and MLP when the config names them (call before training)."""
        if self.config.pretrained_gmf is None or self.config.pretrained_mlp is None:
            return
        self.init_from_pretrained(
            load_pretrained_state(self.config.pretrained_gmf),
            load_pretrained_state(self.config.pretrained_mlp),
        )

    @torch.no_grad()
    def init_from_pretrained(
        self, gmf_state: dict[str, torch.Tensor], mlp_state: dict[str, torch.Tensor]
    ) -> None:
        """Copy embeddings and tower from trained GMF / MLP state dicts; h = [α·h_gmf, (1−α)·h_mlp].

        The output bias becomes α·b_gmf + (1−α)·b_mlp, so the fused logit starts at exactly
        α·GMF logit + (1 − α)·MLP logit.
        """
        if self.config.variant != "neumf":
            raise LiverecError("init_from_pretrained needs variant='neumf'")
        alpha = self.config.alpha
        for state, what in ((gmf_state, "GMF"), (mlp_state, "MLP")):
            missing = {"output.weight", "output.bias"} - set(state)
            if missing:
                raise LiverecError(
                    f"pretrained {what} state lacks {sorted(missing)}; is it a {what.lower()} run?"
                )
        new = {k: v for k, v in gmf_state.items() if k.startswith("gmf_")}
        new.update({k: v for k, v in mlp_state.items() if k.startswith("mlp")})
        new["output.weight"] = torch.cat(
            [alpha * gmf_state["output.weight"], (1 - alpha) * mlp_state["output.weight"]], dim=1
        )
        new["output.bias"] = (
            alpha * gmf_state["output.bias"] + (1 - alpha) * mlp_state["output.bias"]
        )
        for key, own in self.state_dict().items():
            if key not in new:
                raise LiverecError(
                    f"pretrained GMF/MLP states lack {key!r}; train them with variant gmf/mlp"
                )
            if new[key].shape != own.shape:
                raise LiverecError(
                    f"pretrained {key!r} has shape {list(new[key].shape)}, NeuMF expects "
                    f"{list(own.shape)}; match embedding_dim, mlp_layers and the data set"
                )
        self.load_state_dict(new)

    def score(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Logits of (user, item) pairs: users (B,), items (B, M) -> (B, M)."""
        parts = []
        if self.use_gmf:
            parts.append(self.gmf_user(users).unsqueeze(1) * self.gmf_item(items))  # (B, M, k)
        if self.use_mlp:
            q = self.mlp_item(items)  # (B, M, layers[0]/2)
            p = self.mlp_user(users).unsqueeze(1).expand(-1, q.shape[1], -1)  # (B, M, layers[0]/2)
            parts.append(self.mlp(torch.cat([p, q], dim=-1)))  # (B, M, layers[-1])
        return self.output(torch.cat(parts, dim=-1)).squeeze(-1)  # (B, M)

    def score_shared(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """users (B,), items (M,) -> (B, M); GMF as one matmul, since h·(p ⊙ q) = (p ⊙ h)·q."""
        if self.config.variant != "gmf":
            return super().score_shared(users, items)
        p = self.gmf_user(users) * self.output.weight  # (B, k)
        return p @ self.gmf_item(items).T + self.output.bias  # (B, M)

    def score_all(self, users: torch.Tensor) -> torch.Tensor:
        """users (B,) -> (B, I), in item chunks so activations stay within a fixed budget."""
        batch = users.shape[0]
        width = max(self.config.embedding_dim, *self.config.mlp_layers)
        chunk = max(1, _SCORE_ALL_BUDGET // (max(batch, 1) * width))
        items = torch.arange(self.num_items, device=users.device)
        return torch.cat(
            [
                self.score(users, items[s : s + chunk].expand(batch, -1))
                for s in range(0, self.num_items, chunk)
            ],
            dim=1,
        )  # (B, I)

    def user_embeddings(self) -> torch.Tensor | None:
        """GMF only: (U, k) p_u ⊙ h, since h·(p ⊙ q) = (p ⊙ h)·q; None for mlp / neumf."""
        if self.config.variant != "gmf":
            return None
        return (self.gmf_user.weight * self.output.weight).detach()  # (U, k)

    def item_embeddings(self) -> torch.Tensor | None:
        """GMF only: (I, k) q_i; None for mlp / neumf."""
        if self.config.variant != "gmf":
            return None
        return self.gmf_item.weight.detach()  # (I, k)

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Squared norms of the embedding rows the batch touches (tower weights: use weight decay)."""
        reg = torch.zeros((), device=users.device)
        if self.use_gmf:
            reg = reg + self.gmf_user(users).pow(2).sum() + self.gmf_item(items).pow(2).sum()
        if self.use_mlp:
            reg = reg + self.mlp_user(users).pow(2).sum() + self.mlp_item(items).pow(2).sum()
        return reg
