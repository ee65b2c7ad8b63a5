"""The LLM benchmarks (llama3.1-8b, llama2-70b-99/99.9, gptj-99/99.9): every file of the family, by role.

- specs.py         the benchmarks' facts: data set, generation settings, accuracy targets, LoadGen names
- workload.py      the Workload the runner drives: loading, the QSL, accuracy, token metrics, the SUT backends
- datasets.py      the references' preprocessed data sets (JSON, DataFrame pickle)
- checkpoint.py    checkpoint checks, tokenizer, the streaming loader of the continuous engine's Llama weights;
  checkpoint_fp8.py the weight formats (plain, transformers FP8, compressed-tensors FP8) → the engine's form;
  checkpoint_memory.py what a config needs in memory (weights, KV per token) and the slots that fit
- skeleton.py      a Llama model whose decoder layers stay on the meta device (the streamed weights' model)
- accuracy.py      ROUGE over the logged token ids, as the references compute it
- demo.py          the embedded demos' tiny random-weight checkpoints and generated data sets
- sut_torch.py     backends torch-cpu / torch-cuda: LlmGenerator (batched engine) and its LoadGen adapter;
  engine.py        the continuous-batching engine for Llama on CUDA (decode kernel: ../kernels/decode_attention.py);
  engine_schedule.py its step planner (chunked prefill within a token budget, row buckets, slot compaction),
  engine_pages.py the paged KV cache's pool, engine_layer.py the layer math, engine_attention.py which keys a
  step reads and which decode kernel reads them, engine_support.py which models and options it takes
- sut_openai.py    backend openai: one streaming request per sample to an OpenAI-compatible server
- sut_ray.py       backend ray: LoadGen here, an LlmGenerator on each of N Ray actors (ray_worker.py); the
                   generic Ray plumbing is ../ray_pool.py

Imports run one way: workload → SUTs → engine/datasets/specs; nothing here imports workload.py back.
"""
