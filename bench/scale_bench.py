"""Data loading at scale: a folder of many 256x256 PNGs read through vae_nb's loaders with the default settings.

Writes `--n` PNGs (20,000 by default; smooth random grey images) into a temporary folder, then for
`data.num_workers` = 0 and = auto, each in a fresh process so memory is measured from a clean start:
- the time to build the datasets (listing and checking every file);
- epoch 1 (decoding every file, filling the memory cache) and epoch 2 (from the cache) throughput of the training
  loader alone, in images/s, as a fast accelerator would consume it;
- the peak memory of the loading processes (the main one and its data workers, proportional set size, so pages they
  share, like the shared cache, are counted once) against `data.cache_memory_gb`'s budget.
Ratios: epoch 1 and epoch 2 with auto workers relative to 0 workers.

Usage: python bench/scale_bench.py [--n 20000] [--size 256] [--batch-size 64] [--folder DIR (reuse/keep the images)]
"""
import argparse, json, multiprocessing as mp, os, shutil, subprocess, sys, tempfile, threading, time
from pathlib import Path
import numpy as np

def write_pngs(args):
    "Write PNGs number `start`..`stop` of size `size` into `folder` (smooth noise, like photographs at a glance)."
    folder, start, stop, size = args
    from PIL import Image
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        x = rng.normal(size=(size // 16, size // 16)).astype(np.float32)
        img = Image.fromarray(((x - x.min()) / (np.ptp(x) + 1e-8) * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
        img.save(f'{folder}/{i:06d}.png', compress_level=1)

def make_folder(folder:Path, n:int, size:int, procs:int=2):
    "The image folder, written in parallel unless it already holds `n` PNGs."
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob('*.png'))) >= n: return 0.
    t, chunk = time.perf_counter(), -(-n // (procs * 8))
    with mp.Pool(procs) as pool: pool.map(write_pngs, [(str(folder), s, min(s + chunk, n), size) for s in range(0, n, chunk)])
    return time.perf_counter() - t

class PeakMemory(threading.Thread):
    "Sample the proportional set size of this process and its children every `every` seconds; keep the peak."
    def __init__(self, every:float=0.5): super().__init__(daemon=True); self.every, self.peak, self.done = every, 0, False
    def run(self):
        import psutil
        me = psutil.Process()
        while not self.done:
            total = 0
            for p in [me, *me.children(recursive=True)]:
                try: total += p.memory_full_info().pss
                except (psutil.Error, AttributeError): pass
            self.peak = max(self.peak, total); time.sleep(self.every)

def measure(folder:str, workers:str, size:int, batch_size:int, epochs:int=2) -> dict:
    "In this process: build the loaders for `folder` and time `epochs` passes over the training loader."
    import torch
    from vae_nb.config import get_config
    from vae_nb.data import cache_budget
    from vae_nb.loaders import build_datasets, build_dataloaders
    torch.set_num_threads(1)
    cfg = get_config(overrides=[f'data.path={folder}', f'data.image_size={size}', f'train.batch_size={batch_size}', f'data.num_workers={workers}'])
    mem = PeakMemory(); mem.start()
    t = time.perf_counter(); ds = build_datasets(cfg); build = time.perf_counter() - t
    dl = build_dataloaders(cfg, ds)['train']
    rates = []
    for _ in range(epochs):
        t, n = time.perf_counter(), 0
        for b in dl: n += len(b['image'])
        rates.append(n / (time.perf_counter() - t))
    mem.done = True; mem.join()
    return dict(workers=dl.num_workers, build_s=build, rates=rates, peak_gb=mem.peak / 2 ** 30, budget_gb=cache_budget(cfg.data) / 2 ** 30,
                cached=len(ds['train'].dataset._memory), n=len(ds['train'].dataset))

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--n', type=int, default=20000, help='images to write')
    p.add_argument('--size', type=int, default=256)
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--folder', default=None, help='image folder to (re)use and keep; default: a temporary folder, removed after')
    p.add_argument('--measure', nargs=2, metavar=('FOLDER', 'WORKERS'), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1], args.size, args.batch_size))); return
    folder = Path(args.folder or tempfile.mkdtemp(prefix='scale_bench_'))
    try:
        print(f"{args.n} PNGs of {args.size}x{args.size} in {folder}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
        print(f"writing the images took {make_folder(folder, args.n, args.size):.0f} s", flush=True)
        res = {}
        for workers in ('0', 'auto'):  # each in a fresh process: clean page cache of Python objects, clean peak memory
            out = subprocess.run([sys.executable, __file__, '--measure', str(folder), workers, '--size', str(args.size),
                                  '--batch-size', str(args.batch_size)], capture_output=True, text=True)
            if out.returncode: print(out.stderr[-3000:]); raise SystemExit(out.returncode)
            r = res[workers] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  num_workers={workers:4s} ({r['workers']} processes): datasets built in {r['build_s']:.1f} s; epoch 1 {r['rates'][0]:7.1f} img/s, "
                  f"epoch 2 {r['rates'][1]:7.1f} img/s; cached {r['cached']} of {r['n']} samples; peak memory {r['peak_gb']:.2f} GB "
                  f"(cache budget {r['budget_gb']:.2f} GB + 2 GB = {r['budget_gb'] + 2:.2f} GB)", flush=True)
        a, z = res['auto'], res['0']
        print(f"\nauto vs 0 workers: epoch 1 {a['rates'][0] / z['rates'][0]:.2f}x, epoch 2 {a['rates'][1] / z['rates'][1]:.2f}x; "
              f"peak memory under budget + 2 GB: {all(r['peak_gb'] < r['budget_gb'] + 2 for r in res.values())}")
    finally:
        if not args.folder: shutil.rmtree(folder, ignore_errors=True)

if __name__ == '__main__': main()
