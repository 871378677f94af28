#!/usr/bin/env bash
# Reproduces every figure in benchmarks/RESULTS-ARCHIVE.md (the current results: benchmarks/scoreboard.py). Run from the repository root after `make install`:
#   bash benchmarks/results.sh            # all steps: many hours on 2 CPU cores (steps 3 and later run 60-300 s fits)
#   bash benchmarks/results.sh 3 5        # only some steps
# Output goes to bench-output/ (ignored by git).
set -euo pipefail
export PATH="$PWD/.venv/bin:$PATH"
out=bench-output
data=../shared/data
mkdir -p "$out"

write_ct_crop() {  # the CT crop of odd shape that steps 2, 26 and 28 compress
  python -c "import tifffile; a = tifffile.imread('$data/brain64.tif')[..., 0]; tifffile.imwrite('$out/brain-ct-61x57x50.tif', a[:61, :57, :50])"
}

step1() {  # Fidelity floor: brain64 at 64x, default options, 240 s.
  tinc compress "$data/brain64.tif" -o "$out/brain64-64x.tinc" --ratio 64 --time-limit 240 --quiet
  tinc decompress "$out/brain64-64x.tinc" -o "$out/brain64-64x.tif" --quiet
  tinc eval "$data/brain64.tif" "$out/brain64-64x.tif" --tinc "$out/brain64-64x.tinc" | tee "$out/floor-brain64.txt"
}

step2() {  # Real MRI and CT volumes of odd shapes at 128x and 256x, 240 s, against SZ3, SPERR, JPEG 2000, HEVC.
  write_ct_crop
  tinc bench nibabel:example4d.nii.gz "$out/brain-ct-61x57x50.tif" nibabel:anatomical.nii \
      --ratios 128,256 --codecs sz3,sperr,jpeg2000,hevc,tinc --time-limit 240 --out "$out/odd-shapes" --quiet
}

step3() {  # Rate-distortion against the field on the four reference inputs, 60 s per tinc run.
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratios 64,128,256,512 --codecs sperr,sz3,zfp,jpeg2000,jpegxl,hevc,h264,tinc --time-limit 60 \
      --out "$out/field" --quiet
}

step4() {  # Our method against the authors' settings (tinc-reference) and one network (siren), same budget and time.
  tinc bench "$data/brain64.tif" --ratios 64,256 --codecs tinc,tinc-reference,siren --time-limit 60 \
      --out "$out/reference" --quiet
}

step5() {  # Ablation: every option changed alone, equal time (40 s) per variant.
  python benchmarks/ablation.py "$data/brain64.tif" --ratio 64 --time-limit 40 | tee "$out/ablation-brain64.md"
}

step6() {  # Training and decoding speed against the machine's limits and a per-node loop.
  python benchmarks/speed.py | tee "$out/speed.md"
}

step7() {  # Chunked compression on Dask: throughput on 1 and 2 workers, seams with and without a halo (random starts, as then).
  { python benchmarks/scale.py --size 128 --chunk 64 --steps 200 --ratio 64 --halo 0 --runs random-1,random-2
    python benchmarks/scale.py --size 128 --chunk 64 --steps 200 --ratio 64 --runs random-2; } | tee "$out/scale.md"
}

step8() {  # Tree depth at equal training compute, one thread.
  {
    python benchmarks/depth.py "$data/brain64.tif" --ratio 128 --variants 0,0x2,1,2
    python benchmarks/depth.py "$data/brain64.tif" --ratio 256 --variants 0,0x2,1
    python benchmarks/depth.py "$data/tinc_test.tif" --ratio 128 --variants 0,0x2,1,2
    python benchmarks/depth.py "$data/tinc_test.tif" --ratio 256 --variants 0,0x2,1
    python benchmarks/depth.py "$data/tinc_test.tif" --ratio 64 --steps 1000 --variants 1,1x2,2
    python benchmarks/depth.py nibabel:example4d.nii.gz --ratio 128 --steps 400 --variants 1,1x2,2
    python benchmarks/depth.py nibabel:example4d.nii.gz --ratio 256 --steps 400 --variants 1,1x2,2
  } | tee "$out/depth.md"
}

