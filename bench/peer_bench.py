"""Peer-protocol benchmark: vae_nb's `Learner` with the callbacks every run gets vs a bare PyTorch loop.

The protocol (shared with other VAE toolkits so figures compare): scikit-image's `data.lfw_subset()` (200 images
25x25, min-max to [0, 1] per image, bilinear to 32x32), split 180/20 by `numpy.random.default_rng(0).permutation`;
encoder Conv2d(1,32,4,2,1) ReLU Conv2d(32,64,4,2,1) ReLU, flatten, Linear to mu and logvar (16); decoder
Linear(16, 64*8*8) ReLU, ConvTranspose2d(64,32,4,2,1) ReLU, ConvTranspose2d(32,1,4,2,1) Sigmoid; loss = per-image
sum of BCE + KL, batch mean; Adam lr 1e-3, batch 64, 2 threads, 200 epochs. Throughput is over epochs 2..N counting
the images actually trained; quality is the validation PSNR of decode(mu) clamped to [0, 1].

Variants, run interleaved (round 1 of every variant, then round 2, ...) so machine load hits them alike:
- `bare fp32`: the plain loop above;
- `vae_nb defaults`: `build_callbacks` of a default config (validation, metrics log, TensorBoard, progress bar,
  checkpoints, sample grid, NaN guard, `train.precision=auto`), the same model, loss and data, vae_nb's loaders;
- `vae_nb fp32`: the same with `train.precision=fp32`, which isolates the trainer's own cost;
- `bare bf16`: the plain loop under bf16 autocast (what `auto` is compared against).
pythae's trainer is included when pythae is installed.

Prints img/s (median over rounds) and each variant's ratio to the bare fp32 loop, the validation PSNR at equal
epochs, and the PSNR at equal wall-clock time (each run's model as it was when the fastest run finished).

Usage: python bench/peer_bench.py [--epochs 200] [--rounds 3] [--variants bare,defaults,fp32,bare_bf16]
"""
import argparse, copy, contextlib, io, os, statistics, tempfile, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from vae_nb.config import get_config
from vae_nb.models import VAEBase
from vae_nb.losses import LossBreakdown
from vae_nb.learner import Learner, Callback
from vae_nb.loaders import build_dataloaders
from vae_nb.config import resolve_precision
from vae_nb.loaders import resumable_loader
from vae_nb.optim import make_opt_func
from vae_nb.train import build_callbacks

def peer_data():
    "LFW subset as `[N, 1, 32, 32]` in [0, 1], split 180/20 by `default_rng(0).permutation`."
    from skimage.data import lfw_subset
    x = torch.from_numpy(lfw_subset().astype(np.float32))[:, None]
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    x = F.interpolate((x - lo) / (hi - lo).clamp_min(1e-8), size=(32, 32), mode='bilinear', align_corners=False)
    perm = np.random.default_rng(0).permutation(len(x))
    return x[perm[:180]].contiguous(), x[perm[180:]].contiguous()

