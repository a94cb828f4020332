#!/bin/bash
# The 16-core scaling run of the README (bench/results/scaling_xeon16/), from the repository root
# on a machine with python3, numpy, numba, scipy, Cython, a C compiler and torch, nothing installed:
# builds the Cython extension in place (in /tmp/b, away from pyproject.toml), fills Numba's caches
# in parallel processes (one cache per dtype group: Numba's cache index is not safe when processes
# add different signatures of one function at once; one-thread and parallel kernels are different
# functions, warmed at once), then runs bench/scaling.py, one process per cache.
#   OUT=DIR [TH=1,2,4,8,16] [R=9] bash bench/scaling_run.sh
OUT=${OUT:-/tmp/out}; mkdir -p $OUT
TH=${TH:-1,2,4,8,16}; R=${R:-9}
BIG=${BIG:-4096x32000}; VOC=${VOC:-256x50257}; LONG=${LONG:-1x10000000}; COLS=${COLS:-32000x4096}
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
ROOT=$PWD; T0=$(date +%s); rm -rf /tmp/ncA /tmp/ncB /tmp/ncC
{ date; nproc; lscpu | grep -v "^Flags\|Vulnerab"; grep -m1 flags /proc/cpuinfo; free -g; gcc --version | head -1
  cat /sys/kernel/mm/transparent_hugepage/enabled; grep AnonHuge /proc/meminfo
  python3 -c "import numba,numpy,scipy,Cython,setuptools,threadpoolctl;print('numba',numba.__version__,'numpy',numpy.__version__,'scipy',scipy.__version__,'cython',Cython.__version__,'setuptools',setuptools.__version__)"
  python3 -c "import torch;print('torch',torch.__version__)"; } > $OUT/env.txt 2>&1
grep -v "^flags" $OUT/env.txt
( rm -rf /tmp/b && mkdir -p /tmp/b/fastsoftmax/kernels && cp -r fastsoftmax/kernels/cython_backend /tmp/b/fastsoftmax/kernels/ \
  && cp setup.py /tmp/b && cd /tmp/b && python3 setup.py build_ext --inplace -j 2 > $OUT/build.log 2>&1 \
  && cp fastsoftmax/kernels/cython_backend/*.so $ROOT/fastsoftmax/kernels/cython_backend/ && echo "build ok $(( $(date +%s) - T0 )) s" ) &
A=softmax:float32:$BIG:-1,log_softmax:float32:$BIG:-1,softmax:float32:$VOC:-1,softmax:float32:1024x1000:-1,softmax:float32:100000x16:-1
B=softmax:float64:$BIG:-1,log_softmax:float64:$BIG:-1
C=softmax:float32:$LONG:-1,softmax:float64:$LONG:-1
# one cache per dtype group (Numba's dtype variants of a kernel share an index file); within a group
# the one-thread kernels and the parallel ones are different functions, warmed at once
for g in A B C; do for t in 1 ${TH#1,}; do
  NUMBA_CACHE_DIR=/tmp/nc$g python3 bench/scaling.py --warm --threads $t --impls numba --cases ${!g} >> $OUT/warm.log 2>&1 &
done; done
wait
echo "warm + build done at $(( $(date +%s) - T0 )) s"; cat $OUT/warm.log; tail -2 $OUT/build.log
for g in A B C; do
  NUMBA_CACHE_DIR=/tmp/nc$g python3 bench/scaling.py --threads $TH --rounds $R --json $OUT/$g.json --cases ${!g} 2>&1 | tee -a $OUT/bench.log
  echo "$g done at $(( $(date +%s) - T0 )) s"
done
python3 bench/scaling.py --threads $TH --rounds $R --json $OUT/cols.json --impls copy,torch-copy,torch,cython \
 --cases softmax:float32:$COLS:0,softmax:float64:$COLS:0 2>&1 | tee -a $OUT/bench.log
echo "all done at $(( $(date +%s) - T0 )) s"
