"""Start-up time of every vae_nb console command, measured as a user sees it: a whole new process per call.

Prints, for `--help` of each command and `vae_nb_train --print-config` / `--list-presets`, the median wall time of
several runs, the share of the 2 s budget it uses, and, for scale, a bare `python -c pass` and `python -c "import torch"`.
The machine's load average is printed too: on a shared machine, quote medians with the load beside them.

With `--first-run N` it also times `vae_nb_train` with no arguments (the first run a new user makes: digits, about a minute
on 2 CPU cores), N times, each into its own run directory under `--first-run-dir`, and prints the median.

Usage: python bench/cli_bench.py [--runs 5] [--first-run 3] [--first-run-dir runs/first_run_bench]
"""
import argparse, os, shutil, statistics, subprocess, sys, time
from pathlib import Path

COMMANDS = ['train', 'infer', 'save_latents', 'compare', 'check']
CALLS = [(c, '--help') for c in COMMANDS] + [('train', '--print-config'), ('train', '--list-presets')]
BUDGET_S = 2.0

def command_line(cmd:str, flag:str) -> list:
    "The console script when it is installed, else the same entry point through this Python."
    script = shutil.which(f'vae_nb_{cmd}')
    if script: return [script, flag]
    return [sys.executable, '-c', f'import sys; sys.argv[0] = "vae_nb_{cmd}"; from vae_nb.cli import {cmd}; {cmd}()', flag]

def wall_time(argv:list) -> float:
    "Seconds from starting `argv` to its exit; fails loudly on a non-zero exit."
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0: raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr[-500:]}")
    return time.perf_counter() - t

def median_time(argv:list, runs:int) -> float: return statistics.median(wall_time(argv) for _ in range(runs))

FIRST_RUN_BUDGET_S = 90.

def first_run(n:int, parent:Path):
    "Time `vae_nb_train --run-dir DIR` (nothing else chosen: the first_run preset) `n` times; print each and the median."
    times = []
    for i in range(n):
        run_dir = parent/f'run_{i + 1}'; shutil.rmtree(run_dir, ignore_errors=True)
        times.append(wall_time(command_line('train', '--run-dir') + [str(run_dir)]))
        grids = len(list((run_dir/'samples').glob('step_*.png')))
        print(f"vae_nb_train (first run) #{i + 1}: {times[-1]:6.1f} s  ({grids} grids during training; load average {os.getloadavg()[0]:.2f})")
    t = statistics.median(times)
    print(f"vae_nb_train (first run) median of {n}: {t:.1f} s  ({'within' if t < FIRST_RUN_BUDGET_S else 'OVER'} the {FIRST_RUN_BUDGET_S:g} s budget); pictures in {parent}/run_*/samples")

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--runs', type=int, default=5, help='runs per call; the median is printed')
    p.add_argument('--first-run', type=int, default=0, help='also time `vae_nb_train` with no arguments this many times')
    p.add_argument('--first-run-dir', default='runs/first_run_bench', help='parent folder of those runs (one run directory each)')
    args = p.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  (cpus: {os.cpu_count()}, runs per call: {args.runs})")
    for name, argv in [('python -c pass', [sys.executable, '-c', 'pass']), ('python -c "import torch"', [sys.executable, '-c', 'import torch'])]:
        print(f"{name:<36} {median_time(argv, args.runs):6.2f} s  (reference)")
    worst = 0.
    for cmd, flag in CALLS:
        t = median_time(command_line(cmd, flag), args.runs); worst = max(worst, t)
        print(f"{f'vae_nb_{cmd} {flag}':<36} {t:6.2f} s  {t / BUDGET_S:5.0%} of the {BUDGET_S:g} s budget")
    print(f"slowest: {worst:.2f} s ({'within' if worst < BUDGET_S else 'OVER'} the {BUDGET_S:g} s budget)")
    if args.first_run: first_run(args.first_run, Path(args.first_run_dir))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

if __name__ == '__main__': main()
