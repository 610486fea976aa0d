"""Training throughput benchmark for vae_nb (CPU or GPU).

Prints, in one run:
1. images/s of the vae_nb `Learner` with every callback a default run gets (validation, metrics log, TensorBoard,
   progress bar, checkpoints, sample grid, NaN guard; all end-of-run work included) vs a bare PyTorch loop on the
   same model, data and number of steps, both in fp32; interleaved rounds, medians and their ratio;
2. per model family, fp32 vs bf16 autocast (and with `--channels-last` the channels-last variants): images/s,
   the validation loss after the same short training relative to fp32, and GFLOP/s as a share of a measured fp32
   matmul peak; the last column says what `train.precision=auto` picks for that family on this device.
   Each family's `cpu_bf16` in `vae_nb.families` records the CPU verdict (bf16 where it ran at least 1.1x faster with
   the validation loss within 2 % of fp32); `vae_nb.config.resolve_precision` applies it, and the config notebook holds the measured table. On a shared machine use
   `--threads 1`: with more threads than free cores, threads waiting on each other dominate the timings.

Usage: python bench/train_bench.py [--epochs 4] [--steps 20] [--batch-size 16] [--quality-steps 40] [--quality-seeds 3] [--device auto]
"""
import argparse, contextlib, copy, io, os, statistics, tempfile, time
import torch
from torch.utils.flop_counter import FlopCounterMode
from vae_nb.config import get_config
from vae_nb.core import get_device, seed_everything
from vae_nb.loaders import build_dataloaders
from vae_nb.models import build_model
from vae_nb.losses import build_loss
from vae_nb.learner import Callback
from vae_nb.config import resolve_precision, cpu_bf16_native
from vae_nb.core import to_device, channels_last_format
from vae_nb.train import build_learner

FAMILIES = {  # small members of each family, so a CPU measures them in minutes
    'conv_vae': ['model.name=conv_vae', 'model.hidden_dims=[32,64,128]', 'model.latent_dim=64', 'data.image_size=32'],
    'resnet_vae': ['model.name=resnet_vae', 'model.latent_dim=64', 'model.fc_dims=[256]', 'model.decoder_dims=[128,64,32,16,8]', 'data.image_size=32'],
    'autoencoder_kl': ['model.name=autoencoder_kl', 'model.channels=[32,64,64]', 'model.norm_num_groups=16', 'model.num_res_blocks=1',
                       'model.latent_channels=4', 'model.attention_levels=[false,false,false]', 'data.image_size=32',
                       'model.with_encoder_nonlocal_attn=false', 'model.with_decoder_nonlocal_attn=false'],
    'maisi': ['model.name=maisi', 'data.spatial_dims=3', 'data.image_size=16', 'model.channels=[16,32,32]', 'model.norm_num_groups=8',
              'model.num_res_blocks=1', 'model.latent_channels=4', 'model.attention_levels=[false,false,false]',
              'model.with_encoder_nonlocal_attn=false', 'model.with_decoder_nonlocal_attn=false'],
}

def make_cfg(family:str, args, *extra):
    return get_config(overrides=[*FAMILIES[family], f'data.num_samples={args.samples}', f'train.batch_size={args.batch_size}',
                                 f'train.device={args.device}', 'train.precision=fp32', *extra])

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
    dl, model = build_dataloaders(cfg)['train'], build_model(cfg).to(device)
    loss_func = build_loss(cfg, model).to(device)
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
    "Start timing at training step `warmup`; count the images trained after it."
    order = 100
    def __init__(self, warmup:int): self.warmup, self.n, self.t0 = warmup, 0, None
    def before_batch(self, learn):
        if learn.training and learn.step == self.warmup and self.t0 is None: sync(next(learn.model.parameters()).device); self.t0 = time.perf_counter()
    def after_step(self, learn):
        if self.t0 is not None: self.n += len(learn.batch['image'])

def learner_loop(cfg, run_dir, epochs:int, warmup:int=3):
    "Images/s of `build_learner` with all its default callbacks, from step `warmup` to the end of `fit` (end-of-run work included)."
    timer = Timer(warmup)
    learn = build_learner(cfg, run_dir, [timer])
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()): learn.fit(epochs)
    sync(cfg.train.device if cfg.train.device != 'auto' else get_device())
    return timer.n / (time.perf_counter() - timer.t0), learn.step

@torch.no_grad()
def val_loss(model, cfg) -> float:
    "Mean fp32 validation loss (posterior mean decoded, so it is deterministic)."
    device = next(model.parameters()).device
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    loss_func, total, n = build_loss(cfg, model).to(device), 0., 0
    for batch in build_dataloaders(cfg)['val']:
        x = batch['image'].to(device)
        mu, logvar = model.encode(x)
        out = type(model(x))(model.decode(mu), mu, logvar)
        total += loss_func(out, x, kl_weight=cfg.loss.kl_weight).total.item() * len(x); n += len(x)
    return total / n

