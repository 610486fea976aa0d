"""Training throughput benchmark for vae_nb (CPU or GPU).

Prints, in one run:
1. images/s of the vae_nb `Learner` (standard training callbacks) vs a bare PyTorch loop on the same model and data;
2. fp32 vs bf16 autocast vs channels_last (and both) for the conv VAE and the 2D KL autoencoder at 64x64:
   images/s and the validation loss after the same short training, relative to fp32;
3. achieved GFLOP/s of each run as a share of a measured fp32 matmul peak.

Usage: python bench/train_bench.py [--steps 20] [--batch-size 16] [--quality-steps 40] [--device auto]
"""
import argparse, copy, math, time
import torch
from torch.utils.flop_counter import FlopCounterMode
from vae_nb.config import get_config
from vae_nb.core import get_device, seed_everything
from vae_nb.data import build_dataloaders
from vae_nb.models import build_model
from vae_nb.losses import VAELoss
from vae_nb.learner import Callback
from vae_nb.callbacks import to_device, channels_last_format, MaxStepsCB
from vae_nb.train import build_learner

MODELS = {
    'conv_vae': ['model.name=conv_vae', 'model.hidden_dims=[32,64,128]', 'model.latent_dim=64'],
    'autoencoder_kl': ['model.name=autoencoder_kl', 'model.channels=[32,64,64]', 'model.norm_num_groups=16', 'model.num_res_blocks=1',
                       'model.latent_channels=4', 'model.attention_levels=[false,false,false]',
                       'model.with_encoder_nonlocal_attn=false', 'model.with_decoder_nonlocal_attn=false'],
}

def make_cfg(model:str, args, *extra):
    return get_config(overrides=[*MODELS[model], 'data.image_size=64', f'data.num_samples={args.samples}', f'train.batch_size={args.batch_size}',
                                 'train.epochs=1000', 'log.progress=false', 'log.tensorboard=false', 'log.latent_stats_samples=0',
                                 'log.every_n_steps=10', f'train.device={args.device}', 'train.precision=fp32', *extra])

def matmul_peak(device, n:int=2048, reps:int=10) -> float:
    "Measured fp32 matmul GFLOP/s."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(2): a @ b
    sync(device); t = time.perf_counter()
    for _ in range(reps): a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9

def sync(device):
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()

def step_flops(model, loss_func, x) -> float:
    "FLOPs of one training step (forward, loss, backward) on batch `x`."
    m = copy.deepcopy(model)
    with FlopCounterMode(display=False) as fc:
        loss_func(m(x), x).total.backward()
    return fc.get_total_flops()

def bare_loop(cfg, steps:int, warmup:int=3, precision:str='fp32', channels_last:bool=False):
    "Images/s of a plain PyTorch loop: same model, data, optimizer and loss as the learner."
    seed_everything(cfg.train.seed)
    device = get_device(cfg.train.device)
    dl, model, loss_func = build_dataloaders(cfg)['train'], build_model(cfg).to(device), VAELoss(cfg.loss)
    fmt = channels_last_format(cfg.data.spatial_dims) if channels_last else None
    if fmt is not None: model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16}.get(precision)
    n, t0, it = 0, None, iter(dl)
    for i in range(warmup + steps):
        try: batch = next(it)
        except StopIteration: it = iter(dl); batch = next(it)
        if i == warmup: sync(device); t0 = time.perf_counter()
        x = to_device(batch, device, fmt)['image']
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_func(model(x), x, kl_weight=cfg.loss.kl_weight)
        loss.total.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if i >= warmup: n += len(x)
    sync(device)
    return n / (time.perf_counter() - t0), model

class Timer(Callback):
    "Time training steps after `warmup` steps."
    order = 59
    def __init__(self, warmup:int): self.warmup, self.n, self.t0 = warmup, 0, None
    def before_batch(self, learn):
        if learn.training and learn.step == self.warmup and self.t0 is None: sync(next(learn.model.parameters()).device); self.t0 = time.perf_counter()
    def after_step(self, learn):
        x = learn.batch['image']
        if self.t0 is not None: self.n += len(x)
        if learn.step == self.warmup + self.steps: sync(x.device); self.t = time.perf_counter() - self.t0

