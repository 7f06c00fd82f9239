// Runs llama.cpp (node-llama-cpp's prebuilt libllama, the library the greedy and perplexity tests
// compare against) on a prompt and writes every intermediate tensor it computes, so that
// test/llama-parity.test.ts can feed lanes' ops llama.cpp's own inputs and compare the outputs.
//
//   llama-dump BACKEND_DIR MODEL OUT_DIR STEPS ID...
//
// decodes the prompt ids as one batch (call 0), then STEPS greedy single-token steps (calls 1 ..
// STEPS), with the settings of test/support/llama-cpp.ts: 2048-token context, 2 threads, one
// sequence, flash attention left to llama.cpp (auto), float16 KV cache. For call C, the n-th
// tensor of the graph is written to OUT_DIR/C/NNNN_OP_name.bin: six int32 (ggml type, ne0..ne3,
// op), then the data. Only float32 and float16 tensors with contiguous data are written; of the
// KV cache, the views attention reads (its first rows), not the whole cache.
//
// On stdout, one JSON line: which CPU backend library llama.cpp loaded (it picks the best of
// libggml-cpu-*.so in BACKEND_DIR for this CPU), that backend's features, the weights it
// repacked for its AMX kernels and for its other repacked kernels, and the greedy tokens. The
// test needs these facts to know which arithmetic llama.cpp ran. llama.cpp's log says them
// (ggml_backend_load_best: "loaded CPU backend from PATH"; amx.cpp: "amx repack tensor NAME";
// repack.cpp: "repack tensor NAME with ..."), so the log is captured with llama_log_set; the
// library is also found with dl_iterate_phdr, in case the log's wording changes.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

static const char *out_dir;
static int call, seq;

// The graph callback: asked first whether it wants a tensor (always: every node is then computed
// in its own step, so its data can be read), then called with the computed tensor.
static bool on_tensor(struct ggml_tensor *t, bool ask, void *user) {
  (void)user;
  if (ask) return true;
  if (!ggml_is_contiguous(t) || (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16)) return true;
  // SET_ROWS returns the whole KV cache (2048 rows a layer); the views attention reads are kept.
  if (t->op == GGML_OP_SET_ROWS) return true;
  char path[1024];
  int prefix = snprintf(path, sizeof path, "%s/%d/", out_dir, call);
  snprintf(path + prefix, sizeof path - prefix, "%04d_%s_%s.bin", seq++, ggml_op_desc(t), t->name);
  for (char *p = path + prefix; *p; p++)
    if (*p == ' ' || *p == '(' || *p == ')' || *p == '/') *p = '_';
  FILE *f = fopen(path, "wb");
  if (!f) {
    fprintf(stderr, "llama-dump: cannot write %s\n", path);
    exit(1);
  }
  int32_t header[6] = {(int32_t)t->type, (int32_t)t->ne[0], (int32_t)t->ne[1], (int32_t)t->ne[2], (int32_t)t->ne[3], (int32_t)t->op};
  size_t bytes = ggml_nbytes(t);
  void *data = malloc(bytes);
  ggml_backend_tensor_get(t, data, 0, bytes);
  if (fwrite(header, 4, 6, f) != 6 || fwrite(data, 1, bytes, f) != bytes || fclose(f) != 0) {
    fprintf(stderr, "llama-dump: short write to %s\n", path);
    exit(1);
  }
  free(data);
  return true;
}

// What llama.cpp's log told: the loaded CPU backend and the repacked weights (JSON string lists).
static char backend_from_log[1024];
static char amx_repacked[65536], other_repacked[65536];

static void append_name(char *list, size_t cap, const char *name, size_t len) {
  size_t used = strlen(list);
  if (used + len + 4 >= cap) return;
  snprintf(list + used, cap - used, "%s\"%.*s\"", used ? "," : "", (int)len, name);
}

