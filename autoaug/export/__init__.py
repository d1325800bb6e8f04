"""Exporting a policy to where people train: a torchvision module, or timm's train.py flags."""
