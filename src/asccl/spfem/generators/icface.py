"""ICface-style reference generator: neutralise the source, then drive it with parameters.

ICface (Tripathy, Kannala, Rahtu, "ICface: Interpretable and Controllable Face Reenactment
Using GANs", WACV 2020) animates a face in two steps, each a pix2pix-style encoder-residual-
decoder that sees its condition as constant spatial maps concatenated to the image:

1. the neutraliser ``G_N(source, neutral params) -> neutral`` maps the source to a frontal,
   expressionless face (ICface's neutral vector: pose 0.5, every AU 0);
2. the driver ``G_A(neutral, driving params) -> generated`` gives the neutral face the
   driving frame's head pose and action units.

Here the parameters are either ICface's 20 OpenFace values (``params = "openface"``: the batch
carries ``"source_params"``/``"target_params"``, e.g. from :func:`read_openface_csv`) or the
12 landmark-derived values of :func:`landmark_expression_params` (``params = "landmarks"``,
the default: the data pipeline stores landmarks, not AUs). For SPFEM the driving vector is
the reference (target-emotion) frame's expression with the source's speech entries (mouth
opening, width, jaw) and head pose (``mouth_from``/``pose_from``, :func:`mix_params`), so the
lips keep saying what the source says.

Losses (LSGAN throughout; ``lambda_*`` in :class:`ICfaceConfig`):

- kept from ICface: the adversarial loss on both generated images (neutral and driven) with
  a PatchGAN discriminator; the parameter regression, where the discriminator has a second
  head that regresses the parameters (trained on real frames, MSE) and the generator is
  asked to make that head read the driving parameters from ``generated`` and the neutral
  parameters from ``neutral``; the reconstruction loss, driving the neutral face with the
  source's own parameters must give the source back (L1);
- changed: ICface trains self-supervised on two frames of one video (the source driven with
  the other frame's parameters must reproduce that frame); here that L1 is the paired L1
  between ``generated`` and the DTW-aligned target frame of the same speaker and sentence
  (``lambda_paired``; with ``mouth_from = "source"`` the target's mouth is only approximately
  the driven one, which the audio alignment keeps close). No perceptual (VGG) term (the
  released code defines one; it needs pretrained weights, and nothing downloads here).
  ICface's optimiser is RMSprop; the shared trainer uses Adam. The discriminator is
  unconditional, as ICface's. Instance normalisation instead of the released model's batch
  normalisation; as it removes spatially constant inputs (which would leave the condition
  to the border effects of padding), the conditioning maps are concatenated at the input
  *and* at the bottleneck, and the first convolution has no normalisation.

Quick start (``batch``: an :class:`asccl.spfem.data.SPFEMFrames` batch)::

    model = ICface(ICfaceConfig(image_size=64))
    d_terms = model.discriminator_losses(batch)         # {"d_adv", "d_param"}
    g_terms, outputs = model.generator_losses(batch)    # {"g_adv", "g_param", "g_rec", "g_paired"}
    frames = model.translate(batch)                     # (B, 3, 64, 64) in [-1, 1]

A model trained with ``params = "openface"`` is driven by OpenFace CSVs: pass ``(B, 20)`` rows
of :meth:`AUTrack.icface_params` as ``"source_params"`` and ``"reference_params"``.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asccl.spfem.action_units import LAYOUTS, landmark_expression_params, mix_params
from asccl.spfem.config import ICfaceConfig
from asccl.spfem.generators.base import Batch, ReferenceGenerator, check_images
from asccl.spfem.generators.layers import (
    ConvNormAct,
    Down,
    PatchDiscriminator,
    ResidualBlock,
    Up,
    adversarial_d_loss,
    adversarial_g_loss,
    init_weights,
)


class ConditionedTranslator(nn.Module):
    """Encoder-residual-decoder conditioned on a parameter vector broadcast as maps.

    ``forward(image (B, 3, S, S) in [-1, 1], params (B, P)) -> (B, 3, S, S)`` in [-1, 1]
    (tanh). The ``P`` maps are concatenated to the image (ICface) and to the bottleneck.
    ``skip``: the output is ``tanh(head + atanh(image))`` (zero the head to start at the
    identity).
    """

    def __init__(
        self, num_params: int, conv_dim: int, num_down: int, res_blocks: int, skip: bool = False
    ) -> None:
        super().__init__()
        self.skip = skip
        layers: list[nn.Module] = [ConvNormAct(3 + num_params, conv_dim, 7, norm="none")]
        channels = conv_dim
        for _ in range(num_down):
            layers.append(Down(channels, channels * 2))
            channels *= 2
        self.encoder = nn.Sequential(*layers)
        self.fuse = ConvNormAct(channels + num_params, channels, 1, norm="none")
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(res_blocks)))
        layers = []
        for _ in range(num_down):
            layers.append(Up(channels, channels // 2))
            channels //= 2
        self.decoder = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 3, 7, 1, 3)

    def forward(self, image: Tensor, params: Tensor) -> Tensor:
        maps = params[:, :, None, None].to(image.dtype)  # (B, P, 1, 1)
        h = self.encoder(torch.cat([image, maps.expand(-1, -1, *image.shape[-2:])], 1))
        h = self.fuse(torch.cat([h, maps.expand(-1, -1, *h.shape[-2:])], 1))
        out = self.head(self.decoder(self.blocks(h)))
        if self.skip:
            out = out + torch.atanh(image.clamp(-0.999, 0.999)).to(out.dtype)
        return torch.tanh(out)


class ICface(ReferenceGenerator):
    """ICface-style two-step generator (see the module docstring).

    ``generator_losses`` outputs: ``"generated"`` (the driven face, what ASCCL supervises),
    ``"neutral"``, ``"reconstructed"`` (all ``(B, 3, S, S)`` in [-1, 1]) and
    ``"driving_params"`` ``(B, P)``.
    """

    name = "icface"
    adapter = "image2image"  # outputs["generated"] vs batch["source"], [-1, 1], RGB
    Config = ICfaceConfig

    def __init__(self, config: ICfaceConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ICfaceConfig()
        self.layout = LAYOUTS[config.params]
        p = self.layout.size
        self.neutraliser = ConditionedTranslator(p, config.conv_dim, config.num_down,
                                                 config.res_blocks, config.skip)  # fmt: skip
        self.driver = ConditionedTranslator(p, config.conv_dim, config.num_down,
                                            config.res_blocks, config.skip)  # fmt: skip
        self.discriminator = PatchDiscriminator(
            config.image_size, 3, config.d_conv_dim, config.d_layers, aux_outputs=p
        )
        self.register_buffer(
            "neutral_params", torch.tensor(self.layout.neutral, dtype=torch.float32),
            persistent=False,
        )  # fmt: skip
        init_weights(self)
        if config.skip:  # both sub-nets start at the identity
            for net in (self.neutraliser, self.driver):
                nn.init.zeros_(net.head.weight)
                nn.init.zeros_(net.head.bias)

    # ------------------------------------------------------------------ parameters
    def generator_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.neutraliser.parameters()
        yield from self.driver.parameters()

    def discriminator_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.discriminator.parameters()

    def frame_params(self, batch: Batch, which: str) -> Tensor:
        """``(B, P)`` parameters of the ``"source"`` or ``"target"`` frame of ``batch``.

        ``params = "landmarks"``: computed from ``batch[f"{which}_landmarks"]``;
        ``"openface"``: ``batch[f"{which}_params"]``. No gradient flows into them. Landmark
        parameters are clamped to [-0.5, 1.5] (about [0, 1] for real faces), NaN -> 0.5.
        """
        if self.config.params == "landmarks":
            key = f"{which}_landmarks"
            if key not in batch:
                raise KeyError(f"batch has no {key!r} (params = 'landmarks'); keys: "
                               f"{sorted(batch)}")  # fmt: skip
            with torch.no_grad():  # clamped: a failed landmark fit must not blow up the MSE
                params = landmark_expression_params(batch[key])
                return params.nan_to_num(0.5).clamp(-0.5, 1.5)
        key = f"{which}_params"
        if key not in batch:
            raise KeyError(f"batch has no {key!r} (params = 'openface': ICface's 20 values per "
                           f"frame, see AUTrack.icface_params); keys: {sorted(batch)}")  # fmt: skip
        return self._check_params(batch[key], key)

    def _check_params(self, params: Tensor, name: str) -> Tensor:
        if params.dim() != 2 or params.shape[1] != self.layout.size:
            raise ValueError(
                f"{name} must be (B, {self.layout.size}) {self.config.params} parameters, got "
                f"{tuple(params.shape)}"
            )
        return params.float().detach()

    def driving_params(self, source: Tensor, reference: Tensor) -> Tensor:
        """Reference expression with the source's speech/pose entries (as configured)."""
        return mix_params(source, reference, self.layout, mouth_from=self.config.mouth_from,
                          pose_from=self.config.pose_from)  # fmt: skip

    # ------------------------------------------------------------------ forward
    def forward(self, source: Tensor, driving: Tensor) -> tuple[Tensor, Tensor]:
        """``(generated, neutral)``: ``source`` ``(B, 3, S, S)`` in [-1, 1] neutralised, then
        driven by ``driving`` ``(B, P)``."""
        check_images(source, "source", self.config.image_size)
        neutral = self.neutraliser(source, self.neutral_params.expand(source.shape[0], -1))
        return self.driver(neutral, driving), neutral

    def _step(self, batch: Batch) -> dict[str, Tensor]:
        source = batch["source"]
        p_source = self.frame_params(batch, "source")
        p_target = self.frame_params(batch, "target")
        driving = self.driving_params(p_source, p_target)
        generated, neutral = self(source, driving)
        return {"generated": generated, "neutral": neutral, "driving_params": driving,
                "source_params": p_source, "target_params": p_target}  # fmt: skip

    # ------------------------------------------------------------------ losses
    def discriminator_losses(self, batch: Batch) -> dict[str, Tensor]:
        """LSGAN real/fake on real frames (source, target) vs fakes (generated, neutral),
        and the parameter head regressing the real frames' parameters (MSE)."""
        cfg = self.config
        with torch.no_grad():
            out = self._step(batch)
        real = torch.cat([batch["source"], batch["target"]])  # (2B, 3, S, S)
        fake = torch.cat([out["generated"], out["neutral"]])
        real_scores, real_params = self.discriminator(real)
        fake_scores, _ = self.discriminator(fake)
        target_params = torch.cat([out["source_params"], out["target_params"]])
        return {
            "d_adv": cfg.lambda_adv * adversarial_d_loss("lsgan", real_scores, fake_scores),
            "d_param": cfg.lambda_d_param * F.mse_loss(real_params.float(), target_params),
        }

    def generator_losses(self, batch: Batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Adversarial, parameter regression, reconstruction and paired L1 (weighted)."""
        cfg = self.config
        out = self._step(batch)
        generated, neutral = out["generated"], out["neutral"]
        b = generated.shape[0]
        scores, params = self.discriminator(torch.cat([generated, neutral]))
        wanted = torch.cat([out["driving_params"], self.neutral_params.expand(b, -1)])
        reconstructed = self.driver(neutral, out["source_params"])
        out["reconstructed"] = reconstructed
        terms = {
            "g_adv": cfg.lambda_adv * adversarial_g_loss("lsgan", scores),
            "g_param": cfg.lambda_param * F.mse_loss(params.float(), wanted),
            "g_rec": cfg.lambda_rec * F.l1_loss(reconstructed.float(), batch["source"].float()),
            "g_paired": cfg.lambda_paired * F.l1_loss(generated.float(), batch["target"].float()),
        }
        return terms, out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def translate(self, batch: Batch) -> Tensor:
        """``batch["source"]`` driven by the reference's expression: ``(B, 3, S, S)`` in
        [-1, 1].

        The reference's parameters are ``batch["reference_params"]`` when given (``(B, P)``
        in this model's layout, e.g. ``AUTrack.icface_params()`` rows for ``params =
        "openface"``), else those of the target frame (``"target_landmarks"`` or
        ``"target_params"``). The source's are needed only for entries taken from it.
        """
        source = batch["source"]
        if "reference_params" in batch:
            reference = self._check_params(batch["reference_params"], "reference_params")
        else:
            reference = self.frame_params(batch, "target")
        if self.config.mouth_from == "reference" and self.config.pose_from == "reference":
            driving = reference
        else:
            driving = self.driving_params(self.frame_params(batch, "source"), reference)
        return self(source, driving.to(source.device))[0]
