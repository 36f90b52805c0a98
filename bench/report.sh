#!/usr/bin/env bash
# bench/report.sh — the performance figures of the bf16 fast path side by side, from one run on this machine:
# CPU model and kernel path, the register peaks, the GEMMs at the transformer's shapes, the attention and one
# full-length block (each against PyTorch when a Python with torch is found: apt-get install python3-torch), and
# with -m a full-size generation (T5 encode, one denoising step, a full VAE decode; peak RSS by /usr/bin/time -v)
# extrapolated to 50 steps against the floor (total FLOPs / the peak of the bf16 unit in use, all threads: tdpbf16ps
# on an AMX machine, vdpbf16ps elsewhere), plus the deviation of bf16 final latents from fp32 after a few steps.
# On a machine with AMX every kernel figure is measured on both bf16 paths side by side: AMX (against the AMX
# peak) and AVX512-BF16 (CVX_FORCE_ISA=avx512bf16, against the vdpbf16ps peak; attention and block 1 repeat).
#
#   bash bench/report.sh [-m MODEL_DIR] [--bin PATH] [--json OUT.json] [--skip-torch] [--quick]
#
# MODEL_DIR: a CogVideoX-2b folder, e.g. `cogvideox make-model --preset cogvideox-2b -o DIR` (13 GB). Without it
# the generation rows are left out. --quick: 1 repeat and smaller shapes (a smoke run, not figures to quote).
# Time on 2 cores: ~10 minutes without -m (most of it PyTorch's attention), ~35 with it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${CVX_BIN:-$here/../build/cogvideox}
model="" json_out="" quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    -m) model=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    --skip-torch) export CVX_PYTHON=/nonexistent/python; shift ;;
    --quick) quick=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "report.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$bin" ] || { echo "report.sh: no cogvideox binary at $bin (build first, or --bin PATH)" >&2; exit 2; }
