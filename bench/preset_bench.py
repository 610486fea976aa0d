"""Time per epoch and peak memory of every model preset and training preset, on this machine's CPU.

Each preset runs in its own subprocess (so peak RSS is its own): the config is resolved exactly as
`vae_nb_train --model NAME` / `--training NAME` would, the data is swapped for `builtin:phantoms`
(procedural, no download) at the preset's own image/patch size, and a plain training loop
(forward, loss, backward, AdamW step) runs `--steps` timed steps after one warm-up step.
Time per epoch = mean step time x steps in one epoch of `--samples` samples at the preset's
batch size, both as wall-clock seconds and as CPU seconds (process time, all threads; steadier
than wall time on a shared machine). Peak memory = the subprocess's maximum resident set size, and the part of it
added by training (peak minus the RSS after imports).

    python bench/preset_bench.py                   # every model and training preset
    python bench/preset_bench.py --group model --names small kl_fast --samples 256
    python bench/preset_bench.py --markdown        # also print a markdown table

Copy the numbers into nbs/15_presets.ipynb with the date, the machine and the command line.
"""
import argparse, json, math, os, platform, resource, subprocess, sys, time

MODEL_PRESETS = ['small', 'medium', 'large', 'high_res', 'vanilla_256', 'beta_resnet',
                 'kl_fast', 'kl_balanced', 'kl_high_quality', 'maisi_3d']
TRAINING_PRESETS = ['quick_test', 'fast_training', 'standard_training', 'extended_training']
GROUP_KW = {'model': 'model', 'training': 'training'}

def rss_mb() -> float:
    "Current resident set size of this process in MB (Linux /proc)."
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20

def peak_rss_mb() -> float:
    "Peak resident set size of this process in MB."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

def preset_names(group:str) -> list[str]:
    "Preset names of `group` from vae_nb.config when it defines them, else the names of the config issue."
    import vae_nb.config as vc
    for nm in ('PRESETS', 'PRESET_GROUPS'):
        p = getattr(vc, nm, None)
        if isinstance(p, dict) and group in p: return list(p[group])
    return MODEL_PRESETS if group == 'model' else TRAINING_PRESETS

def resolve(group:str, name:str, samples:int):
    "The config of preset `group: name` with phantoms data of `samples` samples and no logging."
    from vae_nb.config import get_config
    over = [f'data.path=builtin:phantoms', f'data.num_samples={samples}', 'data.max_samples=null', 'data.train_split=1.0',
            'train.device=cpu', 'data.num_workers=0', 'train.precision=fp32',
            'loss.perceptual_pretrained=false', 'loss.lpips_pretrained=false', 'model.pretrained=false']  # random weights: same cost, no download
    return get_config(overrides=over, **{GROUP_KW[group]: name})

def run_one(group:str, name:str, samples:int, steps:int, threads:int) -> dict:
    "Measure one preset in this process; returns a result row."
    import torch
    torch.set_num_threads(threads)
    from vae_nb.loaders import build_dataloaders
    from vae_nb.models import build_model
    from vae_nb.losses import build_loss
    cfg = resolve(group, name, samples)
    base = rss_mb()
    dl = build_dataloaders(cfg)['train']
    cfg.loss.perceptual_pretrained = cfg.loss.lpips_pretrained = False  # same cost as pretrained; no weight files needed
    model = build_model(cfg)
    loss_func = build_loss(cfg, model, num_classes=10 if cfg.loss.y_weight else None)  # phantoms carry no labels
    opt = torch.optim.AdamW([*model.parameters(), *loss_func.parameters()], lr=cfg.train.lr)
    model.train()
    times, cpu, it = [], [], iter(dl)
    for i in range(steps + 1):
        try: batch = next(it)
        except StopIteration: it = iter(dl); batch = next(it)
        t0, c0 = time.perf_counter(), time.process_time()
        out = model(batch['image'])
        loss = loss_func(out, batch['image'], batch={**batch, 'label': torch.zeros(len(batch['image']), dtype=torch.long)} if cfg.loss.y_weight else None)
        loss.total.backward(); opt.step(); opt.zero_grad()
        if i: times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
    step_s, step_cpu = sum(times) / len(times), sum(cpu) / len(cpu)
    n_train = len(dl.dataset)
    steps_per_epoch = n_train // cfg.train.batch_size if dl.drop_last else math.ceil(n_train / cfg.train.batch_size)
    size = cfg.data.patch_size or [cfg.data.image_size] * cfg.data.spatial_dims
    return dict(group=group, preset=name, model=cfg.model.name, input='x'.join(map(str, size)), channels=cfg.data.in_channels,
                batch_size=cfg.train.batch_size, epochs=cfg.train.epochs, lr=cfg.train.lr,
                params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                step_s=round(step_s, 3), train_samples=n_train, steps_per_epoch=steps_per_epoch,
                epoch_s=round(step_s * steps_per_epoch, 1), step_cpu_s=round(step_cpu, 3), epoch_cpu_s=round(step_cpu * steps_per_epoch, 1), peak_rss_mb=round(peak_rss_mb()), train_rss_mb=round(peak_rss_mb() - base),
                timed_steps=len(times))

def run_sub(group, name, args) -> dict:
    "Run one preset in a fresh subprocess (own peak memory, own time limit)."
    cmd = [sys.executable, __file__, '--one', group, name, '--samples', str(args.samples), '--steps', str(args.steps), '--threads', str(args.threads)]
    try: p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired: return dict(group=group, preset=name, error=f'over {args.timeout} s')
    lines = [l for l in p.stdout.splitlines() if l.startswith('{')]
    if p.returncode or not lines: return dict(group=group, preset=name, error=(p.stderr.strip().splitlines() or ['?'])[-1][:200])
    return json.loads(lines[-1])

COLS = ['group', 'preset', 'model', 'input', 'batch_size', 'epochs', 'params_m', 'step_s', 'epoch_s', 'epoch_cpu_s', 'peak_rss_mb', 'train_rss_mb']

def markdown(rows) -> str:
    "Results as a markdown table."
    out = ['| ' + ' | '.join(COLS) + ' |', '|' + '---|' * len(COLS)]
    for r in rows: out.append('| ' + ' | '.join(str(r.get(c, r.get('error', '') if c == 'model' else '')) for c in COLS) + ' |')
    return '\n'.join(out)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--group', choices=['model', 'training', 'all'], default='all')
    ap.add_argument('--names', nargs='*', help='only these presets')
    ap.add_argument('--samples', type=int, default=256, help='training-set size the epoch time is computed for (phantoms)')
    ap.add_argument('--steps', type=int, default=3, help='timed steps per preset (after one warm-up step)')
    ap.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    ap.add_argument('--timeout', type=int, default=600, help='seconds per preset')
    ap.add_argument('--markdown', action='store_true')
    ap.add_argument('--one', nargs=2, metavar=('GROUP', 'NAME'), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one, args.samples, args.steps, args.threads))); return
    import torch
    print(f"# preset_bench: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, {args.threads} threads, {args.samples} samples per epoch, {args.steps} timed steps")
    groups = ['model', 'training'] if args.group == 'all' else [args.group]
    rows = []
    for g in groups:
        for n in preset_names(g):
            if args.names and n not in args.names: continue
            r = run_sub(g, n, args); rows.append(r); print(json.dumps(r), flush=True)
    if args.markdown: print(markdown(rows))

if __name__ == '__main__': main()