step9() {  # The four inputs at 128-512x again after the automatic-depth change, against the classic codecs again, 60 s per tinc run.
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" --ratios 128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-depth2" --quiet
  tinc bench nibabel:example4d.nii.gz skimage:cell --ratios 128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-depth3" --quiet
}

step10() {  # Quantization: one fit coded with std and with sensitivity steps; bits and quantization-aware training, 30 s each.
  python benchmarks/quantization.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 128 --time-limit 30 | tee "$out/quantization.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 128,256,512 --time-limit 30 \
      --only "defaults,no quantization-aware training,sized for 8-bit weights without quantization-aware training" \
      | tee "$out/ablation-bits.md"
}

step11() {  # The scoreboard again with sensitivity steps, 6-bit sizing and quantization-aware training, 60 s per tinc run.
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-quantization" --quiet
}

step12() {  # Batch 8192 and automatic level weights against the earlier defaults, 30 s per run.
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 128,256,512 --time-limit 30 --only "defaults,equal level weights,batch 65536" | tee "$out/ablation-batch.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 64 --time-limit 30 --only "defaults,equal level weights" | tee "$out/ablation-batch-64.md"
  python benchmarks/ablation.py "$data/brain64.tif" --ratio 64 --steps 5000 --only "defaults,batch 65536,20000 steps" \
      | tee "$out/ablation-steps.md"
}

step13() {  # The scoreboard with batch 8192, automatic level weights, the divergence guard and the Nyquist-capped first layer, 60 s per tinc run.
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-nyquist" --quiet
}

step14() {  # Rounding to the trained steps: where fidelity goes, the scoreboard at 60 s, the weak cells at 300 s, the reference.
  python benchmarks/fidelity_path.py skimage:cell --ratio 64 --time-limit 60 | tee "$out/fidelity-path.md"
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-rounding" --quiet
  tinc bench nibabel:example4d.nii.gz --ratios 128 --codecs tinc --time-limit 300 --out "$out/long-example4d" --quiet
  tinc bench "$data/tinc_test.tif" --ratios 512 --codecs tinc --time-limit 300 --out "$out/long-tinc_test" --quiet
  tinc bench skimage:cell --ratios 128 --codecs tinc --time-limit 300 --out "$out/long-cell" --quiet
  tinc bench "$data/brain64.tif" --ratios 64,256 --codecs tinc,tinc-reference,siren --time-limit 60 --out "$out/reference" --quiet
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" skimage:cell --ratio 512 --time-limit 30 \
      --only "defaults,2 layers per node" | tee "$out/ablation-layers.md"
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-layers" --quiet
}

step15() {  # The pull toward the rounded weights: where fidelity goes, the ablation, the scoreboard at 60 s, 5-bit sizing.
  python benchmarks/fidelity_path.py skimage:cell --ratio 64 --steps 10000 | tee "$out/fidelity-damping.md"
  python benchmarks/fidelity_path.py skimage:cell --ratio 64 --steps 10000 --set qat_damping=0 | tee -a "$out/fidelity-damping.md"
  for ratio in 64 128 256 512; do for damping in 10 20 60; do
    python benchmarks/fidelity_path.py skimage:cell --ratio $ratio --steps 10000 --set qat_damping=$damping
  done; done | tee "$out/damping-strength.md"
  python benchmarks/fidelity_path.py "$data/brain64.tif" --ratio 64 --steps 6000 | tee -a "$out/damping-strength.md"
  python benchmarks/fidelity_path.py "$data/tinc_test.tif" --ratio 512 --steps 6000 | tee -a "$out/damping-strength.md"
  python benchmarks/fidelity_path.py nibabel:example4d.nii.gz --ratio 128 --steps 6000 | tee -a "$out/damping-strength.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 64,128,256,512 --time-limit 30 --only "defaults,no pull toward the rounded weights" | tee "$out/ablation-damping.md"
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-damping" --quiet
  python benchmarks/ablation.py skimage:cell nibabel:example4d.nii.gz --ratio 128,256 --time-limit 30 \
      --only "defaults,sized for 5-bit weights,sized for 7-bit weights" | tee "$out/ablation-bits-damping.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" --ratio 64,128,256,512 --time-limit 30 \
      --only "defaults,sized for 5-bit weights" | tee "$out/ablation-5bit.md"
  python benchmarks/ablation.py nibabel:example4d.nii.gz skimage:cell --ratio 64,512 --time-limit 30 \
      --only "defaults,sized for 5-bit weights" | tee -a "$out/ablation-5bit.md"
}