[ -z "$model" ] || [ -f "$model/model_index.json" ] || { echo "report.sh: $model is not a model folder" >&2; exit 2; }
command -v python3 >/dev/null || { echo "report.sh: python3 is needed to print the table" >&2; exit 2; }
[ -z "$model" ] || [ -x /usr/bin/time ] || { echo "report.sh: /usr/bin/time is needed for the peak RSS (apt-get install time)" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
M=17776 L=17776 N=17550 rep=3
if [ "$quick" = 1 ]; then M=2048 L=2048 N=1822 rep=1; fi

step() { # name, then the bench arguments
  local name=$1; shift
  echo "report: $name: cogvideox bench $*" >&2
  "$bin" bench "$@" --json >"$tmp/$name.json" 2>>"$tmp/log" || { echo "report: $name failed; see below" >&2; tail -20 "$tmp/log" >&2; exit 1; }
}
step peak peak
amx=0
"$bin" info --cpu 2>/dev/null | grep -q "^best path *amx" && amx=1
step_alt() { # the same bench on the AVX512-BF16 path (AMX machines only): NAME.alt.json
  [ "$amx" = 1 ] || return 0
  local name=$1; shift
  echo "report: $name (avx512bf16): CVX_FORCE_ISA=avx512bf16 cogvideox bench $*" >&2
  CVX_FORCE_ISA=avx512bf16 CVX_PYTHON=/nonexistent/python "$bin" bench "$@" --json >"$tmp/$name.alt.json" 2>>"$tmp/log" ||
    { echo "report: $name (avx512bf16) failed; see below" >&2; tail -20 "$tmp/log" >&2; exit 1; }
}
step gemm_1920_1920 gemm --m $M --k 1920 --n 1920 --repeat $rep
step_alt gemm_1920_1920 gemm --m $M --k 1920 --n 1920 --repeat $rep
step gemm_1920_7680 gemm --m $M --k 1920 --n 7680 --repeat $rep
step_alt gemm_1920_7680 gemm --m $M --k 1920 --n 7680 --repeat $rep
step gemm_7680_1920 gemm --m $M --k 7680 --n 1920 --repeat $rep
step_alt gemm_7680_1920 gemm --m $M --k 7680 --n 1920 --repeat $rep
step attention attention --tokens $L --heads 30 --head-dim 64 --repeat $rep
step_alt attention attention --tokens $L --heads 30 --head-dim 64 --repeat 1
step block block --tokens $N --repeat $rep
step_alt block block --tokens $N --repeat 1
if [ -n "$model" ]; then
  gen_args=(generate -m "$model" --steps 1 --repeat 1)
  [ "$quick" = 1 ] && gen_args+=(--frames 5 --height 96 --width 160)
  echo "report: generate: /usr/bin/time -v cogvideox bench ${gen_args[*]}" >&2
  /usr/bin/time -v -o "$tmp/time.txt" "$bin" bench "${gen_args[@]}" --json >"$tmp/generate.json" 2>>"$tmp/log" ||
    { echo "report: generate failed" >&2; tail -20 "$tmp/log" >&2; exit 1; }
  sed -n 's/.*Maximum resident set size (kbytes): *//p' "$tmp/time.txt" >"$tmp/maxrss_kb"
  dev_args=(deviation -m "$model" --steps 2 --frames 9 --height 240 --width 368)
  [ "$quick" = 1 ] && dev_args=(deviation -m "$model" --steps 2 --frames 5 --height 96 --width 160)
  step deviation "${dev_args[@]}"
fi

python3 - "$tmp" "$json_out" <<'PY'
import json, os, sys
d, out = sys.argv[1], sys.argv[2]
_loaded = {}
def load(n):  # each file read once, so the figures added below stay with it
    if n not in _loaded:
        p = os.path.join(d, n + ".json")
        _loaded[n] = json.load(open(p)) if os.path.exists(p) else None
    return _loaded[n]
KERNELS = ("gemm_1920_1920", "gemm_1920_7680", "gemm_7680_1920", "attention", "block")
peak = load("peak")
first = peak
# The denominator: the highest vdpbf16ps peak measured in this run (the peak step and every bench's own probe;
# they differ by a few % with clock and load), so no fraction is flattered by a low reading.
peaks = [peak["peak_gflops"].get("bf16") or 0]
for n in ("gemm_1920_1920", "gemm_1920_7680", "gemm_7680_1920", "attention", "block"):
    j = load(n)
    if j and j.get("peak_family") == "bf16": peaks.append(j["peak_gflops"])
for n in KERNELS:
    j = load(n + ".alt")
    if j and j.get("peak_family") == "bf16": peaks.append(j["peak_gflops"])
bf = max(peaks)
# On the AMX path the denominator is the highest tdpbf16ps reading of the run, the same way.
amx_peaks = [peak["peak_gflops"].get("amx_bf16") or 0] + [load(n).get("peak_gflops_amx", 0) for n in KERNELS if load(n)]
amx = max(amx_peaks) if peak.get("bf16_path") == "amx" else 0
den = amx if amx else bf
for n in KERNELS:
    j = load(n)
    if j: j["fraction_of_peak"] = j["gflops"] / den
    a = load(n + ".alt")
    if j and a: j["alt"] = {"path": a.get("bf16_path"), "seconds": a["seconds"], "gflops": a["gflops"],
                            "fraction_of_peak": a["gflops"] / bf}
lines = []
say = lines.append
cpu_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
say(f"CPU: {cpu_name} (family {peak.get('cpu_family')} model {peak.get('cpu_model')}), {peak['threads']} threads; "
    f"kernel path {peak['isa']}, bf16 path {peak.get('bf16_path', '?')}")
say("load: the 1-minute load average when each bench started (other work on the cores lowers the figures)")
say("register peaks, all threads (GFLOP/s or GOP/s): " +
    ", ".join(f"{k} {v:.0f}" for k, v in peak["peak_gflops"].items()) +
    (f"; 'of peak' below is of {amx:.0f} GFLOP/s, the highest tdpbf16ps (AMX) reading of the run "
     f"({min(amx_peaks):.0f}-{amx:.0f}); the AVX512-BF16 path's, of {bf:.0f} (vdpbf16ps)" if amx else
     f"; 'of peak' below is of {bf:.0f} GFLOP/s, the highest vdpbf16ps reading of the run ({min(peaks):.0f}-{bf:.0f})"))
def torch_part(j):
    t = j.get("torch")
    if isinstance(t, dict):
        return f"torch {t['gflops']:.0f} GFLOP/s ({t.get('torch_version')}) -> {j.get('speedup_vs_torch', 0):.2f}x"
    return f"torch: {t}"
say("")
def alt_part(j):
    a = j.get("alt")
    if not a: return ""
    return (f"{a['seconds']:>9.3f}{a['gflops']:>9.0f}{100 * a['fraction_of_peak']:>8.1f}%"
            f"{a['seconds'] / j['seconds']:>8.2f}x")
alt_head = f"{'avx512bf16: s':>15}{'GFLOP/s':>9}{'of peak':>9}{'AMX is':>9}" if amx else ""
say(f"{'what':<34}{'seconds':>9}{'GFLOP/s':>9}{'of peak':>9}{'load':>6}{alt_head}   PyTorch bf16 in the same run")
def row(label, j):
    say(f"{label:<34}{j['seconds']:>9.3f}{j['gflops']:>9.0f}{100 * j['fraction_of_peak']:>8.1f}%"
        f"{j.get('loadavg_1min', 0):>6.2f}{'      ' + alt_part(j) if amx else ''}   {torch_part(j)}")
for n in ("gemm_1920_1920", "gemm_1920_7680", "gemm_7680_1920"):
    j = load(n)
    row('GEMM M=%d K=%d N=%d' % (j['m'], j['k'], j['n']), j)
j = load("attention")
row('attention L=%d 30x64 batch 2' % j['tokens'], j)
blk = load("block")
row('block N=%d (+226 text) CFG 2' % blk['tokens'], blk)
ps = blk.get("parts_seconds", {})
say("  block parts (s): " + ", ".join(f"{k} {v:.2f}" for k, v in ps.items()) +
    f"; peak RSS {blk.get('peak_rss_gb', 0):.2f} GB")
summary = {"cpu": cpu_name, "cpu_family": peak.get("cpu_family"), "cpu_model": peak.get("cpu_model"),
           "isa": peak["isa"], "bf16_path": peak.get("bf16_path"), "threads": peak["threads"],
           "peak_gflops": peak["peak_gflops"], "bf16_peak_denominator": bf, "amx_peak_denominator": amx or None,
           "bench": {}}
for n in ("gemm_1920_1920", "gemm_1920_7680", "gemm_7680_1920", "attention", "block", "generate", "deviation"):
    if load(n): summary["bench"][n] = load(n)
g = load("generate")
if g:
    s = g["stage_seconds"]
    rss_kb = open(os.path.join(d, "maxrss_kb")).read().strip()
    rss = int(rss_kb) / 1048576 if rss_kb else float("nan")
    # FLOPs of a 49x480x720 generation of the 2b: per step the 30 blocks at the block's formula (L = N + 226,
    # CFG batch 2); the VAE decode and T5 as issue 9 counts them (0.31 PFLOP, 0.004 PFLOP).
    cfg = json.load(open(os.path.join(g["model_dir"], "transformer", "config.json")))
    D = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    FF, B, layers, Lt = 4 * D, 2, cfg["num_layers"], cfg.get("max_text_seq_length", 226)
    tokens = (g["frames"] - 1) // 4 + 1
    Nv = tokens * (g["height"] // 16) * (g["width"] // 16)
    Lj = Nv + Lt
    step_flops = layers * (2 * (4 * D * D + 2 * D * FF) * Lj * B + 4 * Lj * Lj * D * B)
    full = (g["frames"], g["height"], g["width"], D, layers) == (49, 480, 720, 1920, 30)
    total_flops = 50 * step_flops + 0.31e15 + 0.004e15
    per_step = s["denoise"] / g["steps"]
    total = s["encode"] + 50 * per_step + s["decode"] + s["write"]
    floor = total_flops / (den * 1e9)
    say("")
    say(f"generation {g['frames']}x{g['height']}x{g['width']}, {g['steps']} step(s), {g['model_dir']}:")
    say(f"  encode {s['encode']:.1f} s, denoise {per_step:.1f} s/step ({step_flops / per_step / 1e9:.0f} GFLOP/s, "
        f"{100 * step_flops / per_step / 1e9 / den:.1f}% of peak), decode {s['decode']:.1f} s, write {s['write']:.1f} s; "
        f"peak RSS {rss:.2f} GB (/usr/bin/time -v)")
    if full:
        say(f"  50 steps extrapolated: {total:.0f} s = {total / 3600:.2f} h; floor {total_flops / 1e15:.2f} PFLOP / "
            f"{den:.0f} GFLOP/s ({'tdpbf16ps' if amx else 'vdpbf16ps'}) = {floor:.0f} s -> {total / floor:.2f}x the floor")
    else:
        say(f"  50 steps extrapolated: {total:.0f} s (not the 2b at 49x480x720: no floor comparison)")
    say(f"  T5 + VAE share of the total: {100 * (s['encode'] + s['decode']) / total:.1f}%")
    summary["generation"] = {"seconds_per_step": per_step, "extrapolated_50_steps_seconds": total,
                             "floor_seconds": floor, "ratio_to_floor": total / floor, "peak_rss_gb": rss,
                             "t5_vae_fraction": (s["encode"] + s["decode"]) / total, "full_size": full}
dv = load("deviation")
if dv:
    dev = dv.get("deviation", dv)
    keys = [k for k in ("max_abs", "rms_diff", "rms_fp32", "relative_rms", "cosine") if k in dev]
    say(f"bf16 vs fp32 final latents ({dv.get('steps')} steps, {dv.get('latent_shape', '')}): " +
        ", ".join(f"{k} {dev[k]:.4g}" for k in keys))
print("\n".join(lines))
if out:
    json.dump(summary, open(out, "w"), indent=1)
PY
