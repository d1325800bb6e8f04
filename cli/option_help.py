"""Options that several commands share: their help text and defaults (kept free of torch imports)."""
from __future__ import annotations

DEFAULT_LR = 0.4  # equals autoaug.trainer.TrainConfig.lr (a test checks); importing it would load torch
LR_HELP = ("Learning rate per 512 images: the rate used is scaled linearly to the batch size "
           "(lr x batch / 512, after a short warm-up), so 0.4 trains a batch of 64 at 0.05.")
DOWNLOAD_HELP = ("Fetch cifar10, cifar100, fashion_mnist or svhn into --data-dir if its files are not there "
                 "(torchvision's URLs and checksums; needs a network).")