step16() {  # Warm-up, the rate per depth and the depth floor: depth 1 against depth 2, and the defaults before (9bec40b).
  python benchmarks/ablation.py nibabel:example4d.nii.gz --ratio 8,16,64,128 --time-limit 30 --only "depth 1,depth 2" \
      | tee "$out/depth-after.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" skimage:cell --ratio 16 --time-limit 30 \
      --only "depth 1,depth 2" | tee -a "$out/depth-after.md"
  python benchmarks/ablation.py nibabel:example4d.nii.gz --ratio 32 --time-limit 30 --only "depth 1,depth 2" \
      | tee -a "$out/depth-after.md"
  python benchmarks/ablation.py nibabel:example4d.nii.gz --ratio 64,128 --steps 5000 --only "depth 1,depth 2" \
      | tee "$out/depth-5000-steps.md"
  python benchmarks/ablation.py nibabel:example4d.nii.gz --ratio 8 --time-limit 30 \
      --only "depth 2 at lr 2e-3,depth 3,depth 3 at lr 1e-3,depth 3 at lr 2e-3" | tee "$out/depth-rate.md"
  python benchmarks/ablation.py nibabel:example4d.nii.gz --ratio 4 --time-limit 30 \
      --only "depth 2,depth 3,depth 3 at lr 2.5e-4,defaults" | tee "$out/depth-restart.md"
  python benchmarks/leaf_means.py nibabel:example4d.nii.gz --depth 3 | tee -a "$out/depth-restart.md"
  python benchmarks/leaf_means.py "$data/brain64.tif" --depth 2 | tee -a "$out/depth-restart.md"
  python benchmarks/ablation.py skimage:cell --ratio 128,256 --time-limit 30 --only "defaults,one 4-layer network (siren)" \
      | tee "$out/structures.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" --ratio 256 --time-limit 30 \
      --only "defaults,one 4-layer network (siren)" | tee -a "$out/structures.md"
  python benchmarks/ablation.py skimage:cell "$data/brain64.tif" "$data/tinc_test.tif" --ratio 256 --time-limit 30 \
      --only "depth 1 with a 3-layer root,depth 1 with a 4-layer root" | tee -a "$out/structures.md"
  before=$(mktemp -d) && git worktree add -q --detach "$before" 9bec40b
  PYTHONPATH="$before/src" python "$before/benchmarks/ablation.py" nibabel:example4d.nii.gz --ratio 8,16,64,128 \
      --time-limit 30 --only defaults | tee "$out/depth-before.md"
  PYTHONPATH="$before/src" python "$before/benchmarks/ablation.py" "$data/brain64.tif" "$data/tinc_test.tif" skimage:cell \
      --ratio 16 --time-limit 30 --only defaults | tee -a "$out/depth-before.md"
  git worktree remove --force "$before"
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-warmup" --quiet
  tinc bench skimage:cell --ratios 128,256,512 --codecs tinc --time-limit 300 --out "$out/long-cell-warmup" --quiet
}

