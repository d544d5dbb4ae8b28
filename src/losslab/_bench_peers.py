"""The peers of `losslab bench`: other libraries' losses as they publish them (formulas) or call them.

torchvision's sigmoid focal loss, the usual softmax focal formula (fvcore, kornia), mmdetection's QFL and VFL,
the long-tail losses as their authors' code writes them (with the class counts of an exponential profile),
and kornia and MONAI called where installed. For the lm-head group (:mod:`losslab._bench_lmhead`): torch's
``F.linear`` + ``F.cross_entropy``, and Cut Cross-Entropy's and Liger-Kernel's fused heads where installed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ALPHA, GAMMA = 0.25, 2.0


def tv_sigmoid_focal(x: Tensor, t: Tensor) -> Tensor:
    """torchvision.ops.sigmoid_focal_loss's formula, reduction "mean"."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** GAMMA)
    return ((ALPHA * t + (1 - ALPHA) * (1 - t)) * loss).mean()


def one_hot_bg(labels: Tensor, c: int) -> Tensor:
    return F.one_hot(labels, c + 1)[..., :c].float()


def fvcore_softmax_focal(x: Tensor, t: Tensor) -> Tensor:
    """The usual softmax focal formula (kornia / fvcore style): gather log p_t, weight by (1 - p_t)^gamma."""
    log_p = F.log_softmax(x, dim=1)
    log_pt = log_p.gather(1, t.unsqueeze(1)).squeeze(1)
    return (-((1 - log_pt.exp()) ** GAMMA) * log_pt).mean()


def mmdet_qfl(x: Tensor, target: tuple[Tensor, Tensor]) -> Tensor:
    """mmdetection's quality_focal_loss, summed over classes, divided by the number of positives."""
    labels, scores = target
    c = x.shape[1]
    sigma = x.sigmoid()
    loss = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none") * sigma.pow(2)
    pos = (labels < c).nonzero(as_tuple=True)[0]
    pos_label = labels[pos]
    scale = scores[pos] - sigma[pos, pos_label]
    loss = loss.clone()
    loss[pos, pos_label] = F.binary_cross_entropy_with_logits(x[pos, pos_label], scores[pos],
                                                               reduction="none") * scale.abs().pow(2)
    return loss.sum() / x.numel()


def mmdet_vfl(x: Tensor, q: Tensor) -> Tensor:
    p = x.sigmoid()
    weight = q * (q > 0).float() + 0.75 * (p - q).abs().pow(GAMMA) * (q <= 0).float()
    return (F.binary_cross_entropy_with_logits(x, q, reduction="none") * weight).mean()


LONGTAIL = ("logit_adjusted_cross_entropy", "ldam_loss", "vs_loss")
LONGTAIL_RHO = 100.0  # the long-tail rows' class counts: 1000 rho^(-c / (C - 1)), the benchmarks' exponential profile


def longtail_counts(num_classes: int) -> Tensor:
    c = torch.arange(num_classes, dtype=torch.float64)
    return 1000.0 * LONGTAIL_RHO ** (-c / max(num_classes - 1, 1))


def _la_logits(x: Tensor, t: Tensor) -> Tensor:
    """Menon et al.'s logit adjustment as usually written: x + log prior (tau = 1)."""
    counts = longtail_counts(x.shape[1])
    return x + torch.log(counts / counts.sum()).to(x.dtype)


def _ldam_logits(x: Tensor, t: Tensor) -> Tensor:
    """Cao et al.'s LDAMLoss.forward (max_m = 0.5, s = 30), up to its cross_entropy."""
    m_list = longtail_counts(x.shape[1]).pow(-0.25)
    m_list = (m_list * (0.5 / m_list.max())).to(x.dtype)
    index = torch.zeros_like(x, dtype=torch.bool).scatter_(1, t.view(-1, 1), True)
    batch_m = torch.matmul(m_list[None, :], index.to(x.dtype).T).view(-1, 1)
    return 30.0 * torch.where(index, x - batch_m, x)


def _vs_logits(x: Tensor, t: Tensor) -> Tensor:
    """Kini et al.'s VSLoss (gamma = 0.2, tau = 1): x / Delta + iota."""
    counts = longtail_counts(x.shape[1])
    temp = (1.0 / counts) ** 0.2
    delta, iota = (temp / temp.min()).to(x.dtype), torch.log(counts / counts.sum()).to(x.dtype)
    return x / delta + iota


ADJUSTED = {"logit_adjusted_cross_entropy": _la_logits, "ldam_loss": _ldam_logits, "vs_loss": _vs_logits}


def authors_formula(name: str) -> Callable:
    """The loss as its authors' code writes it: the adjusted logits, then F.cross_entropy (timed together)."""
    return lambda x, t: F.cross_entropy(ADJUSTED[name](x, t), t)


def pre_shifted(name: str) -> Callable:
    """The floor: F.cross_entropy of the adjusted logits computed beforehand (the adjustment not timed; same
    values, so the same exp underflow: LDAM's scale of 30 sends most of exp(z - max) into subnormals)."""
    cache: dict[tuple, Tensor] = {}

    def call(x: Tensor, t: Tensor) -> Tensor:
        key = (x.data_ptr(), tuple(x.shape), x.dtype, x.device)
        if key not in cache:
            cache.clear()
            cache[key] = ADJUSTED[name](x.detach(), t).requires_grad_(True)
        z = cache[key]
        z.grad = None
        return F.cross_entropy(z, t)

    return call