class PeerVAE(VAEBase):
    "The protocol's conv VAE, in vae_nb's model interface."
    def __init__(self, latent:int=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.mu, self.lv = nn.Linear(64 * 8 * 8, latent), nn.Linear(64 * 8 * 8, latent)
        self.dec = nn.Sequential(nn.Linear(latent, 64 * 8 * 8), nn.ReLU(), nn.Unflatten(1, (64, 8, 8)),
                                 nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid())
        self.latent = latent
    def encode(self, x): h = self.enc(x); return self.mu(h), self.lv(h)
    def decode(self, z): return self.dec(z)
    def latent_shape(self, input_shape=None): return (self.latent,)

def peer_loss(out, x, kl_weight=None, batch=None):
    "Per-image sum of BCE + KL, batch mean, as a `LossBreakdown`."
    recon, mu, logvar = out
    bce = F.binary_cross_entropy(recon.float(), x.float(), reduction='sum') / len(x)
    kl = -0.5 * torch.sum(1 + logvar.float() - mu.float() ** 2 - logvar.float().exp()) / len(x)
    zero = bce.new_zeros(())
    return LossBreakdown(bce + kl, bce, kl, zero, zero, zero, zero, zero)

@torch.no_grad()
def val_psnr(model, xv) -> float:
    "PSNR of decode(mu) clamped to [0, 1], over the validation images."
    model.eval()
    r = model.decode(model.encode(xv)[0]).float().clamp(0, 1)
    return float((10 * torch.log10(1 / F.mse_loss(r, xv, reduction='none').mean((1, 2, 3)))).mean())

class Clock:
    "A variant's own training time (paused while other variants run), epoch-end marks and weight snapshots."
    def __init__(self): self.t0, self.spent, self.marks = None, 0., []
    def start(self): self.t0 = time.perf_counter()
    def pause(self):
        if self.t0 is not None: self.spent += time.perf_counter() - self.t0; self.t0 = None
    @property
    def seconds(self) -> float: return self.spent + (time.perf_counter() - self.t0 if self.t0 is not None else 0.)
    def mark(self, epoch, n, model): self.marks.append((self.seconds, epoch, n, copy.deepcopy(model.state_dict())))

class BareRun:
    "The plain loop, one epoch per `step()`; timed from epoch 2."
    def __init__(self, xt, precision:str='fp32', seed:int=0):
        torch.manual_seed(seed)
        self.model, self.clock, self.precision, self.n, self.epoch = PeerVAE(), Clock(), precision, 0, 0
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.dl = DataLoader(xt, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(seed))
    def step(self):
        if self.epoch >= 1: self.clock.start()
        self.model.train()
        for x in self.dl:
            with torch.autocast('cpu', dtype=torch.bfloat16, enabled=self.precision == 'bf16'):
                loss = peer_loss(self.model(x), x).total
            self.opt.zero_grad(); loss.backward(); self.opt.step()
            if self.epoch >= 1: self.n += len(x)
        self.clock.pause()
        if self.epoch >= 1: self.clock.mark(self.epoch, self.n, self.model)
        self.epoch += 1

class Images(Dataset):
    "Tensors as vae_nb samples (`{'image': x}`)."
    def __init__(self, x): self.x = x
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return {'image': self.x[i]}

class LockstepCB(Callback):
    "Time the learner from epoch 2 (validation, checkpoints and the end of the fit included); after each of its epochs run one epoch of every bare loop, off its clock."
    order = 100
    def __init__(self, bare:list): self.clock, self.n, self.bare = Clock(), 0, bare
    def before_epoch(self, learn):
        if learn.training and learn.epoch >= 1: self.clock.start()
    def after_batch(self, learn):
        if learn.training and learn.epoch >= 1: self.n += len(learn.batch['image'])
    def after_epoch(self, learn):
        if not learn.training: return
        self.clock.pause()
        if learn.epoch >= 1: self.clock.mark(learn.epoch, self.n, learn.model)
        for run in self.bare: run.step()
        if learn.epoch + 1 == learn.n_epochs: self.clock.start()  # the end-of-fit work counts too

def lockstep_round(xt, xv, epochs:int, run_dir, learner:str|None, bare:list, seed:int=0) -> dict:
    "One round: `{variant: (Clock, model)}`; the vae_nb variant drives and every bare loop runs one epoch after each of its epochs."
    runs = {k: BareRun(xt, 'bf16' if k == 'bare_bf16' else 'fp32', seed) for k in bare}
    out = {}
    if learner:
        cfg = get_config(overrides=[f'train.epochs={epochs}', 'train.batch_size=64', 'train.lr=1e-3', 'train.optimizer=adam',
                                    'data.image_size=32', 'train.device=cpu', f'train.seed={seed}', f'paths.run_dir={run_dir}',
                                    *(['train.precision=fp32'] if learner == 'fp32' else [])])
        torch.manual_seed(seed)
        model = PeerVAE()
        dls = build_dataloaders(cfg, {'train': Images(xt), 'val': Images(xv)})
        dls['train'] = resumable_loader(dls['train'], seed)
        lock = LockstepCB(list(runs.values()))
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):  # the progress bar and notes
            Learner(model, dls, peer_loss, lr=cfg.train.lr, cbs=build_callbacks(cfg, run_dir) + [lock], opt_func=make_opt_func(cfg.train)).fit(epochs)
        lock.clock.pause()
        _, epoch, n, state = lock.clock.marks[-1]
        lock.clock.marks[-1] = (lock.clock.spent, epoch, n, state)
        out[learner] = (lock.clock, model)
    else:
        for _ in range(epochs):
            for run in runs.values(): run.step()
    return out | {k: (run.clock, run.model) for k, run in runs.items()}

