"""Peak memory of a 3D KL autoencoder (MONAI AutoencoderKL via vae_nb) with and without gradient checkpointing.

Each case runs in a fresh subprocess (one forward + backward at batch 1), so peaks do not leak between cases:
on CUDA the peak is `torch.cuda.max_memory_allocated`; on CPU it is the process's peak resident set size
(`ru_maxrss`), reported in total and above the baseline measured after building the model and the input.

On CPU the process baseline (Python, torch, MONAI: about 1 GB) is in both peaks, so the total ratio is the stricter one.

    python bench/memory_bench.py                       # 96x112x96, channels 16 32 64, 2 res blocks per level
    python bench/memory_bench.py --channels 32 64 128  # seed 001's widths (needs about 10 GB on CPU)
"""
import argparse, json, resource, subprocess, sys, time

TARGET = 0.6  # with checkpointing <= TARGET x without


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--size', type=int, nargs=3, default=[96, 112, 96], help='volume size (divisible by 2**(levels-1))')
    p.add_argument('--channels', type=int, nargs='+', default=[16, 32, 64], help='model.channels')
    p.add_argument('--norm-num-groups', type=int, default=16, help='model.norm_num_groups (divides every channel count)')
    p.add_argument('--num-res-blocks', type=int, default=2, help="model.num_res_blocks (seed 000's recommended 2)")
    p.add_argument('--latent-channels', type=int, default=4, help='model.latent_channels')
    p.add_argument('--nonlocal-attn', action='store_true', help='non-local attention in the bottleneck (large token count at this size)')
    p.add_argument('--device', default='auto', help='auto, cpu or cuda')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0 = torch default)')
    p.add_argument('--case', choices=['on', 'off'], help=argparse.SUPPRESS)  # internal: run one case and print JSON
    return p.parse_args(argv)


def rss_bytes() -> int:
    "Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_case(a) -> dict:
    "Build the model, run one forward and backward pass, return peak memory and time."
    import torch
    from vae_nb.schema import Config, DataConfig, ModelConfig
    from vae_nb.models import build_model
    if a.threads: torch.set_num_threads(a.threads)
    device = ('cuda' if torch.cuda.is_available() else 'cpu') if a.device == 'auto' else a.device
    levels = len(a.channels)
    cfg = Config(data=DataConfig(spatial_dims=3, patch_size=list(a.size)),
                 model=ModelConfig(name='autoencoder_kl', channels=list(a.channels), latent_channels=a.latent_channels,
                                   num_res_blocks=a.num_res_blocks, norm_num_groups=a.norm_num_groups,
                                   attention_levels=[False] * levels, with_encoder_nonlocal_attn=a.nonlocal_attn,
                                   with_decoder_nonlocal_attn=a.nonlocal_attn, gradient_checkpointing=a.case == 'on'))
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    x = torch.rand(1, 1, *a.size, device=device)
    if device == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
    else: base = rss_bytes()
    t = time.perf_counter()
    out = model(x)
    (out.recon - x).abs().mean().add(1e-6 * out.mu.square().mean()).backward()
    if device == 'cuda': torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated()
    else: peak = rss_bytes()
    grad_norm = sum(p.grad.double().square().sum() for p in model.parameters() if p.grad is not None).sqrt().item()
    return dict(case=a.case, device=device, peak=peak, baseline=base, seconds=time.perf_counter() - t,
                params=model.num_params, grad_norm=grad_norm)


def main(argv=None):
    a = parse_args(argv)
    if a.case: print(json.dumps(run_case(a))); return 0
    argv = list(sys.argv[1:] if argv is None else argv)
    results = {}
    for case in ('off', 'on'):
        proc = subprocess.run([sys.executable, __file__, *argv, '--case', case], capture_output=True, text=True)
        if proc.returncode: sys.stderr.write(proc.stderr); return proc.returncode
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
    off, on = results['off'], results['on']
    mib = lambda b: f"{b / 2**20:,.0f} MiB"
    what = 'torch.cuda.max_memory_allocated' if off['device'] == 'cuda' else 'peak RSS of the process'
    print(f"3D KL autoencoder, input 1x1x{'x'.join(map(str, a.size))}, channels {a.channels}, "
          f"{off['params']:,} parameters, device {off['device']} ({what})")
    for r in (off, on):
        print(f"  checkpointing {r['case']:>3}: peak {mib(r['peak'])} (above baseline {mib(r['peak'] - r['baseline'])}), "
              f"forward+backward {r['seconds']:.1f} s, grad norm {r['grad_norm']:.6g}")
    ratio, ratio_above = on['peak'] / off['peak'], (on['peak'] - on['baseline']) / (off['peak'] - off['baseline'])
    print(f"ratio with/without: {ratio:.2f} (above baseline: {ratio_above:.2f}); target <= {TARGET}: "
          f"{'PASS' if ratio <= TARGET else 'FAIL'}")
    return 0 if ratio <= TARGET else 1


if __name__ == '__main__': sys.exit(main())