step17() {  # 5-bit sizing with the shape chosen as for 6 bits, several starts, half the rate without progress.
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 64,128,256,512 --time-limit 30 \
      --only "sized for 6-bit weights with one start,sized for 5-bit weights with one start" | tee "$out/bits-5-6.md"
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 64,128,256,512 --time-limit 30 \
      --only "sized for 5-bit weights with one start,sized for 5-bit weights" | tee "$out/starts-5bit.md"
  python benchmarks/starts.py "$data/tinc_test.tif" --ratio 512 --steps 3000 --seeds 7 | tee "$out/starts-seeds.md"
  python benchmarks/starts.py skimage:cell --ratio 256 --steps 3000 --seeds 5 | tee -a "$out/starts-seeds.md"
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs sperr,sz3,jpeg2000,hevc,tinc --time-limit 60 --out "$out/field-drift" --quiet
  for commit in 6603636 354a92c; do  # without a rate rule, and with the rule that was replaced
    before=$(mktemp -d) && git worktree add -q --detach "$before" "$commit"
    if [ "$commit" = 6603636 ]; then  # example4d at 64x drifting at the default rate
      for options in "" "--starts 1" "--lr 1e-3"; do
        PYTHONPATH="$before/src" python -m tinc.cli compress nibabel:example4d.nii.gz -o "$out/e64.tinc" --ratio 64 \
            --time-limit 60 $options 2>>"$out/drift-example4d-progress.txt" | tee -a "$out/drift-example4d.txt"
      done
    fi
    PYTHONPATH="$before/src" python -m tinc.cli bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz \
        skimage:cell --ratios 64,128,256,512 --codecs tinc --time-limit 60 --out "$out/field-$commit" --quiet
    git worktree remove --force "$before"
  done
}

step18() {  # The restart that misfired on tinc-reference (before: d7e95a0), the reference on all four inputs, where cell stands.
  python -c "import sys; sys.path.insert(0, 'benchmarks'); import speed; m, s = speed.machine_rates(); print(f'matmul {m / 1e9:.1f} GFLOP/s, sine {s / 1e9:.2f} G/s')" \
      | tee "$out/machine.txt"
  before=$(mktemp -d) && git worktree add -q --detach "$before" d7e95a0
  PYTHONPATH="$before/src" python -m tinc.cli bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratios 64,128,256,512 --codecs tinc,tinc-reference --time-limit 60 --out "$out/reference-all" --quiet
  git worktree remove --force "$before"
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell --ratios 64,128,256,512 \
      --codecs tinc,tinc-reference --time-limit 60 --out "$out/reference-falling" --quiet
  for ratio in 128 256; do
    python benchmarks/fidelity_path.py skimage:cell --ratio $ratio --time-limit 60
    python benchmarks/fidelity_path.py skimage:cell --ratio $ratio --time-limit 60 --set qat_fraction=0
  done | tee "$out/cell-fidelity-path.md"
  python benchmarks/ablation.py skimage:cell --ratio 128,256 --time-limit 300 --only "defaults,8 starts" | tee "$out/cell-300s.md"
  tinc compress "$data/brain64.tif" -o "$out/ref.tinc" --ratio 64 --levels 2 --level-weights 1,0.8,1.5 --layers 2,2,3 \
      --weight-bits 32 --value-range 0,100 --optimizer adamax --lr 1e-3 --starts 1 --min-width 1 --steps 10 --quiet
  tinc info "$out/ref.tinc" | tee "$out/reference-tree.txt"
  python benchmarks/leaf_means.py "$data/brain64.tif" --depth 0 | tee -a "$out/reference-tree.txt"
  tinc compress nibabel:example4d.nii.gz -o "$out/e4.tinc" --ratio 4 --time-limit 30 2>&1 | tr '\r' '\n' \
      | grep -E "note|->" | tee "$out/restart-example4d.txt"
  rates() { for lr in "${@:3}"; do echo "$1 ${2}x lr $lr ${seed:+seed $seed}"
    python benchmarks/fidelity_path.py "$1" --ratio "$2" --steps 6000 --set lr="$lr" --set seed="${seed:-0}" | tail -1; done; }
  { rates skimage:cell 64 0.002 0.004; rates skimage:cell 128 0.001 0.002 0.003 0.004 0.006 0.008
    seed=1 rates skimage:cell 128 0.002 0.006; seed=2 rates skimage:cell 128 0.002 0.006
    rates skimage:cell 256 0.002 0.004 0.006; rates "$data/brain64.tif" 64 0.002 0.004
    rates "$data/brain64.tif" 128 0.002 0.004; rates "$data/tinc_test.tif" 128 0.002 0.004
    rates "$data/tinc_test.tif" 512 0.002 0.004; rates nibabel:example4d.nii.gz 64 0.001 0.002
    rates nibabel:example4d.nii.gz 128 0.002 0.003 0.004; rates nibabel:example4d.nii.gz 256 0.002 0.004
  } | tee "$out/peak-rate.md"
}

