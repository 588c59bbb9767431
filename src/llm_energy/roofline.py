"""Roofline cost of one `generate` call on a GPU, from the model's architecture (pure, no I/O).

Each forward pass (the prefill over the prompt, then one decoding step per further token) is

    t_step = t_step_overhead + max(t_host, t_gpu)
    t_host = ops · host_op_s · host_scale(model type)          (eager PyTorch: the CPU dispatches)
    t_gpu  = max(FLOPs / compute(f), bytes / bandwidth(f, m)) + ops · kernel_floor_s · f_max / f

Eager decoding of a small model is launch-bound (t_host ≫ t_gpu: the GPU idles between tiny
kernels), a large batch or a long prompt makes it memory- or compute-bound. `ops` is the number
of PyTorch ops per forward pass, counted per architecture from the transformers implementation
(`OP_COUNTS`). With the static KV cache and torch.compile, CUDA graphs replace the host's
dispatch: t_host = 0 and each op costs `graph_op_s` of GPU time instead.

Bytes per step: the weights (once per forward pass), the KV cache (the eager dynamic cache
copies it on every append, `torch.cat`: read + write, then attention reads it), activations.
FLOPs: 2 per parameter per token plus attention (4 · context · attention width per layer).

The dynamic activity of a step (the `u` of the DVFS power law in `llm_energy.simmodel`) is

    u = activity_busy + (activity_compute · t_compute + activity_mem · t_mem
                         + activity_kernel · t_floor) / t_step

so launch-bound work draws little more than idle and saturated bandwidth or tensor cores a lot.
A call's cost is its total time, its time to first token (the prefill) and its time-weighted
mean activity: energy is then P(f, u_mean) · time, since power is linear in u.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENGINES = ("eager", "static")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 4}


@dataclass(frozen=True)
class OpCounts:
    """PyTorch ops dispatched per forward pass: per decoder layer, per step outside the layers
    (embedding, final norm, LM head, generate's logits processing), per encoder layer."""

    per_layer: int
    per_step: int
    per_encoder_layer: int = 0


# Counted with a TorchDispatchMode around `generate` of 2- and 4-layer models of each type
# (transformers 5.24, CPU): per layer = difference / 2, per step = the rest. Views are ops too:
# each costs host dispatch time. `python benchmarks/sim_calibration.py --count-ops` re-counts.
OP_COUNTS: dict[str, OpCounts] = {
    "gpt2": OpCounts(39, 50),
    "gpt_neo": OpCounts(44, 70),
    "gptj": OpCounts(61, 48),
    "mistral": OpCounts(57, 62),
    "llama": OpCounts(55, 62),
    "falcon": OpCounts(47, 75),
    "t5": OpCounts(59, 70, 39),
}
DEFAULT_OP_COUNTS = OpCounts(52, 62, 40)  # other model types: the mean of the counted ones

# How each implementation's attention touches the KV cache, beyond the default
# (scaled_dot_product_attention on the cache as stored):
# - "upcast": GPT-Neo's eager attention casts the cached keys to fp32 and writes fp32 scores;
# - "broadcast": Falcon's multi-query attention hands SDPA one KV head for all query heads,
#   which only the math backend accepts: it upcasts to fp32 and materialises the expanded
#   keys and values (heads / kv_heads copies) and the scores.
ATTENTION_KIND: dict[str, str] = {"gpt_neo": "upcast", "falcon": "broadcast"}


@dataclass(frozen=True)
class ArchSpec:
    """The shape of a transformer, read from a Hugging Face config (`model.arch`)."""

    model_type: str
    n_layers: int  # decoder layers
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool = False
    tied_embeddings: bool = True
    n_encoder_layers: int = 0  # > 0: encoder-decoder (T5)

    @property
    def attn_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def seq2seq(self) -> bool:
        return self.n_encoder_layers > 0

    @property
    def self_attn_params(self) -> int:
        return 2 * self.hidden * self.attn_dim + 2 * self.hidden * self.kv_dim  # q, o + k, v

    @property
    def mlp_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.ffn

    @property
    def decoder_step_params(self) -> int:
        """Weights one decoding step reads per decoder layer (cross-attention k, v are cached)."""
        cross_qo = 2 * self.hidden * self.attn_dim if self.seq2seq else 0
        return self.self_attn_params + cross_qo + self.mlp_params

    @property
    def cross_kv_params(self) -> int:
        return 2 * self.hidden * self.kv_dim if self.seq2seq else 0

    @property
    def params(self) -> int:
        """All parameters (biases and norms left out: < 1 %)."""
        layers = self.n_layers * (self.decoder_step_params + self.cross_kv_params)
        encoder = self.n_encoder_layers * (self.self_attn_params + self.mlp_params)
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return layers + encoder + embeddings

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """Self-attention KV cache per token: keys and values of every decoder layer."""
        return 2 * self.n_layers * self.kv_dim * dtype_bytes

    @property
    def op_counts(self) -> OpCounts:
        return OP_COUNTS.get(self.model_type, DEFAULT_OP_COUNTS)

    @property
    def attention_kind(self) -> str:
        kind = ATTENTION_KIND.get(self.model_type, "sdpa")
        return "sdpa" if kind == "broadcast" and self.n_kv_heads == self.n_heads else kind

    def attention_read_factor(self) -> float:
        """Bytes attention moves per byte of cached keys and values (see ATTENTION_KIND)."""
        kind = self.attention_kind
        if kind == "upcast":  # keys: read, written as fp32, read again; values: read
            return 3.0
        if kind == "broadcast":  # upcast (read, write x2), expand (read x2, write x2g), read
            return 5.0 + 4.0 * self.n_heads / self.n_kv_heads
        return 1.0


def _first(arch: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if arch.get(key) is not None:
            return arch[key]
    if default is None:
        raise ValueError(f"model.arch has none of {', '.join(keys)}")
    return default


def arch_spec(arch: Mapping[str, Any]) -> ArchSpec:
    """ArchSpec from a `model.arch` block (the keys of the model type's HF config class)."""
    model_type = str(arch.get("model_type", ""))
    if not model_type:
        raise ValueError("model.arch needs a model_type")
    hidden = int(_first(arch, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(arch, "num_attention_heads", "n_head", "num_heads"))
    layers = int(_first(arch, "num_hidden_layers", "n_layer", "num_layers"))
    vocab = int(_first(arch, "vocab_size"))
    if model_type == "t5":
        head_dim = int(_first(arch, "d_kv", default=hidden // heads))
        return ArchSpec(
            model_type,
            n_layers=int(_first(arch, "num_decoder_layers", default=layers)),
            hidden=hidden,
            n_heads=heads,
            n_kv_heads=heads,
            head_dim=head_dim,
            ffn=int(_first(arch, "d_ff", default=4 * hidden)),
            vocab=vocab,
            gated_mlp=str(arch.get("feed_forward_proj", "relu")).startswith("gated"),
            tied_embeddings=bool(arch.get("tie_word_embeddings", True)),
            n_encoder_layers=layers,
        )
    if model_type == "falcon":
        # Falcon-7B: multi-query (one KV head); the new decoder architecture has num_kv_heads.
        if arch.get("new_decoder_architecture"):
            kv = int(_first(arch, "num_kv_heads", default=heads))
        else:
            kv = 1 if arch.get("multi_query", True) else heads
    else:
        kv = int(_first(arch, "num_key_value_heads", "num_kv_heads", default=heads))
    ffn = int(_first(arch, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden))
    gated = model_type in {"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "phi3"}
    # GPT-J and the llama family have their own LM head unless tied; GPT-2/Neo/Falcon tie it.
    tied_default = model_type in {"gpt2", "gpt_neo", "falcon"}
    return ArchSpec(
        model_type,
        n_layers=layers,
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=kv,
        head_dim=int(_first(arch, "head_dim", default=hidden // heads)),
        ffn=ffn,
        vocab=vocab,
        gated_mlp=gated,
        tied_embeddings=bool(arch.get("tie_word_embeddings", tied_default)),
    )


@dataclass(frozen=True)
class Workload:
    """One `generate` call as the GPU sees it. `prompt_tokens` is the padded prompt length (the
    longest prompt of the batch), `new_tokens` the longest output: every row runs that many
    forward passes (the prefill yields the first token)."""

    arch: ArchSpec
    dtype_bytes: int
    batch: int
    prompt_tokens: int
    new_tokens: int
    engine: str = "eager"
    compiled: bool = False  # static cache + torch.compile: CUDA graphs

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.batch < 1 or self.prompt_tokens < 1 or self.new_tokens < 0:
            raise ValueError(
                f"workload needs batch >= 1, prompt_tokens >= 1, new_tokens >= 0; got "
                f"{self.batch}, {self.prompt_tokens}, {self.new_tokens}"
            )
        if self.dtype_bytes not in (1, 2, 4):
            raise ValueError(f"dtype_bytes must be 1, 2 or 4, got {self.dtype_bytes!r}")

    @property
    def graphs(self) -> bool:
        return self.engine == "static" and self.compiled


@dataclass(frozen=True)
class RooflineParams:
    """Per-GPU throughput, overhead and activity constants (see `llm_energy.simmodel`)."""

    mem_bw_gbps: float  # peak memory bandwidth at the highest memory clock
    bw_efficiency: float  # share of the peak a streaming kernel reaches
    bw_knee_rel: float  # below this share of f_max, the SMs cannot keep memory busy
    tflops_16: float  # dense fp16/bf16 tensor-core peak at f_max
    tflops_32: float  # fp32 peak at f_max (no TF32: PyTorch's default for matmul)
    compute_efficiency: float  # share of the peak HF's GEMMs reach
    host_op_s: float  # host time to dispatch one PyTorch op (eager)
    step_overhead_s: float  # host time per forward pass outside dispatch (generate's loop)
    kernel_floor_s: float  # GPU time of one small kernel at f_max
    graph_op_s: float  # GPU time per op inside a CUDA graph, at f_max
    graph_step_overhead_s: float  # host time per step with CUDA graphs (guards, copies)
    activity_busy: float  # u while the GPU waits on the host between kernels
    activity_mem: float  # u added per unit of time the memory streams
    activity_compute: float  # ... the tensor cores compute
    activity_kernel: float  # ... small kernels run
    act_bytes_per_hidden: float = 12.0  # activation traffic per token and layer, x hidden
    act_bytes_per_ffn: float = 6.0  # ... x ffn width
    # Host time per op of each implementation relative to host_op_s (Python around the ops
    # differs: T5's many small modules cost more per op than GPT-2's views); 1 when not listed.
    host_scale: tuple[tuple[str, float], ...] = ()

    def host_scale_for(self, model_type: str) -> float:
        return dict(self.host_scale).get(model_type, 1.0)


@dataclass(frozen=True)
class StepCost:
    time_s: float
    host_s: float
    gpu_s: float
    activity: float
    flops: float
    bytes: float


@dataclass(frozen=True)
class WorkloadCost:
    time_s: float
    prefill_s: float  # time to the first token
    activity: float  # time-weighted mean u over the call
    flops: float
    bytes: float
    forward_passes: int


def _check_rel(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive share of the maximum clock, got {value!r}")
    return float(value)


def step_cost(
    p: RooflineParams,
    *,
    ops: int,
    flops: float,
    bytes_moved: float,
    dtype_bytes: int,
    graphs: bool,
    f_rel: float,
    m_rel: float,
    flops_fp32: float = 0.0,
    host_scale: float = 1.0,
) -> StepCost:
    """One forward pass at SM clock f = f_rel · f_max and memory clock m = m_rel · m_max.
    `flops` run at the model dtype's peak, `flops_fp32` (upcast attention) at the fp32 peak."""
    f_rel, m_rel = _check_rel("f_rel", f_rel), _check_rel("m_rel", m_rel)
    peak_dtype = (p.tflops_16 if dtype_bytes <= 2 else p.tflops_32) * 1e12
    t_compute = (flops / peak_dtype + flops_fp32 / (p.tflops_32 * 1e12)) / (
        p.compute_efficiency * f_rel
    )
    # Below the knee the SMs issue too few loads to keep HBM busy: bandwidth follows the clock.
    bw = p.mem_bw_gbps * 1e9 * p.bw_efficiency * m_rel * min(1.0, f_rel / p.bw_knee_rel)
    t_mem = bytes_moved / bw
    if graphs:
        t_floor, t_host, overhead = ops * p.graph_op_s / f_rel, 0.0, p.graph_step_overhead_s
    else:
        t_floor, t_host = ops * p.kernel_floor_s / f_rel, ops * p.host_op_s * host_scale
        overhead = p.step_overhead_s
    t_gpu = max(t_compute, t_mem) + t_floor
    t = overhead + max(t_host, t_gpu)
    busy = p.activity_compute * t_compute + p.activity_mem * t_mem + p.activity_kernel * t_floor
    u = min(1.0, p.activity_busy + busy / t)
    return StepCost(t, t_host, t_gpu, u, flops + flops_fp32, bytes_moved)


def _act_bytes(p: RooflineParams, a: ArchSpec, tokens: int, layers: int, db: int) -> float:
    return layers * tokens * (p.act_bytes_per_hidden * a.hidden + p.act_bytes_per_ffn * a.ffn) * db


def _prefill(p: RooflineParams, w: Workload, f_rel: float, m_rel: float) -> StepCost:
    a, db, b, n = w.arch, w.dtype_bytes, w.batch, w.prompt_tokens
    ops = a.op_counts.per_layer * a.n_layers + a.op_counts.per_step
    lm_head = a.vocab * a.hidden  # logits of the last position only (logits_to_keep=1)
    if a.seq2seq:
        enc = a.self_attn_params + a.mlp_params
        ops += a.op_counts.per_encoder_layer * a.n_encoder_layers
        flops = 2.0 * b * n * (a.n_encoder_layers * enc + a.n_layers * a.cross_kv_params)
        flops += 2.0 * b * (a.n_layers * a.decoder_step_params + lm_head)  # first decoder step
        attn_layers = a.n_encoder_layers
        weights = a.params - (0 if a.tied_embeddings else lm_head)
        act = _act_bytes(p, a, b * n, a.n_encoder_layers, db)
        kv_write = b * n * 2 * a.n_layers * a.kv_dim * db  # cross-attention keys and values
    else:
        flops = 2.0 * b * n * a.n_layers * a.decoder_step_params + 2.0 * b * lm_head
        attn_layers = a.n_layers
        weights = a.n_layers * a.decoder_step_params + lm_head
        act = _act_bytes(p, a, b * n, a.n_layers, db)
        kv_write = b * n * a.kv_bytes_per_token(db)
    attn_flops = 4.0 * attn_layers * b * n * n * a.attn_dim  # scores and weighted values
    scores = 0.0
    if a.attention_kind != "sdpa":  # fp32 scores written, softmaxed, read: four passes
        scores = 4.0 * attn_layers * b * a.n_heads * n * n * 4
    bytes_moved = weights * db + act + kv_write + scores
    fp32 = a.attention_kind != "sdpa"
    return step_cost(
        p,
        ops=ops,
        flops=flops + (0.0 if fp32 else attn_flops),
        flops_fp32=attn_flops if fp32 else 0.0,
        bytes_moved=bytes_moved,
        dtype_bytes=db,
        graphs=w.graphs,
        f_rel=f_rel,
        m_rel=m_rel,
        host_scale=p.host_scale_for(a.model_type),
    )


def _decode(p: RooflineParams, w: Workload, step: int, f_rel: float, m_rel: float) -> StepCost:
    """Decoding step `step` (1-based): the context holds the prompt and `step` new tokens."""
    a, db, b = w.arch, w.dtype_bytes, w.batch
    ops = a.op_counts.per_layer * a.n_layers + a.op_counts.per_step
    lm_head = a.vocab * a.hidden
    weights = a.n_layers * a.decoder_step_params + lm_head
    ctx = step + (0 if a.seq2seq else w.prompt_tokens)  # self-attention context
    if w.engine == "static":
        # Attention reads the whole preallocated cache (masked); the append writes one token.
        cached = b * (w.prompt_tokens + w.new_tokens) * a.kv_bytes_per_token(db)
        kv_traffic = a.attention_read_factor() * cached
    else:
        # The dynamic cache appends with torch.cat (reads and writes it), then attention reads.
        cached = b * ctx * a.kv_bytes_per_token(db)
        kv_traffic = (2.0 + a.attention_read_factor()) * cached
    attn_ctx = ctx
    if a.seq2seq:  # cross-attention reads the encoder's cached keys and values every step
        kv_traffic += b * w.prompt_tokens * 2 * a.n_layers * a.kv_dim * db
        attn_ctx += w.prompt_tokens
    flops = 2.0 * b * (a.n_layers * a.decoder_step_params + lm_head)
    attn_flops = 4.0 * a.n_layers * b * attn_ctx * a.attn_dim
    fp32 = a.attention_kind != "sdpa"
    bytes_moved = weights * db + kv_traffic + _act_bytes(p, a, b, a.n_layers, db)
    return step_cost(
        p,
        ops=ops,
        flops=flops + (0.0 if fp32 else attn_flops),
        flops_fp32=attn_flops if fp32 else 0.0,
        bytes_moved=bytes_moved,
        dtype_bytes=db,
        graphs=w.graphs,
        f_rel=f_rel,
        m_rel=m_rel,
        host_scale=p.host_scale_for(a.model_type),
    )


def workload_cost(
    p: RooflineParams, w: Workload, *, f_rel: float = 1.0, m_rel: float = 1.0
) -> WorkloadCost:
    """Cost of a whole `generate` call: the prefill, then `new_tokens - 1` decoding steps."""
    first = _prefill(p, w, f_rel, m_rel)
    time_s, busy, flops, moved = first.time_s, first.activity * first.time_s, first.flops, first.bytes
    for step in range(1, w.new_tokens):
        c = _decode(p, w, step, f_rel, m_rel)
        time_s += c.time_s
        busy += c.activity * c.time_s
        flops += c.flops
        moved += c.bytes
    return WorkloadCost(
        time_s=time_s,
        prefill_s=first.time_s,
        activity=busy / time_s,
        flops=flops,
        bytes=moved,
        forward_passes=max(w.new_tokens, 1),
    )


__all__ = [
    "ATTENTION_KIND",
    "DEFAULT_OP_COUNTS",
    "DTYPE_BYTES",
    "ENGINES",
    "OP_COUNTS",
    "ArchSpec",
    "OpCounts",
    "RooflineParams",
    "StepCost",
    "Workload",
    "WorkloadCost",
    "arch_spec",
    "step_cost",
    "workload_cost",
]
