"""What the LLM benches measure with, since no weights or data can be downloaded: the Llama-3.1-8B architecture
with random weights, and prompts of CNN-DailyMail-like lengths. Shared by bench/llm_gpu.py and
bench/ray_llm_scaling.py (whose Ray workers receive `RandomLlama` by value and build the model themselves)."""

from __future__ import annotations

import numpy as np

EOS_IDS = [128001, 128008, 128009]
SEED = 20261126


class RandomLlama:
    """A picklable model factory: Llama-3.1-8B's architecture, `layers` layers, hidden size `hidden` (4096 is
    the real one; smaller keeps its proportions for a CPU run), weights drawn N(0, 0.02) from one seed so every
    Ray worker holds the same model (small weights keep activations finite in bf16)."""

    def __init__(
        self, layers: int = 32, hidden: int = 4096, device: str = "cuda", dtype: str = "bfloat16", seed: int = SEED
    ):
        self.layers, self.hidden, self.device, self.dtype, self.seed = layers, hidden, device, dtype, seed

    def config(self):
        from transformers import LlamaConfig

        heads = max(1, self.hidden // 128)  # 32 heads of 128 at 4096
        kv = max(1, heads // 4)  # 8 key/value heads at 4096 (GQA)
        inter = 14336 if self.hidden == 4096 else int(self.hidden * 3.5)
        return LlamaConfig(
            vocab_size=128256,
            hidden_size=self.hidden,
            intermediate_size=inter,
            num_hidden_layers=self.layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            max_position_embeddings=131072,
            rope_theta=500000.0,
            bos_token_id=128000,
            eos_token_id=EOS_IDS,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            tie_word_embeddings=False,
        )

    def __call__(self):
        import torch
        from transformers import LlamaForCausalLM

        torch.manual_seed(self.seed)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(getattr(torch, self.dtype))
        try:
            with torch.device(self.device):
                model = LlamaForCausalLM(self.config())
        finally:
            torch.set_default_dtype(previous)
        for p in model.parameters():
            p.data.normal_(0.0, 0.02)
        return model.eval()


def make_prompts(n: int, mean: int, seed: int = 0) -> list[np.ndarray]:
    """n prompts of ~N(mean, 0.35·mean) tokens, clipped to [0.25, 2.4]·mean, token ids 1000..120000."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.normal(mean, 0.35 * mean, n), 0.25 * mean, 2.4 * mean).astype(int)
    return [rng.integers(1000, 120000, size=int(k), dtype=np.int64).astype(np.int32) for k in lengths]