step19() {  # Weights over the budget after quantization-aware training (before: daaaf78); format 3's tensor headers.
  before=$(mktemp -d) && git worktree add -q --detach "$before" daaaf78
  drift() { python benchmarks/qat_drift.py skimage:cell "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz \
      --ratios 64,128,256,512 --seeds 0,1 --steps 1500
    python benchmarks/qat_drift.py "$data/brain64.tif" "$data/tinc_test.tif" --ratios 16 --seeds 0,1 --steps 1500
    python benchmarks/qat_drift.py skimage:cell --ratios 512 --seeds 0 --steps 6000; }
  PYTHONPATH="$before/src" drift | tee "$out/drift-before.md"
  drift | tee "$out/drift-after.md"
  for spec in "skimage:cell 256" "skimage:cell 512" "$data/tinc_test.tif 512" "$data/brain64.tif 512"; do
    set -- $spec
    for seed in 0 1; do
      for src in "$before/src" src; do echo "$1 ${2}x seed $seed $src"
        PYTHONPATH="$src" python benchmarks/fidelity_path.py "$1" --ratio "$2" --steps 6000 --set seed=$seed | tail -1; done
    done
  done | tee "$out/compact-headers.md"
  for spec in "skimage:cell 128" "skimage:cell 256" "skimage:cell 512" "$data/tinc_test.tif 512" "$data/brain64.tif 512" \
      "nibabel:example4d.nii.gz 512"; do
    set -- $spec
    for src in "$before/src" src; do echo "$1 ${2}x $src"
      PYTHONPATH="$src" python -m tinc.cli compress "$1" -o "$out/parameters.tinc" --ratio "$2" --steps 10 --quiet
      PYTHONPATH="$src" python -m tinc.cli info "$out/parameters.tinc" | grep -E "tree|sections"; done
  done | tee "$out/compact-parameters.txt"
  python benchmarks/qat_drift.py skimage:cell --ratios 512 --seeds 0 --steps 6000 --slack 0
  git worktree remove --force "$before"
}

step20() {  # The spread penalty against none, fixed step counts; more seeds of cell; its cost per step; cell's scoreboard at 300 s.
  python benchmarks/ablation.py "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz skimage:cell \
      --ratio 128,256 --steps 6000 --only "defaults,no spread penalty" | tee "$out/spread-ablation.md"
  python benchmarks/ablation.py skimage:cell --ratio 64,512 --steps 6000 --only "defaults,no spread penalty" | tee -a "$out/spread-ablation.md"
  for spec in "128 1" "128 2" "256 1"; do
    set -- $spec
    for penalty in 0.1 0; do echo "cell ${1}x seed $2 spread_penalty $penalty"
      python benchmarks/fidelity_path.py skimage:cell --ratio "$1" --steps 6000 --set seed="$2" --set spread_penalty="$penalty" | tail -1; done
  done | tee "$out/spread-seeds.md"
  for penalty in 0 0.1 0 0.1; do echo "spread_penalty $penalty"
    TIMEFORMAT="%R s"; time tinc compress skimage:cell -o "$out/spread.tinc" --ratio 128 --steps 3000 --spread-penalty "$penalty" --quiet
  done 2>&1 | tee "$out/spread-time.txt"
  tinc bench skimage:cell --ratios 128,256 --codecs sperr,hevc,jpeg2000,sz3,tinc --time-limit 300 --out "$out/spread-cell" --quiet
}

