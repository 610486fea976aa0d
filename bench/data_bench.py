"""Data loading benchmark: samples/s in the first and second epoch (cache effect) for an image folder and a
NIfTI folder, and the share of a training step spent waiting on data for a small model.

Run: `python bench/data_bench.py` (about a minute on 2 CPU cores; `--help` for sizes). Writes its files to a
temporary folder and removes them afterwards. It is a script, not a test."""
import argparse, shutil, tempfile, time
from pathlib import Path
import numpy as np
import torch
import nibabel as nib
from PIL import Image
from vae_nb.schema import Config
from vae_nb.loaders import build_datasets, build_dataloaders
from vae_nb.models import build_model
from vae_nb.losses import VAELoss


def write_images(folder:Path, n:int, size:int, rng):
    "`n` smooth random grayscale PNGs of `size` x `size` in two sub-sources."
    for i in range(n):
        x = rng.normal(size=(size // 8, size // 8)).astype(np.float32)
        img = Image.fromarray(((x - x.min()) / (np.ptp(x) + 1e-8) * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        (folder/f'src{i % 2}').mkdir(parents=True, exist_ok=True); img.save(folder/f'src{i % 2}'/f'{i:04d}.png')


def write_volumes(folder:Path, n:int, shape:tuple, rng):
    "`n` int16 `.nii.gz` volumes of `shape` (a bright ellipsoid in noise, like a T1 scan)."
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing='ij'), -1)
    for i in range(n):
        brain = ((grid / rng.uniform(0.6, 0.9, 3)) ** 2).sum(-1) < 1
        vol = (brain * rng.uniform(300, 800) + rng.normal(0, 40, shape)).astype(np.int16)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(folder/f'sub{i:03d}.nii.gz'))


def make_cfg(path, **data) -> Config:
    "A config reading `path`, no validation split, the given data options."
    cfg = Config(); cfg.data.path, cfg.data.train_split = str(path), 1.0
    for k, v in data.items(): setattr(cfg.data, k, v)
    return cfg


def epoch_rates(cfg:Config, epochs:int=2) -> list[float]:
    "Samples/s of each epoch over the training loader (fresh datasets, so epoch 1 is cold), with one torch thread as in a DataLoader worker."
    threads = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        t = time.perf_counter(); dl = build_dataloaders(cfg)['train']; build_s = time.perf_counter() - t
        rates = []
        for _ in range(epochs):
            t, n = time.perf_counter(), 0
            for b in dl: n += len(b['image'])
            rates.append(n / (time.perf_counter() - t))
    finally: torch.set_num_threads(threads)
    return rates, build_s


def data_wait_share(cfg:Config, epochs:int=2, max_steps:int|None=None) -> list[float]:
    "Per epoch, the fraction of training-step time spent waiting for the next batch (small model, Adam)."
    dl = build_dataloaders(cfg)['train']
    model, loss_fn = build_model(cfg), VAELoss(cfg.loss)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    shares = []
    for _ in range(epochs):
        wait = compute = 0.; t = time.perf_counter()
        for step, b in enumerate(dl):
            t1 = time.perf_counter(); wait += t1 - t
            loss = loss_fn(model(b['image']), b['image']).total
            opt.zero_grad(); loss.backward(); opt.step()
            t = time.perf_counter(); compute += t - t1
            if max_steps and step + 1 >= max_steps: break
        shares.append(wait / (wait + compute))
    return shares


def report(name:str, rates:list, build_s:float):
    print(f'{name:<34} build {build_s:6.2f}s   epoch 1 {rates[0]:8.1f} samples/s   epoch 2 {rates[1]:9.1f} samples/s   x{rates[1] / rates[0]:6.1f}')


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--images', type=int, default=96, help='number of PNG files')
    p.add_argument('--image-px', type=int, default=128, help='side of each PNG')
    p.add_argument('--volumes', type=int, default=8, help='number of NIfTI files (91x109x91)')
    p.add_argument('--workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--threads', type=int, default=1, help='torch threads for the model (1 avoids thread contention on a shared CPU; 0 = torch default)')
    args = p.parse_args()
    if args.threads: torch.set_num_threads(args.threads)
    start, tmp, rng = time.perf_counter(), Path(tempfile.mkdtemp(prefix='vae_nb_bench_')), np.random.default_rng(0)
    try:
        t = time.perf_counter()
        write_images(tmp/'images', args.images, args.image_px, rng); write_volumes(tmp/'nifti', args.volumes, (91, 109, 91), rng)
        print(f'wrote {args.images} PNGs ({args.image_px}px) and {args.volumes} NIfTI volumes (91x109x91 int16 .nii.gz) in {time.perf_counter() - t:.1f}s; workers={args.workers}, threads={torch.get_num_threads()}\n')
        img = dict(image_size=64, num_workers=args.workers)
        vol = dict(spatial_dims=3, patch_size=[96, 112, 96], intensity='percentile', num_workers=args.workers)
        cases = [('images, cache none', make_cfg(tmp/'images', cache='none', **img)),
                 ('images, cache memory', make_cfg(tmp/'images', cache='memory', **img)),
                 ('nifti, cache none', make_cfg(tmp/'nifti', cache='none', **vol)),
                 ('nifti, cache memory', make_cfg(tmp/'nifti', cache='memory', **vol)),
                 ('nifti, cache persistent (empty)', make_cfg(tmp/'nifti', cache='persistent', cache_dir=str(tmp/'cache'), **vol)),
                 ('nifti, cache persistent (filled)', make_cfg(tmp/'nifti', cache='persistent', cache_dir=str(tmp/'cache'), **vol))]
        print('samples/s over the training loader (batch 16 images / 2 volumes; 1 torch thread, as in a DataLoader worker):')
        for name, cfg in cases:
            cfg.train.batch_size = 2 if cfg.data.spatial_dims == 3 else 16
            report(name, *epoch_rates(cfg))
        print(f'(data part {time.perf_counter() - start:.0f}s)\n\nshare of a training step spent waiting on data (small ConvVAE, Adam; epoch 1 cold, epoch 2 cached):')
        for cache in ('none', 'memory'):
            cfg = make_cfg(tmp/'images', cache=cache, **img); cfg.train.batch_size = 16; cfg.model.hidden_dims = [16, 32, 64]
            shares = data_wait_share(cfg)
            print(f'  images 64px, cache {cache:<7} epoch 1 {shares[0]:6.1%}   epoch 2 {shares[1]:6.1%}')
        cfg = make_cfg(tmp/'nifti', cache='memory', **vol); cfg.train.batch_size = 2; cfg.model.hidden_dims = [4, 8, 16, 32]
        shares = data_wait_share(cfg, max_steps=args.volumes // 2)
        print(f'  nifti 96x112x96, cache memory (batch 2, tiny 3D ConvVAE) epoch 1 {shares[0]:6.1%}   epoch 2 {shares[1]:6.1%}')
        print(f'\ntotal {time.perf_counter() - start:.0f}s')
    finally: shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__': main()
