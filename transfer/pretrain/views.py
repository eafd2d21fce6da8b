"""Two MoCo v2 views of an image, each with the crop box and flip that made it.

A view is `RandomResizedCrop(scale 0.2-1) -> colour jitter 0.4/0.4/0.4/0.1 (p=0.8)
-> grayscale (p=0.2) -> Gaussian blur (p=0.5) -> horizontal flip (p=0.5)`, the
MoCo v2 recipe. The crop box and the flip are returned with the view (method.md
asks to keep them, so a location of a feature map can be mapped back to the image,
as PixPro does; no loss term of ours uses them yet).

The randomness of a view comes only from a seed derived from (run seed, epoch,
image index), never from the process-wide RNG: the same image in the same epoch
gets the same views whatever the number of processes or data-loader workers, and
whatever step a resumed run starts from.
"""
from __future__ import annotations


import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F
from PIL import Image, ImageFilter

from transfer.backbone import IMAGENET_MEAN, IMAGENET_STD


# Layout of one view's parameter row (a float tensor, so a batch of them collates to N x 7).
PARAM_FIELDS = ("top", "left", "height", "width", "flipped", "image_height", "image_width")


class PILGaussianBlur:
    """Gaussian blur with sigma drawn uniformly from `sigma` (torch RNG), by PIL's C filter as MoCo v2 does."""

    def __init__(self, sigma: tuple[float, float]):
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        sigma = self.sigma[0] + (self.sigma[1] - self.sigma[0]) * torch.rand(1).item()
        return image.filter(ImageFilter.GaussianBlur(radius=sigma))


class MoCoV2Views:
    """Make the two views of an image, with each view's crop box and flip (`PARAM_FIELDS`)."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), blur_sigma: tuple[float, float] = (0.1, 2.0)):
        self.size, self.scale, self.ratio = size, tuple(scale), tuple(ratio)
        # MoCo v2 blurs with sigma 0.1-2.0 px at 224 px: the same blur relative to the view at other sizes
        factor = size / 224
        self.photometric = T.Compose([
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([PILGaussianBlur((blur_sigma[0] * factor, blur_sigma[1] * factor))], p=0.5),
        ])
        self.normalize = T.Compose([T.ToImage(), T.ToDtype(torch.float32, scale=True),
                                    T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def view(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """One view (3 x S x S, normalised) and its parameters (7,), drawn from torch's current RNG."""
        width, height = image.size
        top, left, h, w = T.RandomResizedCrop.get_params(image, list(self.scale), list(self.ratio))
        out = F.resized_crop(image, top, left, h, w, [self.size, self.size], antialias=True)
        out = self.photometric(out)
        flipped = bool(torch.rand(1).item() < 0.5)
        if flipped:
            out = F.horizontal_flip(out)
        params = torch.tensor([top, left, h, w, float(flipped), height, width], dtype=torch.float32)
        return self.normalize(out), params

    def __call__(self, image: Image.Image, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(view1, view2, params1, params2) of `image`, determined by `seed` alone."""
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also queues GPU seeding, slowly
            v1, p1 = self.view(image)
            v2, p2 = self.view(image)
        return v1, v2, p1, p2