step21() {  # The canonical form's sorted biases (format 4; before: 5244afd): bytes saved, fidelity at fixed steps, cell's scoreboard at 300 s.
  python benchmarks/symmetry.py skimage:cell "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz \
      --ratios 128,256 --steps 1500 | tee "$out/symmetry-bytes.md"
  before=$(mktemp -d) && git worktree add -q --detach "$before" 5244afd
  for spec in "skimage:cell 128 0" "skimage:cell 128 1" "skimage:cell 128 2" "skimage:cell 256 0" "skimage:cell 256 1" \
      "$data/brain64.tif 256 0" "$data/tinc_test.tif 256 0" "nibabel:example4d.nii.gz 256 0"; do
    set -- $spec
    for src in "$before/src" src; do echo "$1 ${2}x seed $3 $src"
      PYTHONPATH="$src" python benchmarks/fidelity_path.py "$1" --ratio "$2" --steps 6000 --set seed="$3" | tail -1; done
  done | tee "$out/symmetry-fidelity.md"
  git worktree remove --force "$before"
  tinc bench skimage:cell --ratios 128,256 --codecs sperr,hevc,jpeg2000,sz3,tinc --time-limit 300 --out "$out/symmetry-cell" --quiet
  tinc bench skimage:cell --ratios 512 --codecs sperr,hevc,jpeg2000,sz3,tinc --time-limit 300 --out "$out/symmetry-cell512" --quiet
  tinc bench nibabel:example4d.nii.gz --ratios 128 --codecs sperr,hevc,jpeg2000,sz3,tinc --time-limit 300 --out "$out/symmetry-example4d" --quiet
}

step22() {  # Level weights: every level the same share (before: the square root of its nodes), fixed steps, then the closest scoreboard cells at 300 s.
  python benchmarks/ablation.py skimage:cell "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz \
      --ratio 64,128,256,512 --steps 6000 --only "defaults,level weights by the square root of the leaves" | tee "$out/level-weights.md"
  tinc bench skimage:cell --ratios 128,256 --codecs sperr,hevc,jpeg2000,sz3,tinc --time-limit 300 --out "$out/levels-cell" --quiet
  tinc bench nibabel:example4d.nii.gz --ratios 128 --codecs sperr,hevc,jpeg2000,sz3,tinc --time-limit 300 --out "$out/levels-example4d" --quiet
  python benchmarks/ablation.py skimage:cell nibabel:example4d.nii.gz --ratio 128 --time-limit 20 \
      --only "defaults,level weights by the square root of the leaves,defaults,level weights by the square root of the leaves" | tee "$out/level-weights-speed.md"
  for w in "[2,1]" "[3,1]" "[4,1]" "[6,1]"; do echo "level_weights $w"
    python benchmarks/fidelity_path.py skimage:cell --ratio 128 --steps 6000 --set "level_weights=$w" | tail -1; done | tee "$out/level-weights-root.md"
  python benchmarks/ablation.py skimage:cell nibabel:example4d.nii.gz --ratio 128,256 --steps 6000 \
      --only "defaults,level weights by the leaves to the power 1.5" | tee "$out/level-weights-1.5.md"
  for m in 4 6; do echo "min_width $m"
    python benchmarks/fidelity_path.py skimage:cell --ratio 128 --steps 6000 --set levels=1 --set min_width=$m \
        --set "level_weights=[20,1]" | tail -1; done | tee "$out/level-weights-narrow.md"
}