// Log lines come whole from these call sites (one formatted call each). Warnings and errors are
// passed on to stderr; the rest (model metadata, timings) is dropped.
static void on_log(enum ggml_log_level level, const char *text, void *user) {
  (void)user;
  const char *s;
  if ((s = strstr(text, "loaded CPU backend from "))) {
    snprintf(backend_from_log, sizeof backend_from_log, "%s", s + strlen("loaded CPU backend from "));
    backend_from_log[strcspn(backend_from_log, "\n")] = 0;
  } else if ((s = strstr(text, "amx repack tensor "))) {
    s += strlen("amx repack tensor ");
    append_name(amx_repacked, sizeof amx_repacked, s, strcspn(s, " \n"));
  } else if ((s = strstr(text, "repack tensor "))) {
    s += strlen("repack tensor ");
    append_name(other_repacked, sizeof other_repacked, s, strcspn(s, " \n"));
  }
  if (level == GGML_LOG_LEVEL_WARN || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static char backend_loaded[1024];
static int find_cpu_backend(struct dl_phdr_info *info, size_t size, void *user) {
  (void)size, (void)user;
  const char *base = strrchr(info->dlpi_name, '/');
  if (base && strncmp(base + 1, "libggml-cpu", 11) == 0) snprintf(backend_loaded, sizeof backend_loaded, "%s", info->dlpi_name);
  return 0;
}

// Prints s as a JSON string (paths and feature names: no control characters expected).
static void print_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    putchar(*s);
  }
  putchar('"');
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: llama-dump BACKEND_DIR MODEL OUT_DIR STEPS ID...\n");
    return 2;
  }
  out_dir = argv[3];
  int steps = atoi(argv[4]), n = argc - 5;
  llama_token *ids = malloc(sizeof(llama_token) * (n + steps + 1));
  for (int i = 0; i < n; i++) ids[i] = atoi(argv[5 + i]);

  llama_log_set(on_log, NULL);
  ggml_backend_load_all_from_path(argv[1]);
  llama_backend_init();

  struct llama_model_params mp = llama_model_default_params();
  // No weight repacking (so no AMX kernels): its quantized matmuls then run ggml_vec_dot.
  if (getenv("LLAMA_DUMP_NO_REPACK")) mp.use_extra_bufts = false;
  struct llama_model *model = llama_model_load_from_file(argv[2], mp);
  if (!model) {
    fprintf(stderr, "llama-dump: cannot load %s\n", argv[2]);
    return 1;
  }
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 2048;
  cp.n_threads = 2;
  cp.n_threads_batch = 2;
  cp.n_seq_max = 1;
  cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
  cp.type_k = GGML_TYPE_F16;
  cp.type_v = GGML_TYPE_F16;
  cp.cb_eval = on_tensor;
  struct llama_context *ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    fprintf(stderr, "llama-dump: cannot create a context\n");
    return 1;
  }

  int vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  llama_token *input = ids;
  int n_input = n;
  for (call = 0; call <= steps; call++) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%d", out_dir, call);
    mkdir(dir, 0755);
    seq = 0;
    if (llama_decode(ctx, llama_batch_get_one(input, n_input))) {
      fprintf(stderr, "llama-dump: llama_decode failed in call %d\n", call);
      return 1;
    }
    // Greedy, as node-llama-cpp's temperature 0 is: the first largest logit.
    const float *logits = llama_get_logits_ith(ctx, -1);
    int best = 0;
    for (int v = 1; v < vocab; v++)
      if (logits[v] > logits[best]) best = v;
    ids[n + call] = best;
    input = &ids[n + call];
    n_input = 1;
  }

  dl_iterate_phdr(find_cpu_backend, NULL);
  printf("{\"cpuBackend\":");
  print_string(backend_loaded[0] ? backend_loaded : backend_from_log);
  printf(",\"cpuBackendFromLog\":");
  print_string(backend_from_log);
  printf(",\"features\":{");
  for (size_t r = 0; r < ggml_backend_reg_count(); r++) {
    ggml_backend_reg_t reg = ggml_backend_reg_get(r);
    if (strcmp(ggml_backend_reg_name(reg), "CPU") != 0) continue;
    ggml_backend_get_features_t get = (ggml_backend_get_features_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features");
    int first = 1;
    for (struct ggml_backend_feature *f = get ? get(reg) : NULL; f && f->name; f++, first = 0) {
      if (!first) putchar(',');
      print_string(f->name);
      putchar(':');
      print_string(f->value);
    }
  }
  printf("},\"amxRepacked\":[%s],\"otherRepacked\":[%s],\"tokens\":[", amx_repacked, other_repacked);
  for (int i = 0; i <= steps; i++) printf("%s%d", i ? "," : "", ids[n + i]);
  printf("]}\n");
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
