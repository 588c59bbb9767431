"""Roofline cost of generate calls: regimes, batch and clock scaling, architectures."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llm_energy.sim import archspec
from llm_energy.sim import model as sm
from llm_energy.sim import roofline as rf

REPO = Path(__file__).resolve().parents[2]
P = sm.get_gpu_model("h200").roofline


def model_conf(stem: str) -> dict:
    return yaml.safe_load((REPO / "conf" / "model" / f"{stem}.yaml").read_text())


def arch(stem: str) -> rf.ArchSpec:
    return archspec.arch_spec(model_conf(stem)["arch"])


def cost(work: rf.Workload, f_rel: float = 1.0, m_rel: float = 1.0) -> rf.WorkloadCost:
    return rf.workload_cost(P, work, f_rel=f_rel, m_rel=m_rel)


@pytest.mark.parametrize(
    "stem", ["gpt2", "gpt_neo_2_7b", "gpt_j_6b", "mistral_7b", "falcon_7b", "t5_3b", "smollm2_135m"]
)
def test_parameter_count_from_arch_matches_the_model_card(stem: str) -> None:
    conf = model_conf(stem)
    assert archspec.arch_spec(conf["arch"]).params / 1e6 == pytest.approx(
        conf["params_m"], rel=0.01
    )


def test_arch_details() -> None:
    falcon, mistral, t5 = arch("falcon_7b"), arch("mistral_7b"), arch("t5_3b")
    assert falcon.n_kv_heads == 1 and falcon.attention_kind == "broadcast"  # multi-query
    assert mistral.n_kv_heads == 8 and mistral.gated_mlp and mistral.attention_kind == "sdpa"
    assert t5.seq2seq and t5.n_encoder_layers == 24 and t5.head_dim == 128
    assert arch("gpt_neo_2_7b").attention_kind == "upcast"
    # KV cache per token: 2 (k, v) x layers x kv width x bytes.
    assert mistral.kv_bytes_per_token(2) == 2 * 32 * 8 * 128 * 2
    with pytest.raises(ValueError, match="model_type"):
        archspec.arch_spec({"hidden_size": 8})
    with pytest.raises(ValueError, match="num_attention_heads"):
        archspec.arch_spec({"model_type": "llama", "hidden_size": 8})


def test_memory_bound_versus_compute_bound() -> None:
    # One compiled batch-1 decode of a 7B model streams 14.5 GB of weights per token.
    decode = rf.Workload(arch("mistral_7b"), 2, 1, 128, 128, "static", compiled=True)
    slow_mem = cost(decode, m_rel=2201 / 3201).time_s / cost(decode).time_s
    slow_sm = cost(decode, f_rel=0.75).time_s / cost(decode).time_s
    assert slow_mem > 1.2 and slow_sm < 1.15
    # A large prefill is tensor-core bound: time follows the SM clock, not the memory clock.
    prefill = rf.Workload(arch("mistral_7b"), 2, 32, 2048, 1)
    assert cost(prefill, f_rel=0.5).time_s / cost(prefill).time_s == pytest.approx(2.0, rel=0.05)
    assert cost(prefill, m_rel=2201 / 3201).time_s == pytest.approx(cost(prefill).time_s, rel=0.01)
    # Activity: saturated tensor cores near the ceiling, a host-bound decode near idle.
    assert (
        cost(prefill).activity
        > 0.8
        > 0.3
        > cost(rf.Workload(arch("gpt2"), 2, 1, 128, 128)).activity
    )


def test_step_cost_is_the_roofline_of_its_inputs() -> None:
    memory = rf.step_cost(
        P, ops=0, flops=1e9, bytes_moved=4e10, dtype_bytes=2, graphs=True, f_rel=1, m_rel=1
    )
    bw = P.mem_bw_gbps * 1e9 * P.bw_efficiency
    assert memory.time_s == pytest.approx(P.graph_step_overhead_s + 4e10 / bw)
    compute = rf.step_cost(
        P, ops=0, flops=1e15, bytes_moved=1e6, dtype_bytes=2, graphs=True, f_rel=1, m_rel=1
    )
    peak = P.tflops_16 * 1e12 * P.compute_efficiency
    assert compute.time_s == pytest.approx(P.graph_step_overhead_s + 1e15 / peak)
    # fp32 runs on the fp32 peak, and below the knee the SMs cannot keep memory busy.
    fp32 = rf.step_cost(
        P, ops=0, flops=1e15, bytes_moved=1e6, dtype_bytes=4, graphs=True, f_rel=1, m_rel=1
    )
    assert fp32.time_s > 10 * compute.time_s
    knee = rf.step_cost(
        P, ops=0, flops=1e9, bytes_moved=4e10, dtype_bytes=2, graphs=True, f_rel=0.25, m_rel=1
    )
    assert knee.gpu_s == pytest.approx(2 * memory.gpu_s, rel=0.01)
    with pytest.raises(ValueError, match="f_rel"):
        rf.step_cost(P, ops=0, flops=1, bytes_moved=1, dtype_bytes=2, graphs=True, f_rel=0, m_rel=1)


def test_eager_batch1_decode_of_small_models_is_launch_bound() -> None:
    for stem in ("gpt2", "smollm2_135m", "tiny_gpt2"):
        a = arch(stem)
        ops = a.op_counts.per_layer * a.n_layers + a.op_counts.per_step
        step = rf.step_cost(
            P,
            ops=ops,
            flops=2.0 * a.params,
            bytes_moved=2.0 * a.params,
            dtype_bytes=2,
            graphs=False,
            f_rel=1,
            m_rel=1,
            host_scale=P.host_scale_for(a.model_type),
        )
        assert step.host_s > 3 * step.gpu_s, stem  # the GPU idles between tiny kernels
    # Launch-bound: the SM clock hardly matters, the batch hardly matters.
    work = rf.Workload(arch("gpt2"), 2, 1, 128, 128)
    assert cost(work, f_rel=0.5).time_s == pytest.approx(cost(work).time_s, rel=0.01)
    batch8 = rf.Workload(arch("gpt2"), 2, 8, 128, 128)
    assert cost(batch8).time_s < 1.1 * cost(work).time_s  # 8x the tokens at the same latency


def test_static_cache_with_compile_cuts_the_launch_overhead() -> None:
    # Anchors: GPT-2 569 vs 192 tok/s, Mistral-7B 146 vs 52.5 tok/s (static + compile vs eager).
    for stem, speedup in (("gpt2", 3.0), ("mistral_7b", 2.8)):
        eager = rf.Workload(arch(stem), 2, 1, 128, 128)
        graphs = rf.Workload(arch(stem), 2, 1, 128, 128, "static", compiled=True)
        assert cost(eager).time_s / cost(graphs).time_s == pytest.approx(speedup, rel=0.3)
    # Without compile the static cache still dispatches op by op: no faster than eager.
    static = rf.Workload(arch("gpt2"), 2, 1, 128, 128, "static")
    assert cost(static).time_s >= 0.99 * cost(rf.Workload(arch("gpt2"), 2, 1, 128, 128)).time_s


def test_batch_scaling_of_a_memory_bound_decode() -> None:
    a = arch("mistral_7b")
    one = cost(rf.Workload(a, 2, 1, 128, 128, "static", compiled=True))
    eight = cost(rf.Workload(a, 2, 8, 128, 128, "static", compiled=True))
    # The weights are read once per step for the whole batch: ~8x the tokens for little time.
    assert 8 * one.time_s / eight.time_s > 6
    assert eight.bytes > one.bytes and eight.flops == pytest.approx(8 * one.flops, rel=0.05)


def test_prefill_is_its_own_step_and_grows_with_the_prompt() -> None:
    a = arch("gpt_j_6b")
    short = cost(rf.Workload(a, 2, 8, 128, 16))
    long = cost(rf.Workload(a, 2, 8, 2048, 16))
    assert long.prefill_s > 3 * short.prefill_s  # time to first token
    assert long.bytes > short.bytes  # and a longer KV cache to read every step
    assert cost(rf.Workload(a, 2, 8, 128, 1)).time_s == pytest.approx(short.prefill_s)
    assert short.forward_passes == 16


def test_seq2seq_encoder_runs_once() -> None:
    t5 = arch("t5_3b")
    one = cost(rf.Workload(t5, 2, 1, 512, 1))
    many = cost(rf.Workload(t5, 2, 1, 512, 65))
    per_step = (many.time_s - one.time_s) / 64
    assert one.time_s > per_step  # the prefill runs the 24 encoder layers too


def test_workload_validation() -> None:
    a = arch("gpt2")
    with pytest.raises(ValueError, match="engine"):
        rf.Workload(a, 2, 1, 8, 8, "paged")
    with pytest.raises(ValueError, match="batch"):
        rf.Workload(a, 2, 0, 8, 8)
    with pytest.raises(ValueError, match="dtype_bytes"):
        rf.Workload(a, 3, 1, 8, 8)
    assert not rf.Workload(a, 2, 1, 8, 8, "eager", compiled=True).graphs  # only static compiles