step23() {  # The coder's budget search (before: bd40e3b): the same bytes, search and decode times, chunked throughput.
  before=$(mktemp -d) && git worktree add -q --detach "$before" bd40e3b
  for ratio in 64 256; do
    for src in "$before/src" src; do echo "$src, ratio $ratio"
      PYTHONPATH="$src" python benchmarks/coding_speed.py skimage:cell "$data/brain64.tif" "$data/tinc_test.tif" nibabel:example4d.nii.gz \
          --ratio "$ratio" --steps 300 --repeats 5 | tail -4; done
  done | tee "$out/coding-speed.md"
  for src in "$before/src" src; do echo "$src"
    PYTHONPATH="$src" python benchmarks/scale.py --size 128 --chunk 64 --steps 200 --ratio 64; done | tee "$out/coding-speed-chunked.md"
  git worktree remove --force "$before"
  python -c "import cProfile, pstats, tinc; a = tinc.read('$data/brain64.tif')
one_chunk = lambda: tinc.compress(a, ratio=32, steps=20, batch=2048, seed=1, quiet=True)
one_chunk(); profile = cProfile.Profile(); profile.runcall(one_chunk); pstats.Stats(profile).sort_stats('cumtime').print_stats(20)"
}

step24() {  # tinc against tinc-reference at 300 s on the cells section 16 left short of +10 dB, and cell.
  tinc bench "$data/brain64.tif" --ratios 64,128 --codecs tinc,tinc-reference --time-limit 300 --out "$out/reference-300-brain64" --quiet
  tinc bench nibabel:example4d.nii.gz --ratios 64,128,256,512 --codecs tinc,tinc-reference --time-limit 300 --out "$out/reference-300-example4d" --quiet
  tinc bench skimage:cell --ratios 128,256 --codecs tinc-reference --time-limit 300 --out "$out/reference-300-cell" --quiet
  tinc bench "$data/tinc_test.tif" --ratios 128 --codecs tinc,tinc-reference --time-limit 300 --out "$out/reference-300-tinc_test" --quiet
}

step25() {  # tinc against tinc-reference as published (the authors' tree and batch), tinc at the reference's file size.
  # two runs side by side, one thread each; first with tinc's batch (RESULTS section 23's first table), then the preset
  for batch in "--set batch=8192" ""; do
    # shellcheck disable=SC2086  # $batch is empty or two words
    OMP_NUM_THREADS=1 python benchmarks/reference.py "$data/brain64.tif" "$data/tinc_test.tif" \
        --ratios 64,128,256,512 --reference-time 300 --tinc-time 60 $batch > "$out/reference-a.md" &
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 python benchmarks/reference.py nibabel:example4d.nii.gz skimage:cell \
        --ratios 64,128,256,512 --reference-time 300 --tinc-time 60 $batch > "$out/reference-b.md" &
    wait
    cat "$out/reference-a.md" "$out/reference-b.md"
  done
}

step26() {  # Section 2's odd shapes (the CT crop and anatomical.nii) against the classic codecs with today's tinc, 60 s per tinc run.
  write_ct_crop
  tinc bench "$out/brain-ct-61x57x50.tif" nibabel:anatomical.nii \
      --ratios 128,256 --codecs sz3,sperr,jpeg2000,hevc,tinc --time-limit 60 --out "$out/odd-shapes-now" --quiet
  tinc bench nibabel:anatomical.nii --ratios 256 --codecs sperr,tinc --time-limit 60 --out "$out/anatomical-256" --quiet
}