def learner_loop(cfg, run_dir, steps:int, warmup:int=3):
    "Images/s of `build_learner`'s standard training callbacks (validation and end-of-run work excluded)."
    timer = Timer(warmup); timer.steps = steps
    cfg.train.max_steps = warmup + steps
    learn = build_learner(cfg, run_dir, [timer])
    learn.cbs = [cb for cb in learn.cbs if type(cb).__name__ not in ('ValidationCB', 'SampleGridCB', 'CheckpointCB')]
    learn.fit(cfg.train.epochs)
    return timer.n / timer.t, learn.model

@torch.no_grad()
def val_loss(model, cfg) -> float:
    "Mean fp32 validation loss (posterior mean decoded, so it is deterministic)."
    device = next(model.parameters()).device
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    loss_func, total, n = VAELoss(cfg.loss), 0., 0
    for batch in build_dataloaders(cfg)['val']:
        x = batch['image'].to(device)
        mu, logvar = model.encode(x)
        out = type(model(x))(model.decode(mu), mu, logvar)
        total += loss_func(out, x, kl_weight=cfg.loss.kl_weight).total.item() * len(x); n += len(x)
    return total / n

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--steps', type=int, default=20, help='timed training steps per measurement')
    p.add_argument('--quality-steps', type=int, default=40, help='training steps before comparing validation losses')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--samples', type=int, default=288, help='phantoms generated (90%% train)')
    p.add_argument('--device', default='auto')
    p.add_argument('--rounds', type=int, default=3, help='interleaved learner/bare rounds (best of each is compared)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device = get_device(args.device)
    import tempfile
    tmp = tempfile.mkdtemp()
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, 64x64")
    peak = matmul_peak(device)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s\n")

    cfg = make_cfg('conv_vae', args)
    x = build_dataloaders(cfg)['train'].dataset[0]['image'][None].repeat(args.batch_size, 1, 1, 1).to(device)
    print("1) learner vs bare loop (conv_vae, fp32)")
    bare, learner = [], []
    for r in range(args.rounds):  # interleaved rounds, best of each: a shared CPU makes single timings noisy
        bare.append(bare_loop(cfg, args.steps)[0])
        learner.append(learner_loop(make_cfg('conv_vae', args), f'{tmp}/learner{r}', args.steps)[0])
    print(f"   bare loop {max(bare):8.1f} img/s   learner {max(learner):8.1f} img/s   ratio {max(learner) / max(bare):.3f} "
          f"(best of {args.rounds}; target >= 0.95)   rounds: bare {[round(v, 1) for v in bare]} learner {[round(v, 1) for v in learner]}\n")

    print("2) precision and memory format (images/s, GFLOP/s share of the matmul peak, validation loss vs fp32)")
    print(f"   {'model':16s}{'variant':22s}{'img/s':>9s}{'speed':>8s}{'GFLOP/s':>9s}{'of peak':>9s}{'val loss':>10s}{'vs fp32':>9s}")
    for name in MODELS:
        cfg = make_cfg(name, args)
        model = build_model(cfg).to(device)
        flops_per_img = step_flops(model, VAELoss(cfg.loss), x) / len(x)
        base_ips = base_loss = None
        variants = [('fp32', 'fp32', False), ('bf16', 'bf16', False), ('fp32+channels_last', 'fp32', True), ('bf16+channels_last', 'bf16', True)]
        if device.type == 'cuda': variants.append(('fp16', 'fp16', False))
        for label, prec, cl in variants:
            ips, _ = bare_loop(cfg, args.steps, precision=prec, channels_last=cl)
            _, trained = bare_loop(cfg, args.quality_steps, warmup=0, precision=prec, channels_last=cl)
            vl = val_loss(trained, cfg)
            base_ips, base_loss = base_ips or ips, base_loss or vl
            gflops = flops_per_img * ips / 1e9
            print(f"   {name:16s}{label:22s}{ips:9.1f}{ips / base_ips:7.2f}x{gflops:9.1f}{gflops / peak:8.1%}{vl:10.5f}{(vl - base_loss) / base_loss:+8.1%}")
    print("\nDefaults: train.precision / train.channels_last are set to the fastest variant whose validation loss stays within 2% of fp32.")

if __name__ == '__main__': main()