def learner_vs_bare(args, tmp):
    "Section 1: the default learner vs the bare loop, same steps, interleaved rounds."
    size = make_cfg('conv_vae', args).data.image_size
    print(f"1) vae_nb Learner with its default callbacks vs a bare loop (conv_vae {size}x{size}, fp32, {args.epochs} epochs of "
          f"{args.samples} phantoms, {args.rounds} interleaved rounds; the learner's time includes its one-off work: the first "
          f"and last validation, sample grids, latent statistics and checkpoints, so short runs pay more)")
    bare, learner = [], []
    for r in range(args.rounds):
        ips, steps = learner_loop(make_cfg('conv_vae', args, f'train.epochs={args.epochs}'), f'{tmp}/learner{r}', args.epochs)
        learner.append(ips)
        bare.append(bare_loop(make_cfg('conv_vae', args), steps - 3)[0])
    b, l = statistics.median(bare), statistics.median(learner)
    print(f"   bare loop {b:8.1f} img/s   learner {l:8.1f} img/s   ratio {l / b:.3f} (medians; target >= 0.95)   "
          f"rounds: bare {[round(v, 1) for v in bare]} learner {[round(v, 1) for v in learner]}\n")

def precision_table(args, device, peak):
    "Section 2: fp32 vs bf16 (and channels-last) per family."
    print("2) precision per model family (bare loop; images/s median of interleaved rounds; validation loss after "
          f"{args.quality_steps} steps, mean over seeds 0..{args.quality_seeds - 1}, vs fp32; 'fp32 spread': how far fp32 runs of "
          "different seeds lie apart, (max - min) / mean, the noise a difference must exceed to mean something)")
    print(f"   {'family':16s}{'variant':22s}{'img/s':>9s}{'speed':>8s}{'GFLOP/s':>9s}{'of peak':>9s}{'val loss':>10s}{'vs fp32':>9s}{'fp32 spread':>13s}   auto picks")
    variants = [('fp32', 'fp32', False), ('bf16', 'bf16', False)]
    if args.channels_last: variants += [('fp32+channels_last', 'fp32', True), ('bf16+channels_last', 'bf16', True)]
    if device.type == 'cuda': variants.append(('fp16', 'fp16', False))
    for family in args.families.split(','):
        cfg = make_cfg(family, args)
        model = build_model(cfg).to(device)
        x = build_dataloaders(cfg)['train'].dataset[0]['image'][None].repeat(args.batch_size, *[1] * (cfg.data.spatial_dims + 1)).to(device)
        flops_per_img = step_flops(model, build_loss(cfg, model).to(device), x) / len(x)
        speed = {label: [] for label, *_ in variants}
        for _ in range(args.rounds):
            for label, prec, cl in variants: speed[label].append(bare_loop(cfg, args.steps, precision=prec, channels_last=cl)[0])
        base_ips = base_loss = None
        for label, prec, cl in variants:
            ips = statistics.median(speed[label])
            losses = [val_loss(bare_loop(c, args.quality_steps, warmup=0, precision=prec, channels_last=cl)[1], c)
                      for c in (make_cfg(family, args, f'train.seed={s}') for s in range(args.quality_seeds))]
            vl = statistics.mean(losses)
            spread = f"{(max(losses) - min(losses)) / abs(vl):13.1%}" if label == 'fp32' and len(losses) > 1 else ' ' * 13
            base_ips, base_loss = base_ips or ips, base_loss or vl
            gflops = flops_per_img * ips / 1e9
            pick = resolve_precision('auto', device, family) if label == 'fp32' else ''
            print(f"   {family:16s}{label:22s}{ips:9.1f}{ips / base_ips:7.2f}x{gflops:9.1f}{gflops / peak:8.1%}{vl:10.5f}{(vl - base_loss) / abs(base_loss):+8.1%}{spread}   {pick}", flush=True)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epochs', type=int, default=4, help='epochs of the learner run in section 1')
    p.add_argument('--steps', type=int, default=20, help='timed training steps per measurement in section 2')
    p.add_argument('--quality-steps', type=int, default=40, help='training steps before comparing validation losses')
    p.add_argument('--quality-seeds', type=int, default=3, help='seeds whose validation losses are averaged (one run tells noise from precision poorly)')
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--samples', type=int, default=288, help='phantoms generated (90%% train)')
    p.add_argument('--device', default='auto')
    p.add_argument('--rounds', type=int, default=3, help='interleaved rounds (medians are compared)')
    p.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')
    p.add_argument('--families', default=','.join(FAMILIES), help='families measured in section 2')
    p.add_argument('--channels-last', action='store_true', help='also measure channels-last variants')
    p.add_argument('--sections', default='1,2')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    device = get_device(args.device)
    tmp = tempfile.mkdtemp()
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"native CPU bf16: {cpu_bf16_native()}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    peak = matmul_peak(device)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s\n")
    if '1' in args.sections: learner_vs_bare(args, tmp)
    if '2' in args.sections: precision_table(args, device, peak)

if __name__ == '__main__': main()
