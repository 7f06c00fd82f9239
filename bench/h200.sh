#!/usr/bin/env bash
# The GPU machine's run: the CUDA test files that need neither the real model nor Python
# venvs, the concurrency benchmark against PyTorch, decode steps compiled against eager at one
# request, the LLM decode benchmark against PyTorch on a SmolLM2-shaped GGUF, and CPU-backend
# scaling on the host's cores.
#   bash bench/h200.sh OUTDIR [warm] [tests] [concurrency] [decode] [sampled] [llm] [cpu-scaling]
# Bun is $BUN (default: bun on the path). Each section writes OUTDIR/<section>.log and has its
# own time limit, so one that hangs does not take the others with it.
set -u
out=${1:?usage: bash bench/h200.sh OUTDIR [section...]}
shift
bun=${BUN:-bun}
sections=${*:-warm tests concurrency llm cpu-scaling}
mkdir -p "$out"

run() {
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - start)) s"
  tail -n 25 "$out/$name.log"
}

gpu_tests=(abi batch batched-ops compile concurrency conformance devices dtypes errors fused hotpath llama
  models openai-batch openai ops-extended ops quantized reliability scalars serve-units serve shape top-p)

for s in $sections; do
  case $s in
    warm)  # a fresh machine compiles the CUDA kernels once (NVRTC), then caches them
      LANES_BACKEND=cuda run warm 90 "$bun" bench/warm-kernels.ts ;;
    tests)
      files=()
      for t in "${gpu_tests[@]}"; do files+=("test/$t.test.ts"); done
      LANES_BACKEND=cuda run tests 200 "$bun" test "${files[@]}" ;;
    concurrency)
      LANES_BACKEND=cuda run concurrency 240 "$bun" bench/cuda.ts --concurrency
      cp bench/results/cuda-*.json "$out/" 2>/dev/null ;;
    decode)  # one request: the SmolLM2-shaped model's decode steps, then the toy transformer's
      "$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
      LANES_BACKEND=cuda run decode-llm 150 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode \
        --prompt 200 --decode 64 --rounds 4 --modes compiled,eager
      for round in 1 2; do LANES_BACKEND=cuda run decode-toy-$round 60 "$bun" bench/compile-host.ts; done ;;
    sampled)  # an OpenAI request's defaults (temperature 1, top_p 1): generate() greedy against sampled, then the engines
      "$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
      for loop in generate sampled; do
        LANES_BACKEND=cuda run decode-$loop 100 "$bun" bench/llm-steps.ts --model /tmp/smollm2-shaped.gguf --only decode \
          --prompt 200 --decode 64 --rounds 3 --modes compiled --loop $loop
      done
      LANES_BACKEND=cuda run llm-lanes-sampled 110 "$bun" bench/llm.ts --cuda --model /tmp/smollm2-shaped.gguf --prompt 32 \
        --tokens 64 --per-chat 1 --rounds 2 --chats 1,8,32 --temperature 1 ;;
    llm)
      "$bun" bench/llm-synthetic.ts /tmp/smollm2-shaped.gguf >/dev/null
      LANES_BACKEND=cuda run llm-lanes 110 "$bun" bench/llm.ts --cuda --model /tmp/smollm2-shaped.gguf --prompt 32 \
        --tokens 64 --per-chat 1 --rounds 2 --chats 1,8,32
      run llm-torch 70 python3 bench/llm_torch.py /tmp/smollm2-shaped.gguf --chats 1,8,32 --prompt 32 --tokens 64 --rounds 2 ;;
    cpu-scaling)
      for round in 1 2; do  # the two modes alternate, each beside the cores' own scaling (plain JS)
        LANES_BACKEND=cpu run cpu-scaling-js-$round 60 "$bun" bench/scaling.ts js eager 2000
        LANES_BACKEND=cpu run cpu-scaling-$round 60 "$bun" bench/scaling.ts small eager 2000
        LANES_BACKEND=cpu LANES_LOCKING=global run cpu-scaling-global-$round 60 "$bun" bench/scaling.ts small eager 2000
      done ;;
    *) echo "unknown section $s" ;;
  esac
done
