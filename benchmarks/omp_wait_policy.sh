#!/usr/bin/env bash
# Wall time of train / attack / audit under three OpenMP settings, twice, interleaved.
# Usage: bash benchmarks/omp_wait_policy.sh   (results in $OUT/results.tsv, default /tmp/omp)
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OLD='import torch, sys; from xrobust.cli import main; sys.exit(main(sys.argv[1:]))'
NEW='import sys; from xrobust.cli import main; sys.exit(main(sys.argv[1:]))'
mkdir -p "${OUT:-/tmp/omp}"; out=${OUT:-/tmp/omp}/results.tsv
echo -e "rep\tcommand\tsetting\tload1_before\tseconds\trc" > $out
# a model for attack/audit
env OMP_NUM_THREADS=1 $PY -c "$NEW" train --data digits --model small_cnn --epochs 3 --out ${OUT:-/tmp/omp}/base --no-progress >/dev/null 2>&1
cmds_train="train --data digits --model small_cnn --epochs 3 --out ${OUT:-/tmp/omp}/t --no-progress"
cmds_attack="attack --model ${OUT:-/tmp/omp}/base --data digits --eps 0.1 --steps 20 --limit 256"
cmds_audit="audit --model ${OUT:-/tmp/omp}/base --n 64 --attacks fgsm,pgd --norms linf --skip corruption,explanations,sanity --out ${OUT:-/tmp/omp}/a --no-progress"
for rep in 1 2; do
 for c in train attack audit; do
  eval "args=\$cmds_$c"
  for s in default passive one; do
   case $s in
    default) envs="env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY"; code="$OLD";;
    passive) envs="env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY"; code="$NEW";;
    one) envs="env -u OMP_WAIT_POLICY OMP_NUM_THREADS=1"; code="$OLD";;
   esac
   load=$(cut -d' ' -f1 /proc/loadavg)
   t0=$(date +%s.%N)
   $envs $PY -c "$code" $args >/dev/null 2>&1; rc=$?
   t1=$(date +%s.%N)
   echo -e "$rep\t$c\t$s\t$load\t$(echo "$t1 - $t0" | bc)\t$rc" >> $out
  done
 done
done
echo done >> $out