def smp_lovasz_softmax(x: Tensor, t: Tensor) -> Tensor:
    """segmentation_models_pytorch's LovaszLoss("multiclass") formula (Berman et al.'s code): softmax, pixels
    flattened, then per class present a sort of |fg - p| and the Jaccard gradient from two cumulative sums."""
    c = x.shape[1]
    probas = torch.movedim(x.softmax(dim=1), 1, -1).reshape(-1, c)
    labels = t.reshape(-1)
    losses = []
    for k in range(c):
        fg = (labels == k).to(probas.dtype)
        if fg.sum() == 0:
            continue
        errors_sorted, perm = torch.sort((fg - probas[:, k]).abs(), 0, descending=True)
        fg_sorted = fg[perm]
        total = fg_sorted.sum()
        jaccard = 1.0 - (total - fg_sorted.cumsum(0)) / (total + (1.0 - fg_sorted).cumsum(0))
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
        losses.append(torch.dot(errors_sorted, jaccard))
    return sum(losses) / len(losses)


def library_peers(loss: str, target: str) -> dict[str, Callable]:
    """kornia's and MONAI's focal losses, where installed, for a case of ``loss`` with ``target`` targets."""
    peers: dict[str, Callable] = {}
    try:
        import kornia.losses as K
    except ImportError:
        K = None
    if K is not None and loss == "sigmoid_focal_loss" and target == "dense":
        peers["kornia"] = lambda x, t: K.binary_focal_loss_with_logits(x, t, alpha=ALPHA, gamma=GAMMA,
                                                                       reduction="mean")
    if K is not None and loss == "softmax_focal_loss":
        peers["kornia"] = lambda x, t: K.focal_loss(x, t, alpha=1.0, gamma=GAMMA, reduction="mean")
    if K is not None and loss == "lovasz_softmax_loss":  # per image and every class: another loss, for scale
        peers["kornia (per image, all classes)"] = lambda x, t: K.lovasz_softmax_loss(x, t)
    try:
        from monai.losses import FocalLoss
    except ImportError:
        FocalLoss = None
    if FocalLoss is not None and loss == "sigmoid_focal_loss" and target == "dense":
        monai_sigmoid = FocalLoss(gamma=GAMMA, alpha=ALPHA, reduction="mean")
        peers["MONAI"] = lambda x, t: monai_sigmoid(x, t)
    if FocalLoss is not None and loss == "softmax_focal_loss":
        monai_softmax = FocalLoss(gamma=GAMMA, use_softmax=True, to_onehot_y=True, reduction="mean")
        peers["MONAI"] = lambda x, t: monai_softmax(x, t.unsqueeze(1))
    return peers


# ----------------------------------------------------------------------------
# the lm-head group: (hidden (N, d) or (B, T, d), weight (V, d), target (N,) or (B, T), shift) -> mean loss

IGNORE_INDEX = -100


def shifted(hidden: Tensor, target: Tensor, shift: bool) -> tuple[Tensor, Tensor]:
    """Flattened (tokens, d) hidden states and (tokens,) targets; with ``shift`` position t predicts t + 1
    (within each sequence of a (B, T) batch), by slicing as training loops write it."""
    if shift:
        hidden = hidden[:, :-1] if hidden.ndim == 3 else hidden[:-1]
        target = target[:, 1:] if target.ndim == 2 else target[1:]
    return hidden.reshape(-1, hidden.shape[-1]), target.reshape(-1)


def torch_linear_cross_entropy(hidden: Tensor, weight: Tensor, target: Tensor, shift: bool) -> Tensor:
    """The baseline: the (tokens, V) logits from ``F.linear``, then ``F.cross_entropy`` in float32."""
    h, t = shifted(hidden, target, shift)
    return F.cross_entropy(F.linear(h, weight).float(), t, ignore_index=IGNORE_INDEX)


def lm_head_peers(device: str) -> tuple[dict[str, Callable], list[str]]:
    """Cut Cross-Entropy's and Liger-Kernel's fused heads where installed, and a note for each one missing.

    On CPU: CCE's ``torch_compile`` implementation (its fallback: the logits' matmul and cross-entropy under
    ``torch.compile``; CCE's own kernel is Triton-only and needs a GPU). On CUDA: CCE's kernel
    (``impl="cce"``) and ``liger_kernel``'s ``LigerFusedLinearCrossEntropyLoss`` (which takes the weight
    first and has no shift: the slicing is done before the call and timed).
    """
    peers: dict[str, Callable] = {}
    notes: list[str] = []
    try:
        from cut_cross_entropy import linear_cross_entropy as cce
    except Exception as error:  # ImportError, or a broken triton underneath
        cce = None
        notes.append(f"cut-cross-entropy not measured: it does not import ({type(error).__name__}: {error}); "
                     "pip install cut-cross-entropy")
    if cce is not None:
        def cce_compiled(h: Tensor, w: Tensor, t: Tensor, shift: bool) -> Tensor:
            return cce(h, w, t, ignore_index=IGNORE_INDEX, shift=shift, impl="torch_compile")

        cce_compiled.compiled = True  # type: ignore[attr-defined]  # its first call compiles
        peers["cut-cross-entropy torch_compile"] = cce_compiled
        if device == "cuda":
            peers["cut-cross-entropy cce"] = lambda h, w, t, shift: cce(h, w, t, ignore_index=IGNORE_INDEX,
                                                                        shift=shift, impl="cce")
        else:
            notes.append("cut-cross-entropy's own kernel (impl='cce') is Triton code for GPUs: measured with "
                         "--device cuda only")
    if device == "cuda":
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        except Exception as error:
            notes.append(f"Liger-Kernel not measured: it does not import ({type(error).__name__}); "
                         "pip install liger-kernel")
        else:
            liger = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX)
            peers["Liger-Kernel fused linear CE"] = lambda h, w, t, shift: liger(w, *shifted(h, t, shift))
    return peers, notes
