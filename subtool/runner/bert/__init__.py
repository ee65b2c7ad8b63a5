"""bert-99 / bert-99.9 (SQuAD v1.1 question answering): every file of the family, by role.

- workload.py      the Workload the runner drives: data loading, the QSL, accuracy, the SUT backends table
- checkpoint.py    checkpoint formats (Hugging Face, MLPerf reference), the checks, model and tokenizer loaders
- squad.py         SQuAD JSON → features with the reference settings; squad_eval.py: logits → answers → EM/F1
- demo.py          the embedded demo's tiny random-weight checkpoint and generated data set
- sut_cpu.py       backend torch-cpu: transformers' BertForQuestionAnswering, batches padded to their longest
- sut_cuda.py      backend torch-cuda, one GPU: packed token-budget batches, CUDA graphs, overlapped copies;
  packed_plan.py   which samples make one batch (buckets, token budget) and how they are packed;
  packed_model.py  the packed BERT forward (fp32/bf16/fp16/fp8) and the GPU kernels it calls in
                   ../kernels/: packed_attention.py, fused_norm.py, fp8_gemm.py, fp8_scale.py
- sut_ray.py       backend ray: LoadGen here, the model on N Ray actors (ray_worker.py runs in each actor, with
                   sut_cpu's or packed_model's forward); the generic Ray plumbing is ../ray_pool.py

Imports run one way: workload → SUTs → model code → checkpoint/squad; nothing here imports workload.py back.
"""
