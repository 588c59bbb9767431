"""Roofline cost of one `generate` call on a GPU, from the model's architecture (pure, no I/O);
the step time, bytes, FLOPs and activity laws are in docs/device.md. A call's cost is its total
time, its time to first token (the prefill) and its time-weighted mean activity u: energy is
then P(f, u_mean) · time, since power is linear in u."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Re-exported: callers build workloads from this module alone.
from llm_energy.config.sections import ENGINES
from llm_energy.sim.archspec import ArchSpec


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
    """Per-GPU throughput, overhead and activity constants (see `llm_energy.sim.model`)."""

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
    mem_activity: float = 0.0  # the part of `activity` that is HBM streaming


@dataclass(frozen=True)
class WorkloadCost:
    time_s: float
    prefill_s: float  # time to the first token
    activity: float  # time-weighted mean u over the call
    flops: float
    bytes: float
    forward_passes: int
    mem_activity: float = 0.0  # the part of `activity` that is HBM streaming
    prefill_activity: float = 0.0  # u and its memory part over the prefill alone
    prefill_mem_activity: float = 0.0

    @property
    def decode_s(self) -> float:
        return self.time_s - self.prefill_s

    def decode_activity(self) -> tuple[float, float]:
        """(u, memory part) over the decode alone: the call less its prefill."""
        if self.decode_s <= 0:
            return 0.0, 0.0
        u = (self.activity * self.time_s - self.prefill_activity * self.prefill_s) / self.decode_s
        m = self.mem_activity * self.time_s - self.prefill_mem_activity * self.prefill_s
        return u, m / self.decode_s


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
    return StepCost(
        t, t_host, t_gpu, u, flops + flops_fp32, bytes_moved, min(u, p.activity_mem * t_mem / t)
    )


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
    return _step(p, w, ops, flops, attn_flops, bytes_moved, f_rel, m_rel)


def _step(
    p: RooflineParams,
    w: Workload,
    ops: int,
    flops: float,
    attn_flops: float,
    bytes_moved: float,
    f_rel: float,
    m_rel: float,
) -> StepCost:
    """One step's cost; eager (non-SDPA) attention runs its matmuls in fp32."""
    fp32 = w.arch.attention_kind != "sdpa"
    return step_cost(
        p,
        ops=ops,
        flops=flops + (0.0 if fp32 else attn_flops),
        flops_fp32=attn_flops if fp32 else 0.0,
        bytes_moved=bytes_moved,
        dtype_bytes=w.dtype_bytes,
        graphs=w.graphs,
        f_rel=f_rel,
        m_rel=m_rel,
        host_scale=p.host_scale_for(w.arch.model_type),
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
    bytes_moved = weights * db + kv_traffic + _act_bytes(p, a, b, a.n_layers, db)
    return _step(p, w, ops, flops, attn_flops, bytes_moved, f_rel, m_rel)


def workload_cost(
    p: RooflineParams, w: Workload, *, f_rel: float = 1.0, m_rel: float = 1.0
) -> WorkloadCost:
    """Cost of a whole `generate` call: the prefill, then `new_tokens - 1` decoding steps."""
    first = _prefill(p, w, f_rel, m_rel)
    time_s, flops, moved = first.time_s, first.flops, first.bytes
    busy, busy_mem = first.activity * first.time_s, first.mem_activity * first.time_s
    for step in range(1, w.new_tokens):
        c = _decode(p, w, step, f_rel, m_rel)
        time_s += c.time_s
        busy += c.activity * c.time_s
        busy_mem += c.mem_activity * c.time_s
        flops += c.flops
        moved += c.bytes
    return WorkloadCost(
        time_s=time_s,
        prefill_s=first.time_s,
        activity=busy / time_s,
        flops=flops,
        bytes=moved,
        forward_passes=max(w.new_tokens, 1),
        mem_activity=busy_mem / time_s,
        prefill_activity=first.activity,
        prefill_mem_activity=first.mem_activity,
    )
