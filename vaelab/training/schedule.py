"""The two schedules of training: the learning rate's warm-up and the KL weight's warm-up."""

from vaelab.config import TrainConfig


def warmup_steps(cfg: TrainConfig, steps: int) -> int:
    """Steps of the learning-rate warm-up: `lr_warmup`, but at most one epoch of `steps` steps."""
    return min(cfg.lr_warmup, steps)


def learning_rate(cfg: TrainConfig, done: int, steps: int) -> float:
    """lr for the step after `done` steps: rising linearly over the warm-up, then `lr`.

    Adam's first updates move every weight by about lr whatever the gradient's size, and the conv
    encoder's Dense 14 ReLU layer sums 3,136 non-negative inputs, so a few such steps can push all
    its units below zero for good. While the decoder was Glorot-initialised too, that collapsed the
    posterior without warm-up for 2 of 8 seeds on Fashion-MNIST at batch 128 and 1 of 8 on
    mnist-sample at batch 32, and 100 steps prevented it. With the decoder's PyTorch default
    (models/common.py) none of 8 collapsed on either without warm-up, so it is off by default: on
    mnist-sample at batch 128, a warm-up of one epoch (31 steps) cost 18 nats of test ELBO after
    2 epochs for conv and 10 for mlp. At batch 32, 100 steps still help conv (2 epochs on the
    sample, 8 seeds: 189 nats against 196). Capped at one epoch so that a short run on a small
    data set is not spent warming up."""
    warm = warmup_steps(cfg, steps)
    return cfg.lr * min(1.0, (done + 1) / warm) if warm else cfg.lr


def kl_weight(cfg: TrainConfig, epoch: int, step: int, steps: int) -> float:
    """beta, reached linearly over the first `kl_warmup` epochs (counted in steps)."""
    if not cfg.kl_warmup:
        return cfg.beta
    done = (epoch - 1) * steps + step
    return cfg.beta * min(1.0, done / (cfg.kl_warmup * steps))