def psnr_at(clock, t, xv) -> tuple:
    "(epoch, PSNR) of the last snapshot taken at or before `t` seconds."
    marks = [m for m in clock.marks if m[0] <= t] or clock.marks[:1]
    _, epoch, _, state = marks[-1]
    model = PeerVAE(); model.load_state_dict(state)
    return epoch + 1, val_psnr(model, xv)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--epochs', type=int, default=200)
    p.add_argument('--rounds', type=int, default=3, help='rounds (seeds 0, 1, ...); medians are reported')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--learners', default='defaults,fp32', help='vae_nb variants, each run in lockstep with the bare loops: defaults, fp32')
    p.add_argument('--bare', default='bare,bare_bf16', help='bare variants: bare (fp32), bare_bf16')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    xt, xv = peer_data()
    tmp = tempfile.mkdtemp(prefix='peer_bench_')
    auto = resolve_precision('auto', 'cpu', 'conv_vae')
    try: import pythae; has_pythae = True
    except ImportError: has_pythae = False
    print(f"torch {torch.__version__}, {args.threads} threads, {args.epochs} epochs, {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; train.precision=auto resolves to {auto} here", flush=True)
    if not has_pythae: print("pythae: not installed, so its trainer is not measured")
    learners = [k for k in args.learners.split(',') if k and not (k == 'fp32' and auto == 'fp32' and 'defaults' in args.learners)]
    bare = [k for k in args.bare.split(',') if k]
    names = {'bare': 'bare fp32', 'defaults': f'vae_nb defaults ({auto})', 'fp32': 'vae_nb, precision fp32', 'bare_bf16': 'bare bf16'}
    rows = []  # (round, learner driving, variant, img/s, seconds, psnr, clock)
    for r in range(args.rounds):
        for lead in learners or [None]:
            res = lockstep_round(xt, xv, args.epochs, f'{tmp}/{lead}{r}', lead, bare, seed=r)
            for k, (clock, model) in res.items():
                t, _, n, _ = clock.marks[-1]
                rows.append((r, lead, k, n / t, t, val_psnr(model, xv), clock))
                print(f"  round {r + 1} [{names.get(lead, 'bare only')}] {names[k]:26s} {n / t:8.1f} img/s  {t:7.1f} s  val PSNR {rows[-1][5]:.2f} dB", flush=True)
    print(f"\nEqual epochs ({args.epochs}); each vae_nb variant against the bare fp32 loop run in lockstep with it; medians over rounds:")
    print(f"  {'variant':30s}{'img/s':>9s}{'vs bare fp32':>14s}{'val PSNR':>10s}{'vs bare fp32':>14s}")
    for lead in learners or [None]:
        group = [x for x in rows if x[1] == lead]
        for k in dict.fromkeys(x[2] for x in group):
            mine = [x for x in group if x[2] == k]
            ref = {x[0]: x for x in group if x[2] == 'bare'}
            ratio = statistics.median(x[3] / ref[x[0]][3] for x in mine) if ref else float('nan')
            dpsnr = statistics.median(x[5] - ref[x[0]][5] for x in mine) if ref else float('nan')
            print(f"  {names[k]:30s}{statistics.median(x[3] for x in mine):9.1f}{ratio:13.2f}x{statistics.median(x[5] for x in mine):10.2f}{dpsnr:+11.2f} dB")
    print("\nEqual wall clock (each lockstep run: every variant's model as it was when the fastest finished), medians over rounds:")
    for lead in learners or [None]:
        group = [x for x in rows if x[1] == lead]
        at = {}
        for r in range(args.rounds):
            run = [x for x in group if x[0] == r]
            t = min(x[4] for x in run)
            for x in run: at.setdefault(x[2], []).append(psnr_at(x[6], t, xv))
        for k, v in at.items():
            print(f"  {names[k]:30s} at epoch {statistics.median(e for e, _ in v):5.0f}   val PSNR {statistics.median(q for _, q in v):6.2f} dB")

if __name__ == '__main__': main()
