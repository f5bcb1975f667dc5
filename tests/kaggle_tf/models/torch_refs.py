"""Helpers for the PyTorch references of the model tests (a module of its
own: test files import it by a name no other folder uses)."""


def randomize_batch_norm(module, seed=0):
    """Random BatchNorm affine params and running stats (kept near 1x
    scale, so 50 residual blocks do not blow activations up)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm2d):
            n = sub.num_features
            sub.weight.data = torch.rand(n, generator=generator) * 0.4 + 0.2
            sub.bias.data = torch.rand(n, generator=generator) * 0.4 - 0.2
            sub.running_mean.copy_(
                torch.rand(n, generator=generator) * 0.4 - 0.2)
            sub.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    return module
