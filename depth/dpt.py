"""DPT (MiDaS v3/v3.1) depth network on a backbone from the installed timm.

    image -> backbone, tapped at four hook layers -> reassemble each tap into a feature map
          -> 3x3 conv to `features` channels -> fusion blocks, deepest first -> head -> inverse depth

The backbone is an unmodified timm model; its forward is written out here (patch embedding,
position embeddings resized to the input, blocks up to the last hook) instead of being patched
in place as MiDaS does, so any input whose sides are multiples of 32 works. Parameter names are
ours; `depth/checkpoint.py` maps the official MiDaS key layout onto them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from storyreel.depth.registry import DepthModelConfig

PATCH = 16


class ResidualConvUnit(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3, plus the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """Adds the refined skip level to the path from below, refines, upsamples, 1x1 conv.

    The deepest block gets no skip input, but official checkpoints still store its `skip_unit`,
    so every block has one.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels)
        self.unit = ResidualConvUnit(channels)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.skip_unit(skip)
        x = self.unit(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Reassemble(nn.Module):
    """Tokens of one transformer tap -> image-like feature map at 1/4, 1/8, 1/16 or 1/32 scale.

    readout "project": each patch token is concatenated with the class token and projected back
    (Linear 2C->C + GELU); then unflatten to the patch grid, 1x1 conv, and resample by `level`.
    """

    def __init__(self, embed_dim: int, out_channels: int, level: int):
        super().__init__()
        self.readout = nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU())
        self.project = nn.Conv2d(embed_dim, out_channels, 1)
        self.resample = {
            0: lambda: nn.ConvTranspose2d(out_channels, out_channels, 4, stride=4),
            1: lambda: nn.ConvTranspose2d(out_channels, out_channels, 2, stride=2),
            2: lambda: nn.Identity(),
            3: lambda: nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1),
        }[level]()

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        cls, patches = tokens[:, :1], tokens[:, 1:]
        x = self.readout(torch.cat([patches, cls.expand_as(patches)], dim=-1))
        x = x.transpose(1, 2).unflatten(2, grid)
        return self.resample(self.project(x))