step27() {  # Section 25: anatomical.nii at 256x at commit d43620a and at 877731c (the planner's first pass, ESCAPED 0.8, no restart in the first tenth), 4 seeds, fixed steps.
  before=$(mktemp -d) && git worktree add -q --detach "$before" d43620a
  after=$(mktemp -d) && git worktree add -q --detach "$after" 877731c
  (for steps in 3000 6000; do
    OMP_NUM_THREADS=1 PYTHONPATH="$after/src" python "$after/benchmarks/ablation.py" nibabel:anatomical.nii --ratio 256 \
        --steps $steps --seeds 4 --only "defaults,escaped only below half the leaves' means,stuck after 1000 steps at the leaves' means"
  done > "$out/anatomical-256-after.md") &
  (for steps in 3000 6000; do
    OMP_NUM_THREADS=1 PYTHONPATH="$before/src" python "$after/benchmarks/ablation.py" nibabel:anatomical.nii --ratio 256 \
        --steps $steps --seeds 4 --only defaults
  done > "$out/anatomical-256-before.md") &
  wait
  git worktree remove --force "$before"
  git worktree remove --force "$after"
  cat "$out/anatomical-256-before.md" "$out/anatomical-256-after.md"
}

step28() {  # Section 25: single networks no longer restart and take 4 layers only where 12 wide; anatomical.nii at 170x-256x (3 seeds, fixed steps), example4d's stuck depth-3 fit, the odd shapes at 64x-256x at 60 s.
  a=nibabel:anatomical.nii
  (OMP_NUM_THREADS=1 python benchmarks/ablation.py $a --ratio 230 --steps 10000 --seeds 3 --only "defaults,restarts in single networks too"
   OMP_NUM_THREADS=1 python benchmarks/ablation.py $a --ratio 256 --steps 6000 --seeds 3 --only "restarts in single networks too"
  ) > "$out/restarts.md" &
  (OMP_NUM_THREADS=1 python benchmarks/ablation.py $a --ratio 170,200,230,256 --steps 6000 --seeds 3 \
      --only "defaults,4 layers down to --min-width") > "$out/layers.md" &
  wait
  cat "$out/restarts.md" "$out/layers.md"
  (OMP_NUM_THREADS=1 python benchmarks/ablation.py "$data/tinc_test.tif" --ratio 512 --steps 6000 --seeds 3 \
      --only "defaults,2 layers per node") > "$out/layers-tinc_test.md" &
  (OMP_NUM_THREADS=1 python benchmarks/ablation.py $a --ratio 128 --steps 6000 --seeds 3 \
      --only "defaults,3 layers per node,2 layers per node") > "$out/layers-128.md" &
  wait
  cat "$out/layers-tinc_test.md" "$out/layers-128.md"
  python benchmarks/ablation.py nibabel:example4d.nii.gz --ratio 4 --time-limit 30 --only defaults
  write_ct_crop
  tinc bench "$out/brain-ct-61x57x50.tif" $a \
      --ratios 64,128,256 --codecs sz3,sperr,jpeg2000,hevc,tinc --time-limit 60 --out "$out/odd-shapes-25b" --quiet
  tinc bench $a --ratios 128,256 --codecs sperr,tinc --time-limit 60 --out "$out/anatomical-run2" --quiet
  tinc bench "$data/brain64.tif" "$data/tinc_test.tif" skimage:cell --ratios 512 --codecs sperr,sz3,jpeg2000,hevc,tinc \
      --time-limit 60 --out "$out/single-512" --quiet
  python -c "import tinc; from tinc.bench import load_input; a = load_input('$a')
print('the means loss', round(float(a.astype(float).var() * (2 / (float(a.max()) - float(a.min()))) ** 2), 4))
for pull in (0.1, 0.0):
    c = tinc.TincCodec(ratio=230, steps=8000, spread_penalty=pull, quiet=True); c.encode(a); print(pull, [round(x, 4) for x in c.report.start_losses])"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28)
for s in "${steps[@]}"; do "step$s"; done