def make_head(features: int) -> nn.Sequential:
    # Index layout matches the official `scratch.output_conv` (convs at 0, 2, 4).
    return nn.Sequential(
        nn.Conv2d(features, features // 2, 3, padding=1),
        nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        nn.Conv2d(features // 2, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 1, 1),
        nn.ReLU(),  # inverse depth is non-negative
    )


class DPT(nn.Module):
    def __init__(self, config: DepthModelConfig):
        import timm

        super().__init__()
        self.config = config
        self.backbone = timm.create_model(config.backbone, pretrained=False, **config.backbone_kwargs)
        embed_dim = self.backbone.embed_dim
        self.reassemble = nn.ModuleList(
            nn.Identity() if level < config.cnn_levels else Reassemble(embed_dim, channels, level)
            for level, channels in enumerate(config.level_channels)
        )
        self.layer_rn = nn.ModuleList(
            nn.Conv2d(channels, config.features, 3, padding=1, bias=False) for channels in config.level_channels
        )
        self.fusion = nn.ModuleList(FusionBlock(config.features) for _ in range(4))
        self.head = make_head(config.features)
        self._rel_pos_index: dict[tuple[int, int], torch.Tensor] = {}

    # -- backbone ---------------------------------------------------------------------------
    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Patch tokens with class token and position embedding; ResNet stage outputs for hybrids."""
        stem = self.backbone.patch_embed
        cnn_taps = []
        if self.config.kind == "hybrid":
            resnet = stem.backbone
            x = resnet.stem(x)
            for stage in resnet.stages:
                x = stage(x)
                cnn_taps.append(x)
            x = resnet.norm(x)
        x = stem.proj(x).flatten(2).transpose(1, 2)
        if self.config.kind != "hybrid":
            x = stem.norm(x)  # identity in every registered model; kept for fidelity to timm
        x = torch.cat([self.backbone.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.backbone.pos_embed is not None:
            x = x + self._resized_pos_embed(x.shape[1] - 1)
        return x, cnn_taps

    def _resized_pos_embed(self, num_patches: int) -> torch.Tensor:
        pos = self.backbone.pos_embed
        if pos.shape[1] - 1 == num_patches:
            return pos
        side = int((pos.shape[1] - 1) ** 0.5)
        table = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=self._grid, mode="bilinear", align_corners=False)
        return torch.cat([pos[:, :1], table.permute(0, 2, 3, 1).reshape(1, num_patches, -1)], dim=1)

    def _beit_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """A timm BEiT block with its relative position bias resampled to this input's patch grid."""
        attn = block.attn
        batch, tokens, dim = x.shape
        h = block.norm1(x)
        qkv_bias = torch.cat([attn.q_bias, torch.zeros_like(attn.q_bias), attn.v_bias])
        qkv = F.linear(h, attn.qkv.weight, qkv_bias).reshape(batch, tokens, 3, attn.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=self._beit_rel_pos_bias(attn).to(q.dtype))
        h = attn.proj(h.transpose(1, 2).reshape(batch, tokens, dim))
        x = x + block.gamma_1 * h
        return x + block.gamma_2 * block.mlp(block.norm2(x))

    def _beit_rel_pos_bias(self, attn: nn.Module) -> torch.Tensor:
        from timm.models.beit import gen_relative_position_index

        (h0, w0), (h, w) = attn.window_size, self._grid
        table = attn.relative_position_bias_table
        grid_table, special = table[:-3], table[-3:]  # last 3 rows: cls<->token, cls<->cls
        if (h, w) != (h0, w0):  # bilinear resample of the (2h-1) x (2w-1) offset grid, as MiDaS v3.1
            grid_table = grid_table.reshape(1, 2 * h0 - 1, 2 * w0 - 1, -1).permute(0, 3, 1, 2)
            grid_table = F.interpolate(grid_table, size=(2 * h - 1, 2 * w - 1), mode="bilinear", align_corners=False)
            grid_table = grid_table.permute(0, 2, 3, 1).reshape((2 * h - 1) * (2 * w - 1), -1)
        if (h, w) not in self._rel_pos_index:
            self._rel_pos_index[(h, w)] = gen_relative_position_index((h, w)).to(table.device)
        index = self._rel_pos_index[(h, w)]
        bias = torch.cat([grid_table, special])[index.view(-1)].view(h * w + 1, h * w + 1, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four feature maps (1/4, 1/8, 1/16, 1/32 of the input) the decoder fuses."""
        self._grid = (x.shape[-2] // PATCH, x.shape[-1] // PATCH)
        tokens, cnn_taps = self._embed(x)
        block_hooks = self.config.hooks[self.config.cnn_levels:]
        taps = [cnn_taps[i] for i in self.config.hooks[: self.config.cnn_levels]]
        for i, block in enumerate(self.backbone.blocks[: max(block_hooks) + 1]):
            tokens = self._beit_block(block, tokens) if self.config.kind == "beit" else block(tokens)
            if i in block_hooks:
                taps.append(tokens)
        return [
            tap if level < self.config.cnn_levels else self.reassemble[level](tap, self._grid)
            for level, tap in enumerate(taps)
        ]

    # -- decoder ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalized images, H and W multiples of 32 -> (B, H, W) relative inverse depth."""
        l1, l2, l3, l4 = (conv(f) for conv, f in zip(self.layer_rn, self.encode(x)))
        path = self.fusion[3](l4, size=l3.shape[2:])
        path = self.fusion[2](path, l3, size=l2.shape[2:])
        path = self.fusion[1](path, l2, size=l1.shape[2:])
        path = self.fusion[0](path, l1)
        return self.head(path).squeeze(1)
